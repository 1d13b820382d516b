"""``poemrag.sync``: copy the embedded Edge collection to a server without re-embedding."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from _server_helpers import (  # noqa: F401  (fixtures)
    LOCAL_MODE_WARNINGS,
    Unclosable,
    server_store_fixture,
)
from qdrant_client import QdrantClient
from qdrant_client import models as m

from poemrag import server_store as server_store_module
from poemrag import sync
from poemrag.cli import run_cli
from poemrag.edge_store import EdgeStore
from poemrag.errors import StoreError
from poemrag.server_store import ServerStore
from poemrag.settings import Settings

pytestmark = LOCAL_MODE_WARNINGS

SECRET = "s3cret-key-never-printed"


def points_of(store) -> dict[int, tuple[np.ndarray, dict]]:
    return {i: (np.asarray(v, dtype=np.float32), p) for i, v, p in store.scroll_points()}


def test_sync_copies_vectors_and_payloads(
    ingested_store: EdgeStore, server_store: ServerStore
) -> None:
    summary = sync.sync(ingested_store, server_store, batch_size=16, progress=False)
    assert (summary.source_points, summary.copied, summary.already_there) == (43, 43, 0)
    assert summary.points_on_server == 43
    edge, server = points_of(ingested_store), points_of(server_store)
    assert edge.keys() == server.keys()
    for pid, (vector, payload) in edge.items():
        assert server[pid][1] == payload
        np.testing.assert_allclose(server[pid][0], vector, atol=1e-6)
    assert server_store.vector_size() == ingested_store.vector_size()


def test_synced_collection_searches_like_edge(
    ingested_store: EdgeStore, server_store: ServerStore, onnx_embeddings
) -> None:
    sync.sync(ingested_store, server_store, progress=False)
    for vector in onnx_embeddings.encode_queries(["想家", "和朋友喝酒", "登高"]):
        edge = ingested_store.search(vector, 8, exact=True)
        server = server_store.search(vector, 8, exact=True)
        assert [h.id for h in server] == [h.id for h in edge]
        assert max(abs(a.score - b.score) for a, b in zip(server, edge, strict=True)) < 1e-4


def test_sync_resumes_and_skips_points_already_there(
    ingested_store: EdgeStore, server_store: ServerStore
) -> None:
    server_store.ensure_collection(ingested_store.vector_size() or 0,
                                   fingerprint=ingested_store.model_fingerprint() or "")
    first = list(ingested_store.scroll_points())[:10]
    server_store.upsert(
        [i for i, _, _ in first], [v for _, v, _ in first], [p for _, _, p in first]
    )
    summary = sync.sync(ingested_store, server_store, batch_size=8, progress=False)
    assert (summary.copied, summary.already_there, summary.points_on_server) == (33, 10, 43)
    again = sync.sync(ingested_store, server_store, progress=False)
    assert (again.copied, again.already_there) == (0, 43)


def test_sync_refuses_another_vector_size_and_writes_nothing(
    ingested_store: EdgeStore, server_store: ServerStore
) -> None:
    server_store.ensure_collection(7)
    with pytest.raises(StoreError) as err:
        sync.sync(ingested_store, server_store, progress=False)
    message = str(err.value)
    assert "holds 7-d Cosine vectors" in message and "--recreate" in message and "\n" not in message
    assert server_store.count() == 0 and server_store.vector_size() == 7
    summary = sync.sync(ingested_store, server_store, recreate=True, progress=False)
    assert summary.copied == 43 and server_store.vector_size() == ingested_store.vector_size()


def test_sync_refuses_a_collection_of_other_weights_and_writes_nothing(
    ingested_store: EdgeStore, server_store: ServerStore
) -> None:
    server_store.ensure_collection(ingested_store.vector_size() or 0, fingerprint="0" * 16)
    with pytest.raises(StoreError, match=r"fingerprint 0{16}.*--recreate"):
        sync.sync(ingested_store, server_store, progress=False)
    assert server_store.count() == 0
    summary = sync.sync(ingested_store, server_store, recreate=True, progress=False)
    assert summary.copied == 43
    assert server_store.model_fingerprint() == ingested_store.model_fingerprint()


def test_sync_refuses_another_distance(
    ingested_store: EdgeStore, server_store: ServerStore
) -> None:
    size = ingested_store.vector_size() or 0
    server_store.client.create_collection(
        server_store.collection,
        vectors_config={"dense": m.VectorParams(size=size, distance=m.Distance.EUCLID)},
    )
    with pytest.raises(StoreError, match="Euclid vectors .*--recreate"):
        sync.sync(ingested_store, server_store, progress=False)
    assert server_store.count() == 0


# -- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def data_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ingested_store: EdgeStore
) -> Settings:
    """A data dir holding an Edge copy of the fixture collection; POEMRAG_QDRANT_URL set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POEMRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("POEMRAG_QDRANT_URL", "http://localhost:6333")
    monkeypatch.setenv("POEMRAG_QDRANT_API_KEY", SECRET)
    monkeypatch.setattr(ServerStore, "backoff_s", 0.0)
    settings = Settings()
    points = list(ingested_store.scroll_points())
    with EdgeStore(settings.store_path) as edge:
        edge.ensure_collection(ingested_store.vector_size() or 0, model="tiny",
                                fingerprint="f" * 16)
        edge.upsert(
            [i for i, _, _ in points], np.array([v for _, v, _ in points]), [p for *_, p in points]
        )
        edge.finish()
    return settings


