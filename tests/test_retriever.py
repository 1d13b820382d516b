"""PoemRetriever over a fixture corpus ingested into a temporary Edge store."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.runnables import ConfigurableField
from langchain_tests.integration_tests import RetrieversIntegrationTests

from poemrag import PoemRetriever, SearchOptionError
from poemrag.errors import StoreError
from poemrag.retriever import EmptyQueryError, clean_query

QUERY = "一个人在外地过中秋，特别想家"


@pytest.fixture
def retriever(onnx_embeddings, ingested_store) -> PoemRetriever:
    return PoemRetriever(embeddings=onnx_embeddings, store=ingested_store, k=4)


def test_documents_carry_couplet_and_metadata(retriever: PoemRetriever) -> None:
    docs = retriever.invoke(QUERY)
    assert len(docs) == 4 and all(isinstance(d, Document) for d in docs)
    meta = docs[0].metadata
    assert {"title", "author", "poem_id", "line", "form", "tags", "score", "id"} <= set(meta)
    assert isinstance(meta["score"], float) and isinstance(meta["id"], int)
    assert docs[0].page_content.endswith("。")
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_one_couplet_per_poem_by_default(retriever: PoemRetriever) -> None:
    docs = retriever.invoke(QUERY, k=10)
    poems = [d.metadata["poem_id"] for d in docs]
    assert len(poems) == len(set(poems)) == 10
    every_line = retriever.model_copy(update={"one_per_poem": False}).invoke(QUERY, k=20)
    assert len({d.metadata["poem_id"] for d in every_line}) < 20


def test_filters_and_threshold(retriever: PoemRetriever) -> None:
    libai = retriever.model_copy(update={"authors": ["李白"]}).invoke(QUERY)
    assert {d.metadata["author"] for d in libai} == {"李白"}
    qiyan = retriever.model_copy(update={"forms": ["七言"]}).invoke(QUERY)
    assert qiyan and all(d.metadata["form"] == "七言" for d in qiyan)
    homesick = retriever.model_copy(update={"poem_tags": ["思乡"]}).invoke(QUERY)
    assert homesick and all("思乡" in d.metadata["tags"] for d in homesick)
    top = retriever.invoke(QUERY)[0].metadata["score"]
    strict = retriever.model_copy(update={"score_threshold": top + 1e-4}).invoke(QUERY)
    assert strict == []


def test_full_poem_in_line_order(retriever: PoemRetriever) -> None:
    hit = retriever.invoke("喝酒", authors=["李白"], poem_tags=["饮酒"])[0]
    poem = retriever.full_poem(hit)
    assert [d.metadata["line"] for d in poem] == list(range(7))
    assert poem[0].page_content == "花间一壶酒，独酌无相亲。"
    assert retriever.full_poem(hit.metadata["poem_id"]) == poem


def test_per_call_options_match_a_retriever_built_with_them(retriever: PoemRetriever) -> None:
    """One retriever serves every message: filters, k and threshold can change per call."""
    for options in ({"authors": ["李白"]}, {"forms": ["七言"], "k": 2}, {"poem_tags": ["思乡"]},
                    {"authors": "李白", "poem_tags": ["饮酒"], "k": 1}):
        built = retriever.model_copy(update=options).invoke(QUERY)
        assert retriever.invoke(QUERY, **options) == built and built
    libai = retriever.invoke(QUERY, authors=["李白"])
    assert {d.metadata["author"] for d in libai} == {"李白"}
    anyone = retriever.invoke(QUERY)  # the next message: any poet again
    assert len({d.metadata["author"] for d in anyone}) > 1
    top = anyone[0].metadata["score"]
    assert retriever.invoke(QUERY, score_threshold=top + 1e-4) == []
    strict = retriever.model_copy(update={"score_threshold": top + 1e-4})
    assert strict.invoke(QUERY, score_threshold=None) == anyone


def test_per_call_options_async(retriever: PoemRetriever) -> None:
    async def run() -> list[Document]:
        return await retriever.ainvoke(QUERY, k=2, authors=["李白"])

    docs = asyncio.run(run())
    assert docs == retriever.invoke(QUERY, k=2, authors=["李白"])
    assert len(docs) == 2 and {d.metadata["author"] for d in docs} == {"李白"}


def test_search_kwargs_through_a_runnable_config(retriever: PoemRetriever) -> None:
    configurable = retriever.configurable_fields(
        search_kwargs=ConfigurableField(id="search_kwargs", name="Search options")
    )
    config = {"configurable": {"search_kwargs": {"authors": ["王维"], "k": 2}}}
    docs = configurable.invoke(QUERY, config=config)
    assert len(docs) == 2 and {d.metadata["author"] for d in docs} == {"王维"}
    assert configurable.invoke(QUERY) == retriever.invoke(QUERY)
    fixed = retriever.model_copy(update={"search_kwargs": {"forms": ["五言"]}})
    assert all(d.metadata["form"] == "五言" for d in fixed.invoke(QUERY))


def test_unknown_or_bad_options_are_one_line_errors(retriever: PoemRetriever) -> None:
    with pytest.raises(SearchOptionError, match="unknown search option 'tag'; use one of k, "):
        retriever.invoke(QUERY, tag=["思乡"])
    with pytest.raises(SearchOptionError, match="k must be an integer from 1 to 100"):
        retriever.invoke(QUERY, k=0)


class _RunTags(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tags: list[list[str]] = []

    def on_retriever_start(self, serialized, query, *, tags=None, **kwargs) -> None:
        self.tags.append(list(tags or []))


def test_run_tags_are_langchains_and_do_not_filter(retriever: PoemRetriever) -> None:
    """``tags`` are LangChain's run tags (tracing); the poem-tag filter is ``poem_tags``."""
    seen = _RunTags()
    tagged = retriever.model_copy(update={"tags": ["prod"], "poem_tags": ["思乡"]})
    docs = tagged.invoke(QUERY, config={"callbacks": [seen], "tags": ["chat"]})
    assert docs and all("思乡" in d.metadata["tags"] for d in docs)
    assert sorted(seen.tags[0]) == ["chat", "prod"]  # no poem tag leaks into tracing
    plain = retriever.model_copy(update={"tags": ["prod"]}).invoke(QUERY)
    assert plain == retriever.invoke(QUERY) and len(plain) == 4


