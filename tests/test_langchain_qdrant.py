"""A collection written by poemrag opens in langchain-qdrant and ranks like PoemRetriever."""

from __future__ import annotations

import pytest
from _server_helpers import LOCAL_MODE_WARNINGS, loaded_server_store_fixture  # noqa: F401

from poemrag.retriever import PoemRetriever
from poemrag.server_store import ServerStore

langchain_qdrant = pytest.importorskip("langchain_qdrant", reason="pip install 'poemrag[server]'")

pytestmark = LOCAL_MODE_WARNINGS

QUERIES = [
    "一个人在外地过中秋，特别想家",
    "和朋友喝酒",
    "登高望远，看黄河入海",
    "春天到了，花都开了",
]
K = 8


def test_langchain_qdrant_returns_the_retrievers_hits(
    loaded_server_store: ServerStore, onnx_embeddings
) -> None:
    store = langchain_qdrant.QdrantVectorStore(
        client=loaded_server_store.client,
        collection_name=loaded_server_store.collection,
        embedding=onnx_embeddings,
        vector_name="dense",
    )
    retriever = PoemRetriever(
        embeddings=onnx_embeddings, store=loaded_server_store, k=K, one_per_poem=False
    )
    max_diff = 0.0
    for query in QUERIES:
        theirs = store.similarity_search_with_score(query, k=K)
        ours = retriever.invoke(query)
        assert [d.metadata["_id"] for d, _ in theirs] == [d.metadata["id"] for d in ours]
        assert [d.page_content for d, _ in theirs] == [d.page_content for d in ours]
        for (doc, score), mine in zip(theirs, ours, strict=True):
            assert doc.metadata["author"] == mine.metadata["author"]
            assert doc.metadata["poem_id"] == mine.metadata["poem_id"]
            max_diff = max(max_diff, abs(score - mine.metadata["score"]))
    print(f"langchain-qdrant vs PoemRetriever: ids equal, max score diff {max_diff:.2e}")
    assert max_diff < 1e-5


def test_langchain_qdrant_as_a_retriever(loaded_server_store: ServerStore, onnx_embeddings) -> None:
    store = langchain_qdrant.QdrantVectorStore(
        client=loaded_server_store.client,
        collection_name=loaded_server_store.collection,
        embedding=onnx_embeddings,
        vector_name="dense",
    )
    docs = store.as_retriever(search_kwargs={"k": 3}).invoke("想家")
    assert len(docs) == 3 and all(d.page_content.endswith("。") for d in docs)
    assert {"title", "author", "poem_id", "line"} <= set(docs[0].metadata)
