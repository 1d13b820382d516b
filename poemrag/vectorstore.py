"""``PoemVectorStore``: a LangChain ``VectorStore`` over poemrag's collection (Edge or server).

Every search funnels into :meth:`PoemVectorStore._search`; a point becomes a ``Document`` in
one function (:func:`hit_to_document`). Documents added with ``add_texts``/``add_documents``
use the corpus's payload layout (``page_content`` + ``metadata``), so a user's own couplets
sit beside the Tang ones and answer the same filters.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from poemrag.errors import PoemragError
from poemrag.settings import Settings
from poemrag.store import (
    DOC_ID_FIELD,
    METADATA_FIELD,
    TEXT_FIELD,
    ClosesStore,
    FilterLike,
    Hit,
    PoemStore,
    PointId,
    check_same_model,
    open_store,
)

ID_NAMESPACE = uuid.UUID("8a1f7c52-3c0e-4d7e-9b7a-5f0c2c1e6d10")
"""Namespace of the UUIDs that stand for document ids Qdrant cannot take as they are."""
MAX_POINT_ID = 2**63
DEFAULT_FETCH_K = 20
DEFAULT_LAMBDA_MULT = 0.5


_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def store_lock(store: PoemStore) -> threading.RLock:
    """One lock per store object, shared by every vector store and retriever on it: the Edge
    engine is not documented as thread-safe, so one operation at a time."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(store)
        if lock is None:
            lock = _LOCKS[store] = threading.RLock()
        return lock


def point_id(doc_id: str | int) -> PointId:
    """The Qdrant point id for a document id: an integer or UUID as itself, any other string
    as a UUID derived from it (the string itself is kept in the payload's ``doc_id``)."""
    if isinstance(doc_id, int):
        return doc_id
    text = str(doc_id)
    if text.isdigit() and int(text) < MAX_POINT_ID:
        return int(text)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(ID_NAMESPACE, text))


def build_payload(text: str, metadata: dict[str, Any] | None, doc_id: str) -> dict[str, Any]:
    """The payload of a document: the corpus's layout, plus ``doc_id`` when the id needed one."""
    payload: dict[str, Any] = {TEXT_FIELD: text, METADATA_FIELD: dict(metadata or {})}
    if str(point_id(doc_id)) != doc_id:
        payload[DOC_ID_FIELD] = doc_id
    return payload


def hit_to_document(hit: Hit) -> Document:
    """A stored point as a Document: its text, its metadata as added, its id."""
    return Document(page_content=hit.text, metadata=hit.metadata, id=hit.doc_id)


def embedding_identity(embedding: Embeddings) -> tuple[int | None, str]:
    """Vector size and model fingerprint when the embeddings can tell (PoemEmbeddings can);
    (None, "") for any other LangChain ``Embeddings``."""
    dim = getattr(embedding, "dimension", None)
    fingerprint = getattr(embedding, "fingerprint", "")
    return (int(dim) if isinstance(dim, int) else None,
            fingerprint if isinstance(fingerprint, str) else "")


def embed_query(embedding: Embeddings, text: str) -> list[float]:
    return list(embedding.embed_query(text))