@pytest.fixture
def local_server(monkeypatch: pytest.MonkeyPatch) -> QdrantClient:
    """The client ServerStore.connect makes is a local-mode one (shared across CLI runs)."""
    shared = QdrantClient(":memory:")
    monkeypatch.setattr(server_store_module, "QdrantClient", lambda **_: Unclosable(shared))
    return shared


def test_cli_syncs_then_resumes_with_a_one_line_summary(data_env, local_server, capsys) -> None:
    assert run_cli(sync.main, ["--batch-size", "16"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synced 43 points to the Qdrant server at")
    assert "43 copied, 0 already there, 43 on the server" in lines[0]
    assert "syncing" in captured.err  # the progress bar
    assert SECRET not in captured.out + captured.err
    assert local_server.count("tang_poems").count == 43
    metadata = local_server.get_collection("tang_poems").config.metadata
    assert metadata == {"poemrag_model": "tiny", "poemrag_model_fingerprint": "f" * 16}
    assert run_cli(sync.main, ["--quiet"]) == 0
    captured = capsys.readouterr()
    assert "0 copied, 43 already there" in captured.out and captured.err == ""


def test_cli_refuses_another_vector_size(data_env, local_server, capsys) -> None:
    local_server.create_collection(
        "tang_poems", vectors_config={"dense": m.VectorParams(size=7, distance=m.Distance.COSINE)}
    )
    assert run_cli(sync.main, ["--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "holds 7-d Cosine vectors" in err and "rerun with --recreate" in err
    assert local_server.count("tang_poems").count == 0
    assert run_cli(sync.main, ["--quiet", "--recreate"]) == 0
    assert local_server.count("tang_poems").count == 43


def test_cli_without_a_server_url(data_env, monkeypatch, capsys) -> None:
    monkeypatch.delenv("POEMRAG_QDRANT_URL")
    assert run_cli(sync.main, []) == 2
    assert "set POEMRAG_QDRANT_URL" in capsys.readouterr().err


def test_cli_without_an_embedded_collection(tmp_path, monkeypatch, local_server, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POEMRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("POEMRAG_QDRANT_URL", "http://localhost:6333")
    assert run_cli(sync.main, []) == 2
    assert "does not exist: run `python -m poemrag.ingest`" in capsys.readouterr().err


def test_cli_with_an_unreachable_server(data_env, monkeypatch, capsys) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("POEMRAG_QDRANT_URL", url)
    assert run_cli(sync.main, ["--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: cannot reach") and url in err and "\n" not in err
    assert SECRET not in captured.err + captured.out
