"""PoemVectorStore on both backends: LangChain's standard tests, searches over the fixture
corpus (dict and Qdrant filters, MMR, as_retriever), user couplets beside the Tang ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _server_helpers import LOCAL_MODE_WARNINGS, make_store
from langchain_core.documents import Document
from langchain_tests.integration_tests import VectorStoreIntegrationTests
from qdrant_client import models as m

from poemrag import PoemRetriever, PoemVectorStore, StoreError
from poemrag.edge_store import EdgeStore
from poemrag.ingest import ingest
from poemrag.vectorstore import point_id

pytestmark = LOCAL_MODE_WARNINGS
QUERY = "一个人在外地过中秋，特别想家"
BACKENDS = ["edge", "local"]


def empty_store(backend: str, tmp_path: Path):
    return EdgeStore(tmp_path / "poems") if backend == "edge" else make_store("local")


@pytest.fixture(scope="module", params=BACKENDS)
def corpus_vs(request, tmp_path_factory, fixture_corpus, onnx_embeddings) -> Iterator[PoemVectorStore]:
    """The fixture corpus ingested on each backend, as a PoemVectorStore."""
    store = empty_store(request.param, tmp_path_factory.mktemp(request.param))
    ingest(fixture_corpus, onnx_embeddings, store, progress=False)
    with PoemVectorStore(store, onnx_embeddings) as vs:
        yield vs


class TestEdgeStandard(VectorStoreIntegrationTests):
    """LangChain's standard vector store tests on the embedded Edge store."""

    @pytest.fixture
    def vectorstore(self, tmp_path: Path) -> Iterator[PoemVectorStore]:
        with PoemVectorStore(EdgeStore(tmp_path / "std"), self.get_embeddings()) as vs:
            yield vs


class TestServerStandard(VectorStoreIntegrationTests):
    """The same tests on the server store (qdrant-client's local mode)."""

    @pytest.fixture
    def vectorstore(self) -> Iterator[PoemVectorStore]:
        with PoemVectorStore(make_store("local"), self.get_embeddings()) as vs:
            yield vs


def test_similarity_search_with_score_matches_the_retriever(corpus_vs: PoemVectorStore) -> None:
    pairs = corpus_vs.similarity_search_with_score(QUERY, k=6)
    retriever = PoemRetriever(embeddings=corpus_vs.embeddings, store=corpus_vs.store, k=6,
                              one_per_poem=False)
    docs = retriever.invoke(QUERY)
    assert [d.id for d, _ in pairs] == [d.id for d in docs]
    assert [s for _, s in pairs] == pytest.approx([d.metadata["score"] for d in docs], abs=1e-5)
    # The vector store's documents carry the metadata as stored (no score or id added).
    assert "score" not in pairs[0][0].metadata and pairs[0][0].metadata["poem_id"]


@pytest.mark.parametrize(
    "flt",
    [
        {"author": "李白"},
        {"author": ["李白", "王维"], "form": "五言"},
        {"tags": "思乡"},
        m.Filter(must=[m.FieldCondition(key="metadata.author", match=m.MatchValue(value="李白"))]),
        m.Filter(must_not=[m.FieldCondition(key="metadata.author",
                                            match=m.MatchAny(any=["太宗皇帝"]))]),
        m.Filter(must=[m.FieldCondition(key="metadata.line", range=m.Range(lt=2))]),
    ],
    ids=["dict", "dict-any", "dict-tag", "qdrant", "qdrant-not", "qdrant-range"],
)
def test_filters_as_dict_or_qdrant_filter(corpus_vs: PoemVectorStore, flt) -> None:
    everything = corpus_vs.similarity_search(QUERY, k=100)
    expected = [d for d in everything if _matches(d, flt)]
    found = corpus_vs.similarity_search(QUERY, k=100, filter=flt)
    assert found and [d.id for d in found] == [d.id for d in expected]


def _matches(doc: Document, flt) -> bool:
    md = doc.metadata
    if isinstance(flt, dict):
        def ok(key: str, want) -> bool:
            want = want if isinstance(want, list) else [want]
            have = md[key] if isinstance(md[key], list) else [md[key]]
            return bool(set(want) & set(have))
        return all(ok(k, v) for k, v in flt.items())
    if flt.must_not:
        return md["author"] != "太宗皇帝"
    cond = flt.must[0]
    return md["line"] < 2 if cond.range else md["author"] == "李白"


def test_score_threshold_and_relevance(corpus_vs: PoemVectorStore) -> None:
    top = corpus_vs.similarity_search_with_score(QUERY, k=1)[0][1]
    assert corpus_vs.similarity_search_with_score(QUERY, k=5, score_threshold=top + 1e-4) == []
    retriever = corpus_vs.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"score_threshold": top - 1e-4, "k": 5},
    )
    docs = retriever.invoke(QUERY)
    assert len(docs) >= 1 and docs[0].id == corpus_vs.similarity_search(QUERY, k=1)[0].id