class PoemVectorStore(ClosesStore, VectorStore):
    """LangChain's vector store interface over one poemrag collection.

    Build it from settings (``PoemVectorStore.from_settings()``) or from parts
    (``PoemVectorStore(store, embedding)``, any LangChain ``Embeddings``). Filters are a
    ``{"author": "李白"}`` dict or a ``qdrant_client.models.Filter``. Scores are cosine
    similarities. One operation at a time per store (the Edge engine is not thread-safe);
    ``close()`` or a ``with`` block releases the store.
    """

    def __init__(self, store: PoemStore, embedding: Embeddings, *, check: bool = True) -> None:
        self.store = store
        self.embedding = embedding
        self._lock = store_lock(store)
        self._exists = False
        if check:
            dim, fingerprint = embedding_identity(embedding)
            check_same_model(store, dim, fingerprint)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, embedding: Embeddings | None = None
    ) -> PoemVectorStore:
        """The configured store (``POEMRAG_*``) with ``embedding`` or the configured model."""
        settings = settings or Settings()
        if embedding is None:
            from poemrag.embeddings import PoemEmbeddings

            embedding = PoemEmbeddings.from_settings(settings)
        store = open_store(settings)
        try:
            return cls(store, embedding)
        except PoemragError:
            store.close()  # opened here: release its lock before reporting
            raise

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        store: PoemStore | None = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> Self:
        """A vector store on ``store`` (or the configured one) holding ``texts``."""
        vs = cls(store or open_store(settings), embedding)
        vs.add_texts(texts, metadatas, ids=ids, **kwargs)
        return vs

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    def _collection_exists(self) -> bool:
        if not self._exists:
            self._exists = self.store.vector_size() is not None
        return self._exists

    # -- writes -------------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and store ``texts`` (same id replaces); returns their ids (new UUIDs for
        those without one). Creates the collection on first use."""
        texts = list(texts)
        if not texts:
            return []
        metadatas = metadatas or [{} for _ in texts]
        doc_ids = [str(i) if i else str(uuid.uuid4()) for i in (ids or [None] * len(texts))]
        encode = getattr(self.embedding, "encode_documents", None)
        vectors = np.asarray(encode(texts) if encode else self.embedding.embed_documents(texts),
                             dtype=np.float32)
        payloads = [build_payload(t, md, i) for t, md, i in zip(texts, metadatas, doc_ids,
                                                                  strict=True)]
        _, fingerprint = embedding_identity(self.embedding)
        with self._lock:
            if not self._collection_exists():
                self.store.check_free_space(len(texts), vectors.shape[1])
            self.store.ensure_collection(
                vectors.shape[1], model=str(getattr(self.embedding, "model", "")),
                fingerprint=fingerprint,
            )
            self._exists = True
            self.store.upsert([point_id(i) for i in doc_ids], vectors, payloads)
            self.store.finish()
        return doc_ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Remove the documents with these ids (missing ones are ignored)."""
        if not ids:
            return None
        with self._lock:
            self.store.delete([point_id(i) for i in ids])
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents among ``ids``, in the order asked."""
        with self._lock:
            hits = self.store.retrieve([point_id(i) for i in ids])
        by_id = {h.doc_id: hit_to_document(h) for h in hits}
        return [by_id[str(i)] for i in ids if str(i) in by_id]

    # -- searches -----------------------------------------------------------------------------

    def _search(
        self,
        vector: Sequence[float],
        k: int,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        *,
        exact: bool = False,
        with_vector: bool = False,
    ) -> list[Hit]:
        """The one search every method goes through (no collection yet: no hits)."""
        with self._lock:
            if not self._collection_exists():
                return []
            return self.store.search(vector, k, filter, score_threshold, exact=exact,
                                     with_vector=with_vector)

    def search_hits(
        self, query: str, k: int = 4, filter: FilterLike = None,
        score_threshold: float | None = None, *, exact: bool = False,
    ) -> list[Hit]:
        """Scored points for ``query`` (poemrag's own records, for the retriever)."""
        return self._search(embed_query(self.embedding, query), k, filter, score_threshold,
                            exact=exact)

    def similarity_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        hits = self._search(embedding, k, filter, score_threshold,
                            exact=bool(kwargs.get("exact", False)))
        return [(hit_to_document(h), h.score) for h in hits]

    def similarity_search_with_score(
        self,
        query: str,
        k: int = 4,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Documents and their cosine similarity to ``query``, best first."""
        return self.similarity_search_with_score_by_vector(
            embed_query(self.embedding, query), k, filter, score_threshold, **kwargs
        )

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: FilterLike = None, **kwargs: Any
    ) -> list[Document]:
        pairs = self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)
        return [doc for doc, _ in pairs]

    def similarity_search(
        self, query: str, k: int = 4, filter: FilterLike = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = DEFAULT_FETCH_K,
        lambda_mult: float = DEFAULT_LAMBDA_MULT,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` of the ``fetch_k`` nearest, chosen for relevance and mutual diversity."""
        hits = self._search(embedding, max(k, fetch_k), filter, score_threshold,
                            with_vector=True)
        if not hits:
            return []
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32),
            [h.vector or [] for h in hits],
            lambda_mult=lambda_mult,
            k=k,
        )
        return [hit_to_document(hits[i]) for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = DEFAULT_FETCH_K,
        lambda_mult: float = DEFAULT_LAMBDA_MULT,
        filter: FilterLike = None,
        **kwargs: Any,
    ) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(
            embed_query(self.embedding, query), k, fetch_k, lambda_mult, filter, **kwargs
        )

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Relevance is the cosine similarity itself (below 0 counts as 0)."""
        return lambda score: max(0.0, score)
