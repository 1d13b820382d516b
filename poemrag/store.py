"""The collection spec and the vector store interface shared by the embedded Edge store and a
Qdrant server.

The collection's layout is described here once, in qdrant-client's models; the Edge and server
stores only translate it:

* one named dense vector ``dense`` (size from the model, cosine), int8 scalar quantization, HNSW;
* payload ``{"page_content": couplet, "metadata": {...}}`` (LangChain's convention), plus
  ``doc_id`` for a document added under an id that is neither an integer nor a UUID;
* keyword indexes on ``metadata.author/dynasty/form/tags/poem_id``, an integer index on
  ``metadata.line``, and a Multilingual full-text index on ``page_content`` (which segments
  Chinese). Text and integer indexes get no HNSW sub-graphs (they made builds much slower);
* filters as a qdrant-client ``Filter`` (:func:`to_filter` builds one from a
  :class:`SearchFilter` or a ``{"author": "李白"}`` dict);
* one compatibility check (:func:`check_collection`) with one message per mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import numpy as np
from qdrant_client import models as m

from poemrag.errors import StoreError
from poemrag.settings import HNSW_EF_SEARCH, LINES_PER_POEM, UPSERT_BATCH, Settings

__all__ = ["HNSW_EF_SEARCH", "UPSERT_BATCH"]  # re-exported: one definition, in settings

VECTOR_NAME = "dense"
DISTANCE = "Cosine"
TEXT_FIELD = "page_content"
METADATA_FIELD = "metadata"
DOC_ID_FIELD = "doc_id"
"""Payload key holding a document id that is not a Qdrant point id (see ``point_id``)."""
KEYWORD_FIELDS = (
    "metadata.author",
    "metadata.dynasty",
    "metadata.form",
    "metadata.tags",
    "metadata.poem_id",
)
INTEGER_FIELDS = ("metadata.line",)
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
FULL_SCAN_THRESHOLD_KB = 10_000
QUANTILE = 0.99
OVERSAMPLING = 2.0
"""Candidates fetched with int8 vectors per result, then rescored with the originals."""
MAX_POEM_LINES = LINES_PER_POEM
"""Most couplets one poem may have (ids are ``poem_index * LINES_PER_POEM + line``)."""
INGEST_COMMAND = "python -m poemrag.ingest"

PointId = int | str


# -- the layout, in qdrant-client's models ----------------------------------------------------


def vector_params(dim: int) -> m.VectorParams:
    """The one dense vector's parameters for a ``dim``-d model."""
    return m.VectorParams(size=dim, distance=m.Distance.COSINE)


QUANTIZATION = m.ScalarQuantizationConfig(
    type=m.ScalarType.INT8, quantile=QUANTILE, always_ram=True
)
HNSW = m.HnswConfigDiff(
    m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
)


def payload_schemas() -> dict[str, m.PayloadSchemaParams]:
    """Payload index schema per field (both backends build exactly these)."""
    schemas: dict[str, Any] = {
        key: m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD) for key in KEYWORD_FIELDS
    }
    for key in INTEGER_FIELDS:
        schemas[key] = m.IntegerIndexParams(
            type=m.IntegerIndexType.INTEGER, lookup=True, range=True, enable_hnsw=False
        )
    schemas[TEXT_FIELD] = m.TextIndexParams(
        type=m.TextIndexType.TEXT,
        tokenizer=m.TokenizerType.MULTILINGUAL,
        lowercase=True,
        enable_hnsw=False,
    )
    return schemas


def search_params(hnsw_ef: int, exact: bool) -> m.SearchParams:
    """HNSW breadth, and int8 candidates rescored with the original vectors."""
    return m.SearchParams(
        hnsw_ef=hnsw_ef,
        exact=exact,
        quantization=m.QuantizationSearchParams(
            ignore=exact, rescore=True, oversampling=OVERSAMPLING
        ),
    )


# -- points, hits and filters -----------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """A point returned by a search: id, similarity score, payload (and vector if asked)."""

    id: PointId
    score: float
    payload: dict[str, Any]
    vector: list[float] | None = None

    @property
    def text(self) -> str:
        return str(self.payload.get(TEXT_FIELD, ""))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.payload.get(METADATA_FIELD) or {})

    @property
    def doc_id(self) -> str:
        """The id a user gave the document (``str(id)`` for ids that are point ids)."""
        return str(self.payload.get(DOC_ID_FIELD) or self.id)


