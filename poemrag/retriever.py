"""LangChain retriever: a chat message in, fitting Tang couplets (as Documents) out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, PrivateAttr

from poemrag.errors import EmptyQueryError, PoemragError, SearchOptionError
from poemrag.settings import MAX_RERANK_TOP_N, RERANK_TOP_N, Settings
from poemrag.store import (
    METADATA_FIELD,
    ClosesStore,
    Hit,
    PoemStore,
    SearchFilter,
    check_same_model,
    open_store,
)
from poemrag.vectorstore import PoemVectorStore, embedding_identity, store_lock

if TYPE_CHECKING:
    from poemrag.reranker import PoemReranker

__all__ = ["EmptyQueryError", "PoemRetriever", "SearchOptionError", "clean_query"]

MAX_QUERY_CHARS = 512
"""Longer messages are cut: the encoder reads at most 128 tokens anyway."""
RERANK_SCORE = "rerank_score"
"""Metadata key of the reranker's score, beside the vector ``score``."""
MAX_FETCH = 1000
"""Most candidates fetched when one-per-poem thins them out."""
SEARCH_OPTIONS = ("k", "authors", "forms", "poem_tags", "score_threshold", "one_per_poem",
                  "exact", "rerank", "rerank_top_n")
"""What ``invoke(query, **options)`` and ``search_kwargs`` may set for one call."""


def clean_query(query: str) -> str:
    """The searchable text of a user message: control characters removed, trimmed, capped."""
    if not isinstance(query, str):
        raise EmptyQueryError(f"the query must be a string, not {type(query).__name__}")
    text = "".join(ch if ch.isprintable() else " " for ch in query).strip()
    if not text:
        raise EmptyQueryError("the query is empty: type a message to find a couplet for")
    return text[:MAX_QUERY_CHARS]


def hit_to_document(hit: Hit) -> Document:
    """A search hit as the retriever's Document (couplet + metadata with ``score`` and ``id``)."""
    metadata = hit.metadata | {"score": hit.score, "id": hit.id}
    return Document(page_content=hit.text, metadata=metadata, id=str(hit.id))


class PoemRetriever(ClosesStore, BaseRetriever):
    """Retrieves Tang couplets that fit a modern Chinese message, one per poem.

    Build it from settings (``PoemRetriever.from_settings()``) or from explicit parts
    (``PoemRetriever(embeddings=..., store=...)``; any LangChain ``Embeddings``). Results
    carry ``title``, ``author``, ``poem_id``, ``line``, ``form``, ``tags``, ``score`` and
    ``id`` in their metadata.

    With ``rerank`` (a :class:`~poemrag.reranker.PoemReranker`), a search fetches the
    ``rerank_top_n`` best candidates by vector, the cross-encoder re-scores them, and only then
    are one-per-poem and ``k`` applied; each result also carries ``rerank_score``.
    ``score_threshold`` still applies to the vector ``score``.

    Every option can also be set for one call, ``retriever.invoke(msg, k=3, authors=["李白"])``,
    or through ``search_kwargs`` (which ``configurable_fields`` can expose to a
    ``RunnableConfig``). ``tags`` and ``metadata`` are LangChain's run tags and metadata
    (tracing, callbacks); the poem-tag filter is ``poem_tags``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    embeddings: Embeddings
    store: Any = Field(description="A PoemStore (embedded Edge or Qdrant server).")
    k: int = Field(default=4, ge=1, le=100)
    score_threshold: float | None = None
    authors: Sequence[str] = ()
    forms: Sequence[str] = ()
    poem_tags: Sequence[str] = ()
    one_per_poem: bool = True
    exact: bool = False
    rerank: Any = Field(
        default=None, description="A PoemReranker for a second stage; None = vector order."
    )
    rerank_top_n: int = Field(default=RERANK_TOP_N, ge=1, le=MAX_RERANK_TOP_N)
    search_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Options applied to every call (see SEARCH_OPTIONS)."
    )

    _vectorstore: PoemVectorStore = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        # Built without the model check: from_settings checks, and a store given by hand is
        # the caller's (a PoemVectorStore checks when built directly).
        self._vectorstore = PoemVectorStore(self.store, self.embeddings, check=False)
        _options(self, self.search_kwargs)  # reject unknown keys now

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> PoemRetriever:
        """Open the configured encoder and store, and the reranker if ``POEMRAG_RERANKER`` is
        set (``POEMRAG_*`` settings)."""
        settings = settings or Settings()
        if settings.reranker and "rerank" not in kwargs:
            from poemrag.reranker import PoemReranker

            kwargs["rerank"] = PoemReranker.from_settings(settings)
        kwargs.setdefault("rerank_top_n", settings.rerank_top_n)
        embeddings = kwargs.pop("embeddings", None)
        if embeddings is None:
            from poemrag.embeddings import PoemEmbeddings

            embeddings = PoemEmbeddings.from_settings(settings)
        given: PoemStore | None = kwargs.pop("store", None)
        store = given or open_store(settings)
        try:
            check_store(store, embeddings, settings.collection)
        except PoemragError:
            if given is None:
                store.close()  # opened here: release its lock before reporting
            raise
        return cls(embeddings=embeddings, store=store, **kwargs)

    @property
    def vectorstore(self) -> PoemVectorStore:
        """The LangChain vector store this retriever searches (shares its lock)."""
        return self._vectorstore

    def search(self, query: str, k: int | None = None, **options: Any) -> list[Hit]:
        """Scored hits for ``query`` (at most one per poem unless ``one_per_poem`` is off);
        ``options`` (see ``SEARCH_OPTIONS``) override the retriever's for this call."""
        if k is not None:
            options["k"] = k
        opts = _options(self, self.search_kwargs | options)
        k = opts["k"]
        flt = SearchFilter(authors=opts["authors"], forms=opts["forms"], tags=opts["poem_tags"])
        text = clean_query(query)
        vs = self._vectorstore
        encode = getattr(self.embeddings, "encode_queries", None)
        vector = encode([text])[0] if encode else self.embeddings.embed_query(text)
        if opts["rerank"] is not None:
            hits = vs._search(vector, max(opts["rerank_top_n"], k), flt, opts["score_threshold"],
                              exact=opts["exact"])
            hits = _reranked(opts["rerank"], text, hits)
            return _one_per_poem(hits, k) if opts["one_per_poem"] else hits[:k]
        fetch = k * 4 if opts["one_per_poem"] else k
        while True:
            hits = vs._search(vector, fetch, flt, opts["score_threshold"], exact=opts["exact"])
            chosen = _one_per_poem(hits, k) if opts["one_per_poem"] else hits[:k]
            if len(chosen) >= k or len(hits) < fetch or fetch >= MAX_FETCH:
                return chosen
            fetch *= 4

    def full_poem(self, hit: Document | Hit | str) -> list[Document]:
        """Every stored couplet of the poem a hit belongs to (or of a poem id), in order."""
        poem_id = hit if isinstance(hit, str) else hit.metadata["poem_id"]
        with store_lock(self.store):
            return [hit_to_document(h) for h in self.store.poem(poem_id)]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **options: Any
    ) -> list[Document]:
        return [hit_to_document(h) for h in self.search(query, **options)]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        **options: Any,
    ) -> list[Document]:
        hits = await run_in_executor(None, lambda: self.search(query, **options))
        return [hit_to_document(h) for h in hits]


