"""The vector store interface shared by the embedded Edge store and a Qdrant server.

Collection layout (identical on both backends):

* one named dense vector ``dense`` (size from the model, cosine), int8 scalar quantization, HNSW;
* payload ``{"page_content": couplet, "metadata": {...}}`` (LangChain's convention);
* keyword indexes on ``metadata.author/dynasty/form/tags/poem_id``, an integer index on
  ``metadata.line``, and a Multilingual full-text index on ``page_content`` (which segments
  Chinese). Text and integer indexes get no HNSW sub-graphs (they made builds much slower).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from poemrag.errors import StoreError
from poemrag.settings import Settings

VECTOR_NAME = "dense"
DISTANCE = "Cosine"
TEXT_FIELD = "page_content"
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
HNSW_EF_SEARCH = 128
FULL_SCAN_THRESHOLD_KB = 10_000
QUANTILE = 0.99
OVERSAMPLING = 2.0
"""Candidates fetched with int8 vectors per result, then rescored with the originals."""
MAX_POEM_LINES = 1000


@dataclass(frozen=True)
class Hit:
    """A point returned by a search: id, similarity score and payload."""

    id: int
    score: float
    payload: dict[str, Any]

    @property
    def text(self) -> str:
        return str(self.payload.get(TEXT_FIELD, ""))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.payload.get("metadata") or {})


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


def to_hits(points: Iterable[Any]) -> list[Hit]:
    """Hits from the engine's or the client's point records (scored or not)."""
    return [
        Hit(int(p.id), float(getattr(p, "score", 0.0) or 0.0), dict(p.payload or {}))
        for p in points
    ]


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


def check_fingerprint(where: str, recorded: str | None, expected: str) -> None:
    """Refuse a collection embedded by other weights than the ``expected`` fingerprint's."""
    if not expected or recorded is None or recorded == expected:
        return
    was = (f"a model with fingerprint {recorded}" if recorded
           else "a model it has no fingerprint of (an older poemrag)")
    raise StoreError(
        f"{where} was embedded with {was}, not the current model (fingerprint {expected}): its "
        "vectors would not match; rerun `python -m poemrag.ingest --recreate` to re-embed it"
    )


def check_vector_params(where: str, size: object, distance: object, dim: int) -> None:
    """Refuse a collection whose vectors are not ``dim``-d cosine (made by another model); the
    error names the CLI's own ``--recreate``."""
    if size != dim or distance != DISTANCE:
        raise StoreError(
            f"{where} holds {size}-d {distance} vectors but the model makes {dim}-d {DISTANCE} "
            "vectors; rerun with --recreate to rebuild it with this model"
        )


def check_same_model(
    store: PoemStore, dim: int, fingerprint: str, where: str, *, must_exist: bool = False
) -> None:
    """Refuse an existing collection embedded by another model: other vector size or other
    weights (fingerprint). A missing collection passes unless ``must_exist``."""
    size = store.vector_size()
    if size is None and must_exist:
        raise StoreError(f"{where} does not exist: run `python -m poemrag.ingest`")
    if size is not None and size != dim:
        raise StoreError(
            f"{where} holds {size}-d vectors but the model makes {dim}-d vectors; "
            "rerun `python -m poemrag.ingest --recreate` to rebuild it with this model"
        )
    check_fingerprint(where, store.model_fingerprint(), fingerprint)


class PoemStore(Protocol):
    """What ingest, retriever and search need from a vector store."""

    def vector_size(self) -> int | None:
        """Vector size of the existing collection, or None if it does not exist."""

    def ensure_collection(
        self, dim: int, model: str = "", recreate: bool = False, fingerprint: str = ""
    ) -> None:
        """Create the collection (or check the existing one) for vectors of size ``dim`` made
        by ``model``; an existing collection with another ``fingerprint`` is refused."""

    def model_fingerprint(self) -> str | None:
        """Fingerprint of the model the collection was embedded with: None without a
        collection, "" for one made before poemrag recorded fingerprints."""

    def check_free_space(self, points: int, dim: int) -> None:
        """Raise StoreError when writing ``points`` more vectors would not fit (no-op remotely)."""

    def existing_ids(self, ids: Sequence[int]) -> set[int]:
        """Those of ``ids`` already stored."""

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[dict]) -> None:
        """Write points (idempotent: same id overwrites)."""

    def finish(self) -> None:
        """Flush and build indexes after a bulk write."""

    def count(self) -> int:
        """Number of points in the collection."""

    def search(
        self,
        vector: Sequence[float],
        limit: int,
        filter: SearchFilter | None = None,
        score_threshold: float | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """Nearest couplets by cosine similarity."""

    def poem(self, poem_id: str) -> list[Hit]:
        """All stored couplets of one poem, in line order (score 0)."""

    def close(self) -> None:
        """Release files, locks and connections."""


def open_store(settings: Settings | None = None) -> PoemStore:
    """The embedded Edge store, or the server store when ``POEMRAG_QDRANT_URL`` is set."""
    settings = settings or Settings()
    if settings.qdrant_url:
        from poemrag.server_store import ServerStore

        return ServerStore.connect(settings)
    from poemrag.edge_store import EdgeStore

    return EdgeStore(settings.store_path, hnsw_ef=settings.hnsw_ef)