def test_mmr_trades_relevance_for_diversity(corpus_vs: PoemVectorStore) -> None:
    plain = corpus_vs.similarity_search(QUERY, k=4)
    mmr = corpus_vs.max_marginal_relevance_search(QUERY, k=4, fetch_k=20, lambda_mult=0.0)
    assert len(mmr) == 4 and mmr[0].id == plain[0].id
    assert [d.id for d in mmr] != [d.id for d in plain]
    same = corpus_vs.max_marginal_relevance_search(QUERY, k=4, fetch_k=20, lambda_mult=1.0)
    assert [d.id for d in same] == [d.id for d in plain]
    via = corpus_vs.as_retriever(
        search_type="mmr", search_kwargs={"k": 4, "fetch_k": 20, "lambda_mult": 0.0}
    ).invoke(QUERY)
    assert [d.id for d in via] == [d.id for d in mmr]
    libai = corpus_vs.as_retriever(
        search_type="mmr", search_kwargs={"k": 3, "filter": {"author": "李白"}}
    ).invoke(QUERY)
    assert len(libai) == 3 and {d.metadata["author"] for d in libai} == {"李白"}


def test_get_by_ids_returns_corpus_couplets(corpus_vs: PoemVectorStore) -> None:
    top = corpus_vs.similarity_search(QUERY, k=3)
    ids = [d.id for d in reversed(top)]
    assert [d.id for d in corpus_vs.get_by_ids([*ids, "999999999"])] == ids


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_couplets_join_the_collection(
    backend: str, tmp_path: Path, fixture_corpus, onnx_embeddings
) -> None:
    """Song couplets added by a user share the layout: the same filters find them."""
    store = empty_store(backend, tmp_path)
    ingest(fixture_corpus, onnx_embeddings, store, progress=False)
    with PoemVectorStore(store, onnx_embeddings) as vs:
        song = {"author": "苏轼", "dynasty": "宋", "title": "水调歌头", "poem_id": "song-1",
                "line": 0, "form": "杂言", "tags": ["中秋", "思乡"]}
        ids = vs.add_texts(["但愿人长久，千里共婵娟。"], [song], ids=["song-1-0"])
        assert ids == ["song-1-0"] and store.count() == 44
        found = vs.similarity_search(QUERY, k=1, filter={"author": "苏轼"})
        assert found == [Document(page_content="但愿人长久，千里共婵娟。", metadata=song,
                                  id="song-1-0")]
        retriever = PoemRetriever(embeddings=onnx_embeddings, store=store)
        mine = retriever.invoke(QUERY, authors=["苏轼"], poem_tags=["中秋"])
        assert [d.page_content for d in mine] == ["但愿人长久，千里共婵娟。"]
        assert [d.page_content for d in retriever.full_poem("song-1")] == ["但愿人长久，千里共婵娟。"]
        vs.delete(["song-1-0"])
        assert store.count() == 43


def test_ids_become_point_ids() -> None:
    assert point_id("12") == 12 and point_id(7) == 7
    uid = "5f0c2c1e-3c0e-4d7e-9b7a-8a1f7c526d10"
    assert point_id(uid) == uid
    assert point_id("foo") == point_id("foo") != point_id("bar")


def test_empty_store_searches_find_nothing(tmp_path: Path, onnx_embeddings) -> None:
    with PoemVectorStore(EdgeStore(tmp_path / "empty"), onnx_embeddings) as vs:
        assert vs.similarity_search(QUERY) == [] and vs.get_by_ids(["1"]) == []
        assert vs.max_marginal_relevance_search(QUERY) == []


def test_other_model_is_refused(tmp_path: Path, onnx_embeddings) -> None:
    store = EdgeStore(tmp_path / "other")
    store.ensure_collection(onnx_embeddings.dimension, fingerprint="0" * 16)
    with pytest.raises(StoreError, match=r"fingerprint 0{16}.*--recreate"):
        PoemVectorStore(store, onnx_embeddings)
    store.close()


def test_bad_filter_is_a_one_line_error(corpus_vs: PoemVectorStore) -> None:
    with pytest.raises(StoreError, match="a filter must be a dict, a qdrant_client"):
        corpus_vs.similarity_search(QUERY, filter="李白")  # type: ignore[arg-type]


def test_from_settings(env, fixture_corpus, onnx_embeddings) -> None:
    with EdgeStore(env.store_path) as store:
        ingest(fixture_corpus, onnx_embeddings, store, progress=False)
    with PoemVectorStore.from_settings(env) as vs:
        assert len(vs.similarity_search(QUERY, k=3)) == 3


def test_one_lock_per_store(corpus_vs: PoemVectorStore) -> None:
    """A retriever and a vector store on the same store take turns (Edge is not thread-safe)."""
    retriever = PoemRetriever(embeddings=corpus_vs.embeddings, store=corpus_vs.store)
    assert retriever.vectorstore._lock is corpus_vs._lock
    other = PoemVectorStore(make_store("local"), corpus_vs.embeddings, check=False)
    assert other._lock is not corpus_vs._lock
    other.close()