def _options(retriever: PoemRetriever, given: dict[str, Any]) -> dict[str, Any]:
    """The retriever's options with ``given`` applied; unknown names are refused."""
    unknown = sorted(set(given) - set(SEARCH_OPTIONS))
    if unknown:
        raise SearchOptionError(
            f"unknown search option {unknown[0]!r}; use one of {', '.join(SEARCH_OPTIONS)}"
        )
    opts = {name: getattr(retriever, name) for name in SEARCH_OPTIONS} | given
    if not isinstance(opts["k"], int) or not 1 <= opts["k"] <= 100:
        raise SearchOptionError(f"k must be an integer from 1 to 100, not {opts['k']!r}")
    for name in ("authors", "forms", "poem_tags"):
        if isinstance(opts[name], str):
            opts[name] = [opts[name]]
    top_n = opts["rerank_top_n"]
    if not isinstance(top_n, int) or not 1 <= top_n <= MAX_RERANK_TOP_N:
        raise SearchOptionError(
            f"rerank_top_n must be an integer from 1 to {MAX_RERANK_TOP_N}, not {top_n!r}"
        )
    if opts["rerank"] is not None and not callable(getattr(opts["rerank"], "rank", None)):
        raise SearchOptionError(
            f"rerank must be a PoemReranker or None, not {type(opts['rerank']).__name__}"
        )
    return opts


def _reranked(reranker: PoemReranker, query: str, hits: list[Hit]) -> list[Hit]:
    """``hits`` ordered by the reranker's score of (query, couplet), best first (ties keep the
    vector order), each with ``rerank_score`` in its metadata."""
    return [replace(hits[i], payload=hits[i].payload | {
        METADATA_FIELD: hits[i].metadata | {RERANK_SCORE: score}})
        for i, score in reranker.rank(query, [h.text for h in hits])]


def check_store(store: PoemStore, embeddings: Embeddings, collection: str) -> None:
    """Refuse a missing collection, or one embedded by another model (size or weights)."""
    dim, fingerprint = embedding_identity(embeddings)
    check_same_model(store, dim, fingerprint, f"collection {collection!r}", must_exist=True)


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