def test_any_langchain_embeddings(ingested_store, onnx_embeddings) -> None:
    """Not only PoemEmbeddings: any Embeddings object (no fingerprint to check) works."""
    from langchain_core.embeddings import Embeddings

    class Plain(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return onnx_embeddings.embed_documents(texts)

        def embed_query(self, text: str) -> list[float]:
            return onnx_embeddings.embed_query(text)

    ours = PoemRetriever(embeddings=onnx_embeddings, store=ingested_store).invoke(QUERY)
    theirs = PoemRetriever(embeddings=Plain(), store=ingested_store).invoke(QUERY)
    assert [d.id for d in theirs] == [d.id for d in ours]


def test_close_and_with(env, fixture_corpus, onnx_embeddings) -> None:
    from poemrag.edge_store import EdgeStore
    from poemrag.ingest import ingest

    with EdgeStore(env.store_path) as store:
        ingest(fixture_corpus, onnx_embeddings, store, progress=False, )
    with PoemRetriever.from_settings(env) as retriever:
        assert retriever.invoke(QUERY)
    with PoemRetriever.from_settings(env) as again:  # the lock was released
        assert again.invoke(QUERY)


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", "\x00\x07"])
def test_empty_queries_are_refused(retriever: PoemRetriever, bad: str) -> None:
    with pytest.raises(EmptyQueryError):
        retriever.invoke(bad)


def test_clean_query_strips_control_characters_and_caps_length() -> None:
    assert clean_query("  想家\x00了\n ") == "想家 了"
    assert len(clean_query("月" * 10_000)) == 512


def test_async_and_threads_match_serial(retriever: PoemRetriever) -> None:
    queries = [QUERY, "春天到了，花都开了", "和朋友喝酒", "登高望远"] * 2
    serial = [retriever.invoke(q) for q in queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(retriever.invoke, queries))
    assert threaded == serial

    async def gather() -> list[list[Document]]:
        return await asyncio.gather(*(retriever.ainvoke(q) for q in queries))

    assert asyncio.run(gather()) == serial


def test_from_settings_refuses_missing_collection(tmp_path, monkeypatch, tiny_onnx_dir) -> None:
    monkeypatch.setenv("POEMRAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POEMRAG_MODEL", str(tiny_onnx_dir))
    monkeypatch.setenv("POEMRAG_COLLECTION", "tang_poems")
    with pytest.raises(StoreError, match=r"collection 'tang_poems' does not exist: run `python -m poemrag.ingest`"):
        PoemRetriever.from_settings()


class TestPoemRetrieverStandard(RetrieversIntegrationTests):
    """LangChain's standard tests for retrievers."""

    @pytest.fixture(autouse=True)
    def _parts(self, onnx_embeddings, ingested_store) -> None:
        self._params = {"embeddings": onnx_embeddings, "store": ingested_store}

    @property
    def retriever_constructor(self) -> type[PoemRetriever]:
        return PoemRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return dict(self._params)

    @property
    def retriever_query_example(self) -> str:
        return QUERY


def test_one_per_poem_also_skips_repeated_text() -> None:
    from poemrag.retriever import _one_per_poem
    from poemrag.store import Hit

    def hit(i: int, poem: str, text: str) -> Hit:
        return Hit(i, 1.0 - i / 10, {"page_content": text, "metadata": {"poem_id": poem}})

    hits = [hit(0, "a", "甲。"), hit(1, "a", "乙。"), hit(2, "b", "甲。"), hit(3, "c", "丙。")]
    assert [h.id for h in _one_per_poem(hits, 3)] == [0, 3]


def test_public_api_at_the_top_level() -> None:
    import poemrag

    assert set(poemrag.__all__) >= {"PoemRetriever", "PoemEmbeddings", "PoemVectorStore",
                                    "Settings", "PoemragError", "StoreError"}
    for name in poemrag.__all__:
        assert getattr(poemrag, name) is not None
