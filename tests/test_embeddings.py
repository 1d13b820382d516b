"""PoemEmbeddings on a tiny random encoder: both backends, prompts, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests

from poemrag.embeddings import PoemEmbeddings
from poemrag.encoders import detect_backend, read_prompts
from poemrag.errors import ModelError

TEXTS = ["秦川雄帝宅，函谷壮皇居。", "下班后和同事直奔常去的那家火锅店", "明月"]


def test_onnx_backend_is_detected_and_normalised(onnx_embeddings: PoemEmbeddings) -> None:
    assert detect_backend(onnx_embeddings.model) == "onnx"
    assert detect_backend("poemrag-zh-1792-fast") == "onnx"  # a packaged name, not a path
    vectors = onnx_embeddings.encode_documents(TEXTS)
    assert vectors.shape == (3, onnx_embeddings.dimension) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_model_prompts_are_applied(onnx_embeddings: PoemEmbeddings) -> None:
    assert (onnx_embeddings.query_prompt, onnx_embeddings.document_prompt) == ("query: ", "passage: ")
    query = np.array(onnx_embeddings.embed_query(TEXTS[0]))
    document = np.array(onnx_embeddings.embed_documents([TEXTS[0]])[0])
    assert not np.allclose(query, document)


def test_onnx_matches_sentence_transformers(
    onnx_embeddings: PoemEmbeddings, tiny_st_dir: Path
) -> None:
    torch_embeddings = PoemEmbeddings(model=str(tiny_st_dir), backend="torch")
    assert read_prompts(tiny_st_dir) == ("query: ", "passage: ")
    a = onnx_embeddings.encode_queries(TEXTS)
    b = torch_embeddings.encode_queries(TEXTS)
    assert np.abs(a - b).max() < 1e-5


def test_batching_does_not_change_vectors(onnx_embeddings: PoemEmbeddings) -> None:
    one_by_one = np.stack([onnx_embeddings.encode_documents([t])[0] for t in TEXTS])
    np.testing.assert_allclose(onnx_embeddings.encode_documents(TEXTS), one_by_one, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_missing_model_is_a_one_line_error(tmp_path: Path, backend: str) -> None:
    with pytest.raises(ModelError, match="not found") as info:
        PoemEmbeddings(model=str(tmp_path / "nope"), backend=backend)
    assert "\n" not in str(info.value)


def test_settings_select_the_model(monkeypatch: pytest.MonkeyPatch, tiny_onnx_dir: Path) -> None:
    monkeypatch.setenv("POEMRAG_MODEL", str(tiny_onnx_dir))
    monkeypatch.setenv("POEMRAG_BATCH_SIZE", "7")
    emb = PoemEmbeddings.from_settings()
    assert emb.model == str(tiny_onnx_dir) and emb.batch_size == 7
    assert PoemEmbeddings().batch_size == 7


@pytest.mark.parametrize("build", [PoemEmbeddings, PoemEmbeddings.from_settings])
def test_settings_model_without_backend_is_detected(
    monkeypatch: pytest.MonkeyPatch, tiny_st_dir: Path, build: type[PoemEmbeddings]
) -> None:
    """A sentence-transformers directory in POEMRAG_MODEL loads with torch, unasked."""
    monkeypatch.setenv("POEMRAG_MODEL", str(tiny_st_dir))
    monkeypatch.delenv("POEMRAG_BACKEND", raising=False)
    emb = build()
    assert emb.backend is None and type(emb._encoder).__name__ == "TorchEncoder"


def test_explicit_fields_win_over_settings(
    monkeypatch: pytest.MonkeyPatch, tiny_onnx_dir: Path
) -> None:
    monkeypatch.setenv("POEMRAG_MODEL", "/nonexistent/model")
    monkeypatch.setenv("POEMRAG_BATCH_SIZE", "3")
    emb = PoemEmbeddings(model=str(tiny_onnx_dir), batch_size=5)
    assert emb.batch_size == 5 and emb.dimension > 0


class TestPoemEmbeddingsStandard(EmbeddingsIntegrationTests):
    """LangChain's standard tests for Embeddings implementations."""

    @pytest.fixture(autouse=True)
    def _model_dir(self, tiny_onnx_dir: Path) -> None:
        self._dir = tiny_onnx_dir

    @property
    def embeddings_class(self) -> type[PoemEmbeddings]:
        return PoemEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": str(self._dir)}
