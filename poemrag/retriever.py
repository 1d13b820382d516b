"""LangChain retriever: a chat message in, fitting Tang couplets (as Documents) out."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, PrivateAttr

from poemrag.embeddings import PoemEmbeddings
from poemrag.errors import PoemragError
from poemrag.settings import Settings
from poemrag.store import Hit, PoemStore, SearchFilter, check_same_model, open_store

MAX_QUERY_CHARS = 512
"""Longer messages are cut: the encoder reads at most 128 tokens anyway."""


class EmptyQueryError(PoemragError, ValueError):
    """The query has no text to search for."""


def clean_query(query: str) -> str:
    """The searchable text of a user message: control characters removed, trimmed, capped."""
    if not isinstance(query, str):
        raise EmptyQueryError(f"the query must be a string, not {type(query).__name__}")
    text = "".join(ch if ch.isprintable() else " " for ch in query).strip()
    if not text:
        raise EmptyQueryError("the query is empty: type a message to find a couplet for")
    return text[:MAX_QUERY_CHARS]


def hit_to_document(hit: Hit) -> Document:
    """A search hit as a LangChain Document (couplet + metadata with ``score`` and ``id``)."""
    metadata = hit.metadata | {"score": hit.score, "id": hit.id}
    return Document(page_content=hit.text, metadata=metadata, id=str(hit.id))


class PoemRetriever(BaseRetriever):
    """Retrieves Tang couplets that fit a modern Chinese message.

    Build it from settings (``PoemRetriever.from_settings()``) or from explicit parts
    (``PoemRetriever(embeddings=..., store=...)``). Results carry ``title``, ``author``,
    ``poem_id``, ``line``, ``form``, ``tags``, ``score`` and ``id`` in their metadata.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    embeddings: PoemEmbeddings
    store: Any = Field(description="A PoemStore (embedded Edge or Qdrant server).")
    k: int = Field(default=4, ge=1, le=100)
    score_threshold: float | None = None
    authors: Sequence[str] = ()
    forms: Sequence[str] = ()
    tags: Sequence[str] = ()
    one_per_poem: bool = True
    exact: bool = False

    # The Edge engine is not documented as thread-safe: one search at a time per store.
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> PoemRetriever:
        """Open the configured encoder and store (``POEMRAG_*`` settings)."""
        settings = settings or Settings()
        embeddings = kwargs.pop("embeddings", None) or PoemEmbeddings.from_settings(settings)
        given: PoemStore | None = kwargs.pop("store", None)
        store = given or open_store(settings)
        try:
            check_store(store, embeddings, settings.collection)
        except PoemragError:
            if given is None:
                store.close()  # opened here: release its lock before reporting
            raise
        return cls(embeddings=embeddings, store=store, **kwargs)

    def _filter(self) -> SearchFilter:
        return SearchFilter(authors=self.authors, forms=self.forms, tags=self.tags)

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """Scored hits for ``query`` (at most one per poem unless ``one_per_poem`` is off)."""
        k = k or self.k
        vector = self.embeddings.encode_queries([clean_query(query)])[0]
        fetch = k * 4 if self.one_per_poem else k
        while True:
            with self._lock:
                hits = self.store.search(
                    vector, fetch, self._filter(), self.score_threshold, exact=self.exact
                )
            chosen = _one_per_poem(hits, k) if self.one_per_poem else hits[:k]
            if len(chosen) >= k or len(hits) < fetch or fetch >= 1000:
                return chosen
            fetch *= 4

    def full_poem(self, hit: Document | Hit | str) -> list[Document]:
        """Every stored couplet of the poem a hit belongs to (or of a poem id), in order."""
        poem_id = hit if isinstance(hit, str) else hit.metadata["poem_id"]
        with self._lock:
            return [hit_to_document(h) for h in self.store.poem(poem_id)]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        return [hit_to_document(h) for h in self.search(query, k)]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
    ) -> list[Document]:
        hits = await run_in_executor(None, self.search, query, k)
        return [hit_to_document(h) for h in hits]


def check_store(store: PoemStore, embeddings: PoemEmbeddings, collection: str) -> None:
    """Refuse a missing collection, or one embedded by another model (size or weights)."""
    check_same_model(store, embeddings.dimension, embeddings.fingerprint,
                     f"collection {collection!r}", must_exist=True)


def _one_per_poem(hits: list[Hit], k: int) -> list[Hit]:
    """The best hit of each poem; a couplet whose text was already chosen (the corpus holds
    some poems twice, under two authors) is skipped too."""
    seen: set[str] = set()
    chosen: list[Hit] = []
    for hit in hits:
        poem = "poem:" + str(hit.metadata.get("poem_id", hit.id))
        text = "text:" + hit.text
        if poem in seen or text in seen:
            continue
        seen.update((poem, text))
        chosen.append(hit)
        if len(chosen) == k:
            break
    return chosen
