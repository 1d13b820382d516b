"""The embedded Qdrant Edge store: layout, idempotent writes, filters, locking, mismatches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poemrag.edge_store import EdgeStore
from poemrag.errors import StoreError
from poemrag.store import INTEGER_FIELDS, KEYWORD_FIELDS, TEXT_FIELD, SearchFilter

DIM = 8


def payload(i: int) -> dict:
    return {
        "page_content": "明月照高楼，流光正徘徊。" if i % 2 else "春风又绿江南岸。",
        "metadata": {
            "author": "李白" if i % 3 == 0 else "杜甫",
            "poem_id": f"p{i // 5}",
            "line": i % 5,
            "form": "五言" if i % 2 else "七言",
            "tags": ["思乡"] if i % 4 == 0 else [],
            "dynasty": "唐",
        },
    }


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(40, DIM)).astype(np.float32)


def build_store(path: Path, vectors: np.ndarray) -> EdgeStore:
    s = EdgeStore(path)
    s.ensure_collection(DIM, model="test")
    s.upsert(list(range(40)), vectors, [payload(i) for i in range(40)])
    s.finish()
    return s


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, vectors: np.ndarray):
    """Shared by the read-only tests (building a shard takes a second or two)."""
    s = build_store(tmp_path_factory.mktemp("edge") / "poems", vectors)
    yield s
    s.close()


def test_layout_has_all_payload_indexes(store: EdgeStore) -> None:
    info = store.info()
    assert info["points"] == 40
    assert set(info["indexes"]) == {*KEYWORD_FIELDS, *INTEGER_FIELDS, TEXT_FIELD}
    assert store.vector_size() == DIM


def test_nearest_neighbour_is_the_point_itself(store: EdgeStore, vectors: np.ndarray) -> None:
    hits = store.search(vectors[7], 3)
    assert hits[0].id == 7 and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_upsert_is_idempotent(store: EdgeStore, vectors: np.ndarray) -> None:
    store.upsert(list(range(10)), vectors[:10], [payload(i) for i in range(10)])
    assert store.count() == 40
    assert store.existing_ids([0, 39, 40, 1000]) == {0, 39}


@pytest.mark.parametrize(
    ("flt", "check"),
    [
        (SearchFilter(authors=["李白"]), lambda h: h.metadata["author"] == "李白"),
        (SearchFilter(forms=["七言"]), lambda h: h.metadata["form"] == "七言"),
        (SearchFilter(tags=["思乡"]), lambda h: "思乡" in h.metadata["tags"]),
        (SearchFilter(text="明月"), lambda h: "明月" in h.text),
        (SearchFilter(authors=["杜甫"], forms=["五言"]), lambda h: h.metadata["author"] == "杜甫"),
    ],
)
def test_filters(store: EdgeStore, vectors: np.ndarray, flt: SearchFilter, check) -> None:
    hits = store.search(vectors[0], 10, flt)
    assert hits and all(check(h) for h in hits)


def test_score_threshold_and_exact_search(store: EdgeStore, vectors: np.ndarray) -> None:
    assert all(h.score >= 0.5 for h in store.search(vectors[1], 40, score_threshold=0.5))
    exact = store.search(vectors[2], 5, exact=True)
    assert exact[0].id == 2


def test_poem_returns_lines_in_order(store: EdgeStore) -> None:
    lines = store.poem("p3")
    assert [h.id for h in lines] == [15, 16, 17, 18, 19]
    assert [h.metadata["line"] for h in lines] == [0, 1, 2, 3, 4]


def test_reopen_keeps_points_and_refuses_other_dimensions(
    tmp_path: Path, vectors: np.ndarray
) -> None:
    store = build_store(tmp_path / "poems", vectors)
    store.close()
    again = EdgeStore(store.path)
    try:
        assert again.count() == 40
        with pytest.raises(StoreError, match="--recreate"):
            again.ensure_collection(DIM * 2)
        again.ensure_collection(DIM * 2, recreate=True)
        assert again.count() == 0 and again.vector_size() == DIM * 2
    finally:
        again.close()


def test_second_process_gets_a_one_line_error(store: EdgeStore) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from poemrag.edge_store import EdgeStore\n"
        "from poemrag.errors import StoreError\n"
        f"try: EdgeStore(Path({str(store.path)!r}))\n"
        "except StoreError as e: print(e); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 3 and "in use by another process" in proc.stdout
    assert store.count() == 40  # the first process is unaffected


def test_missing_collection_is_a_store_error(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "nothing") as empty:
        assert empty.vector_size() is None and empty.count() == 0
        with pytest.raises(StoreError, match="poemrag.ingest"):
            empty.search([0.0] * DIM, 1)


def test_hnsw_ef_comes_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from poemrag.settings import Settings
    from poemrag.store import open_store

    monkeypatch.delenv("POEMRAG_QDRANT_URL", raising=False)
    monkeypatch.setenv("POEMRAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POEMRAG_HNSW_EF", "300")
    store = open_store(Settings())
    try:
        assert isinstance(store, EdgeStore) and store.hnsw_ef == 300
    finally:
        store.close()