def to_hits(points: Iterable[Any], with_vector: bool = False) -> list[Hit]:
    """Hits from the engine's or the client's point records (scored or not)."""
    hits = []
    for p in points:
        pid = p.id if isinstance(p.id, int) else str(p.id)
        vector = None
        if with_vector and isinstance(p.vector, dict) and VECTOR_NAME in p.vector:
            vector = list(p.vector[VECTOR_NAME])
        hits.append(Hit(pid, float(getattr(p, "score", 0.0) or 0.0), dict(p.payload or {}), vector))
    return hits


@dataclass(frozen=True)
class SearchFilter:
    """Metadata constraints: each non-empty list must match (any of its values)."""

    authors: Sequence[str] = field(default_factory=tuple)
    forms: Sequence[str] = field(default_factory=tuple)
    tags: Sequence[str] = field(default_factory=tuple)
    poem_ids: Sequence[str] = field(default_factory=tuple)
    text: str | None = None
    """Full-text match on the couplet (Multilingual tokenizer)."""

    def conditions(self) -> list[tuple[str, list[str]]]:
        """(payload key, accepted values) pairs for the non-empty constraints."""
        pairs = [
            ("metadata.author", list(self.authors)),
            ("metadata.form", list(self.forms)),
            ("metadata.tags", list(self.tags)),
            ("metadata.poem_id", list(self.poem_ids)),
        ]
        return [(key, values) for key, values in pairs if values]

    def is_empty(self) -> bool:
        return not self.conditions() and not self.text


FilterLike = SearchFilter | Mapping[str, Any] | m.Filter | None
"""What searches accept as a filter: poemrag's own, a ``{"author": "李白"}`` dict (a list
value matches any of its items; keys are metadata keys or full payload paths), or a Qdrant
``Filter``."""


def _match(value: Any) -> m.Match:
    if isinstance(value, list | tuple | set | frozenset):
        return m.MatchAny(any=list(value))
    return m.MatchValue(value=value)


def to_filter(flt: FilterLike) -> m.Filter | None:
    """The Qdrant filter for ``flt`` (None when it constrains nothing)."""
    if flt is None or isinstance(flt, m.Filter):
        return flt
    if isinstance(flt, SearchFilter):
        if flt.is_empty():
            return None
        must: list[Any] = [
            m.FieldCondition(key=key, match=m.MatchAny(any=values))
            for key, values in flt.conditions()
        ]
        if flt.text:
            must.append(m.FieldCondition(key=TEXT_FIELD, match=m.MatchText(text=flt.text)))
        return m.Filter(must=must)
    if isinstance(flt, Mapping):
        if not flt:
            return None
        must = []
        for key, value in flt.items():
            path = key if key == TEXT_FIELD or "." in key else f"{METADATA_FIELD}.{key}"
            must.append(m.FieldCondition(key=path, match=_match(value)))
        return m.Filter(must=must)
    raise StoreError(
        f"a filter must be a dict, a qdrant_client.models.Filter or a SearchFilter, "
        f"not {type(flt).__name__}"
    )


# -- the compatibility check ------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionState:
    """What decides whether vectors fit an existing collection."""

    size: int | None
    distance: str | None
    fingerprint: str
    """"" when the collection records none (made by an older poemrag or by hand)."""
    model: str = ""


def check_collection(
    where: str,
    state: CollectionState | None,
    dim: int | None,
    fingerprint: str = "",
    *,
    must_exist: bool = False,
    fix: str = f"rerun `{INGEST_COMMAND} --recreate` to rebuild it with this model",
) -> None:
    """Refuse a collection that vectors of size ``dim`` from the model with ``fingerprint``
    do not fit: other size or distance, other weights. ``dim`` None or ``fingerprint`` ""
    skip that part (an embedding model that cannot tell). A missing collection passes unless
    ``must_exist``. Every message is one line and ends with ``fix``."""
    if state is None:
        if must_exist:
            raise StoreError(f"{where} does not exist: run `{INGEST_COMMAND}`")
        return
    if dim is not None and (state.size != dim or state.distance != DISTANCE):
        raise StoreError(
            f"{where} holds {state.size}-d {state.distance} vectors but the model makes "
            f"{dim}-d {DISTANCE} vectors; {fix}"
        )
    if fingerprint and state.fingerprint != fingerprint:
        was = (f"a model with fingerprint {state.fingerprint}" if state.fingerprint
               else "a model it has no fingerprint of (an older poemrag)")
        raise StoreError(
            f"{where} was embedded with {was}, not the current model (fingerprint "
            f"{fingerprint}): its vectors would not match; {fix}"
        )


