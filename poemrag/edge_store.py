"""The embedded store: Qdrant Edge (the Qdrant engine in-process), persisted on disk.

One process at a time: the shard directory is guarded by an exclusive lock file, so a second
process gets a one-line error instead of corrupting the shard.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Self

import numpy as np
import qdrant_edge as qe
from qdrant_client import models as m

from poemrag.errors import StoreError
from poemrag.store import (
    DISTANCE,
    HNSW,
    HNSW_EF_SEARCH,
    MAX_POEM_LINES,
    QUANTIZATION,
    VECTOR_NAME,
    CollectionState,
    FilterLike,
    Hit,
    PointId,
    SearchFilter,
    check_collection,
    collection_summary,
    in_line_order,
    payload_schemas,
    search_params,
    to_filter,
    to_hits,
)

SPACE_BASE_BYTES = 128 * 2**20
"""Free disk space an ingest needs besides its points: segment files, WAL and indexes are
mmapped files of up to 32 MiB each (sparse on most disks, fully allocated on tmpfs, where
even a 10-point shard takes about 110 MiB once loaded)."""
SPACE_PAYLOAD_BYTES = 4096
"""Per point: payload, its indexes and the id tracker, with room to spare."""
SPACE_VECTOR_COPIES = 3
"""Per point, copies of the float32 vector: the write segment, the optimized segment the
index build writes beside it, and the int8 copy plus HNSW links (rounded up)."""


def space_needed(points: int, dim: int) -> int:
    """Bytes of free disk space to ask for before writing ``points`` vectors of size ``dim``."""
    per_point = SPACE_VECTOR_COPIES * 4 * dim + SPACE_PAYLOAD_BYTES
    return SPACE_BASE_BYTES + points * per_point


class EdgeStore:
    """A Qdrant Edge shard at ``path`` holding one poemrag collection."""

    def __init__(self, path: Path, *, hnsw_ef: int = HNSW_EF_SEARCH) -> None:
        self.path = Path(path)
        self.hnsw_ef = hnsw_ef
        self.meta_path = self.path.with_name(self.path.name + ".json")
        self._lock_file = self._lock(self.path.with_name(self.path.name + ".lock"))
        self._shard: qe.EdgeShard | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @staticmethod
    def _lock(lock_path: Path) -> IO[str]:
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = lock_path.open("a+")
        except OSError as exc:
            raise StoreError(
                f"cannot open the store at {lock_path.parent}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise StoreError(
                f"the store {lock_path.with_suffix('')} is in use by another process "
                f"(pid {owner}); "
                "wait for it to finish or set POEMRAG_DATA_DIR to another directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def close(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            if not self.exists():
                check_collection(self.label, None, None, must_exist=True)
            try:
                self._shard = qe.EdgeShard.load(str(self.path))
            except Exception as exc:  # noqa: BLE001 - the engine raises plain exceptions for damaged shards
                raise StoreError(f"cannot load the store at {self.path}: {exc}") from None
        return self._shard

    def exists(self) -> bool:
        return self.meta_path.exists() and self.path.is_dir()

    def _meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text(encoding="utf-8"))

    # -- collection ---------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"the collection at {self.path}"

    @property
    def model(self) -> str:
        """The encoder this collection was embedded with ("" if unknown or not created)."""
        return str(self._meta().get("model", "")) if self.exists() else ""

    def state(self) -> CollectionState | None:
        if not self.exists():
            return None
        meta = self._meta()
        return CollectionState(
            size=meta.get("size"), distance=meta.get("distance"),
            fingerprint=str(meta.get("fingerprint", "")), model=str(meta.get("model", "")),
        )

    def vector_size(self) -> int | None:
        return int(self._meta()["size"]) if self.exists() else None

    def model_fingerprint(self) -> str | None:
        state = self.state()
        return None if state is None else state.fingerprint

    def ensure_collection(
        self, dim: int, model: str = "", recreate: bool = False, fingerprint: str = ""
    ) -> None:
        if recreate:
            self.drop()
        if self.exists():
            check_collection(self.label, self.state(), dim, fingerprint)
            return
        if self.path.exists():  # a shard without metadata: a create that died half-way
            shutil.rmtree(self.path)
        self._shard = qe.EdgeShard.create(str(self.path), _edge_config(dim))
        for key, schema in payload_schemas().items():
            self._shard.update(qe.UpdateOperation.create_field_index(key, _edge_index(schema)))
        self._shard.flush()
        # Written last: its presence marks a complete collection.
        meta = {"size": dim, "distance": DISTANCE, "vector": VECTOR_NAME, "model": model,
                "fingerprint": fingerprint}
        self.meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    def check_free_space(self, points: int, dim: int) -> None:
        """Refuse, before writing, when the disk lacks room for ``points`` more vectors.

        The engine writes through memory-mapped files: running out of space mid-write kills
        the process with SIGBUS (no error message), so this is checked up front.
        """
        probe = self.path
        while not probe.exists():
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        need = space_needed(points, dim)
        if free < need:
            raise StoreError(
                f"not enough free disk space in {probe}: {free / 2**20:,.0f} MiB free, about "
                f"{need / 2**20:,.0f} MiB needed for {points:,} couplets; free some space or "
                "set POEMRAG_DATA_DIR to another disk"
            )

    def drop(self) -> None:
        """Delete the collection (shard files and metadata)."""
        if self._shard is not None:
            self._shard.close()
            self._shard = None
        self.meta_path.unlink(missing_ok=True)
        shutil.rmtree(self.path, ignore_errors=True)

    # -- writes -------------------------------------------------------------------------------

    def existing_ids(self, ids: Sequence[PointId]) -> set[PointId]:
        if not ids:
            return set()
        records = self.shard.retrieve(list(ids), with_payload=False, with_vector=False)
        return {h.id for h in to_hits(records)}

    def retrieve(self, ids: Sequence[PointId]) -> list[Hit]:
        if not ids or not self.exists():
            return []
        return to_hits(self.shard.retrieve(list(ids), with_payload=True, with_vector=False))

    def delete(self, ids: Sequence[PointId]) -> None:
        if ids and self.exists():
            self.shard.update(qe.UpdateOperation.delete_points(list(ids)))

    def upsert(
        self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict]
    ) -> None:
        # One tolist() for the whole batch rather than one per row (cheaper conversion).
        rows = np.asarray(vectors, dtype=np.float32).tolist()
        points = [
            qe.Point(i if isinstance(i, str) else int(i), {VECTOR_NAME: vec}, payload)
            for i, vec, payload in zip(ids, rows, payloads, strict=True)
        ]
        if points:
            self.shard.update(qe.UpdateOperation.upsert_points(points))

    def finish(self) -> None:
        self.shard.flush()
        self.shard.optimize()
        self.shard.flush()

    # -- reads --------------------------------------------------------------------------------

    def count(self) -> int:
        return int(self.shard.count(qe.CountRequest(exact=True))) if self.exists() else 0

    def info(self) -> dict[str, Any]:
        return collection_summary(self.shard.info())

    def search(
        self,
        vector: Sequence[float],
        limit: int,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        exact: bool = False,
        with_vector: bool = False,
    ) -> list[Hit]:
        params = search_params(self.hnsw_ef, exact)
        quant = params.quantization
        assert quant is not None
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(list(map(float, vector)), using=VECTOR_NAME),
            filter=edge_filter(to_filter(filter)),
            with_payload=True,
            with_vector=with_vector,
            score_threshold=score_threshold,
            params=qe.SearchParams(
                hnsw_ef=params.hnsw_ef,
                exact=bool(params.exact),
                quantization=qe.QuantizationSearchParams(
                    ignore=quant.ignore, rescore=quant.rescore, oversampling=quant.oversampling
                ),
            ),
        )
        return to_hits(self.shard.query(request), with_vector=with_vector)

    def poem(self, poem_id: str) -> list[Hit]:
        flt = edge_filter(to_filter(SearchFilter(poem_ids=[poem_id])))
        records, _ = self.shard.scroll(
            qe.ScrollRequest(limit=MAX_POEM_LINES, filter=flt, with_payload=True, with_vector=False)
        )
        return in_line_order(to_hits(records))

    def scroll_points(
        self, batch: int = 1024, with_vector: bool = True
    ) -> Iterator[tuple[PointId, Any, dict[str, Any]]]:
        """Yield (id, vector, payload) of every point, in id order (for copying to a server)."""
        offset = None
        while True:
            records, offset = self.shard.scroll(
                qe.ScrollRequest(
                    offset=offset, limit=batch, with_payload=True, with_vector=with_vector
                )
            )
            for r in records:
                vector = (
                    r.vector[VECTOR_NAME] if with_vector and isinstance(r.vector, dict) else None
                )
                yield (r.id if isinstance(r.id, int) else str(r.id)), vector, dict(r.payload or {})
            if offset is None:
                return


# -- translation of the collection spec (qdrant-client models) into Qdrant Edge's --------------


def _edge_config(dim: int) -> qe.EdgeConfig:
    quant = qe.ScalarQuantizationConfig(
        qe.ScalarType.Int8, quantile=QUANTIZATION.quantile, always_ram=QUANTIZATION.always_ram
    )
    return qe.EdgeConfig(
        vectors={
            VECTOR_NAME: qe.EdgeVectorParams(
                size=dim, distance=qe.Distance.Cosine, quantization_config=quant
            )
        },
        hnsw_config=qe.HnswIndexConfig(
            m=HNSW.m, ef_construct=HNSW.ef_construct, full_scan_threshold=HNSW.full_scan_threshold
        ),
        quantization_config=quant,
    )


def _edge_index(schema: Any) -> Any:
    if isinstance(schema, m.KeywordIndexParams):
        return qe.KeywordIndexParams()
    if isinstance(schema, m.IntegerIndexParams):
        return qe.IntegerIndexParams(
            lookup=schema.lookup, range=schema.range, enable_hnsw=schema.enable_hnsw
        )
    if isinstance(schema, m.TextIndexParams):
        return qe.TextIndexParams(
            tokenizer=qe.TokenizerType.Multilingual, lowercase=schema.lowercase,
            enable_hnsw=schema.enable_hnsw,
        )
    raise AssertionError(f"no Edge translation for {type(schema).__name__}")


def _edge_match(match: Any) -> Any:
    if isinstance(match, m.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, m.MatchAny):
        return qe.MatchAny(list(match.any))
    if isinstance(match, m.MatchExcept):
        return qe.MatchExcept(list(match.except_))
    if isinstance(match, m.MatchText):
        return qe.MatchText(match.text)
    raise StoreError(f"the embedded store cannot filter with {type(match).__name__}")


def _edge_condition(cond: Any) -> Any:
    if isinstance(cond, m.Filter):
        return edge_filter(cond)
    if isinstance(cond, m.FieldCondition):
        if cond.range is not None:
            r = cond.range
            return qe.FieldCondition(
                key=cond.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt)
            )
        if cond.match is not None:
            return qe.FieldCondition(key=cond.key, match=_edge_match(cond.match))
    if isinstance(cond, m.HasIdCondition):
        return qe.HasIdCondition(set(cond.has_id))
    if isinstance(cond, m.IsEmptyCondition):
        return qe.IsEmptyCondition(cond.is_empty.key)
    raise StoreError(f"the embedded store cannot filter with {type(cond).__name__}")


def edge_filter(flt: m.Filter | None) -> qe.Filter | None:
    """A qdrant-client ``Filter`` as Qdrant Edge's (field matches, ranges, ids, nesting)."""
    if flt is None:
        return None

    def conds(items: Any) -> list[Any] | None:
        if items is None:
            return None
        items = items if isinstance(items, list) else [items]
        return [_edge_condition(c) for c in items]

    return qe.Filter(must=conds(flt.must), should=conds(flt.should), must_not=conds(flt.must_not))