def collection_summary(info: Any) -> dict[str, Any]:
    """Points, indexed vectors, segments and payload indexes of a shard or collection info
    (Qdrant Edge and qdrant-client name these fields alike)."""
    return {
        "points": info.points_count,
        "indexed_vectors": info.indexed_vectors_count,
        "segments": info.segments_count,
        "indexes": sorted(info.payload_schema),
    }


def in_line_order(hits: list[Hit]) -> list[Hit]:
    """A poem's couplets sorted by their line number."""
    return sorted(hits, key=lambda h: h.metadata.get("line", 0))


# -- the interface ----------------------------------------------------------------------------


class PoemStore(Protocol):
    """What ingest, the vector store and the retriever need from a backend."""

    label: str
    """The collection in words, for messages ("collection 'tang_poems' on …")."""

    def state(self) -> CollectionState | None:
        """Vector size, distance and model fingerprint of the collection (None if missing)."""

    def vector_size(self) -> int | None:
        """Vector size of the existing collection, or None if it does not exist."""

    def model_fingerprint(self) -> str | None:
        """Fingerprint of the model the collection was embedded with: None without a
        collection, "" for one made before poemrag recorded fingerprints."""

    def ensure_collection(
        self, dim: int, model: str = "", recreate: bool = False, fingerprint: str = ""
    ) -> None:
        """Create the collection (or check the existing one) for vectors of size ``dim`` made
        by ``model``; an existing collection with another ``fingerprint`` is refused."""

    def check_free_space(self, points: int, dim: int) -> None:
        """Raise StoreError when writing ``points`` more vectors would not fit (no-op remotely)."""

    def existing_ids(self, ids: Sequence[PointId]) -> set[PointId]:
        """Those of ``ids`` already stored."""

    def upsert(
        self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict]
    ) -> None:
        """Write points (idempotent: same id overwrites)."""

    def delete(self, ids: Sequence[PointId]) -> None:
        """Remove points (missing ids are ignored)."""

    def retrieve(self, ids: Sequence[PointId]) -> list[Hit]:
        """The stored points among ``ids`` (score 0, any order)."""

    def finish(self) -> None:
        """Flush and build indexes after a bulk write."""

    def count(self) -> int:
        """Number of points in the collection."""

    def search(
        self,
        vector: Sequence[float],
        limit: int,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        exact: bool = False,
        with_vector: bool = False,
    ) -> list[Hit]:
        """Nearest points by cosine similarity."""

    def poem(self, poem_id: str) -> list[Hit]:
        """All stored couplets of one poem, in line order (score 0)."""

    def scroll_points(
        self, batch: int = 1024, with_vector: bool = True
    ) -> Iterable[tuple[PointId, Any, dict[str, Any]]]:
        """Every point as (id, vector, payload)."""

    def close(self) -> None:
        """Release files, locks and connections."""


class ClosesStore:
    """``close()`` and ``with`` for an object that holds a store in ``self.store``."""

    store: Any

    def close(self) -> None:
        """Release the store's files, lock and connections."""
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_same_model(
    store: PoemStore, dim: int | None, fingerprint: str, where: str | None = None, *,
    must_exist: bool = False,
) -> None:
    """:func:`check_collection` on ``store``'s existing collection."""
    check_collection(where or store.label, store.state(), dim, fingerprint,
                     must_exist=must_exist)


def open_store(settings: Settings | None = None) -> PoemStore:
    """The embedded Edge store, or the server store when ``POEMRAG_QDRANT_URL`` is set."""
    settings = settings or Settings()
    if settings.qdrant_url:
        from poemrag.server_store import ServerStore

        return ServerStore.connect(settings)
    from poemrag.edge_store import EdgeStore

    return EdgeStore(settings.store_path, hnsw_ef=settings.hnsw_ef)
