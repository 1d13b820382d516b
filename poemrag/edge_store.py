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

from poemrag.errors import StoreError
from poemrag.store import (
    DISTANCE,
    FULL_SCAN_THRESHOLD_KB,
    HNSW_EF_CONSTRUCT,
    HNSW_EF_SEARCH,
    HNSW_M,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    MAX_POEM_LINES,
    OVERSAMPLING,
    QUANTILE,
    TEXT_FIELD,
    VECTOR_NAME,
    Hit,
    SearchFilter,
    check_fingerprint,
    check_vector_params,
    collection_summary,
    in_line_order,
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
                raise StoreError(
                    f"no collection at {self.path}: run `python -m poemrag.ingest` first"
                )
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
    def model(self) -> str:
        """The encoder this collection was embedded with ("" if unknown or not created)."""
        return str(self._meta().get("model", "")) if self.exists() else ""

    def vector_size(self) -> int | None:
        return int(self._meta()["size"]) if self.exists() else None

    def model_fingerprint(self) -> str | None:
        return str(self._meta().get("fingerprint", "")) if self.exists() else None

    def ensure_collection(
        self, dim: int, model: str = "", recreate: bool = False, fingerprint: str = ""
    ) -> None:
        if recreate:
            self.drop()
        if self.exists():
            meta = self._meta()
            check_vector_params(f"the collection at {self.path}", meta.get("size"),
                                meta.get("distance"), dim)
            check_fingerprint(f"the collection at {self.path}", self.model_fingerprint(),
                              fingerprint)
            return
        if self.path.exists():  # a shard without metadata: a create that died half-way
            shutil.rmtree(self.path)
        self._shard = qe.EdgeShard.create(str(self.path), _edge_config(dim))
        for field in KEYWORD_FIELDS:
            self._shard.update(
                qe.UpdateOperation.create_field_index(field, qe.KeywordIndexParams())
            )
        for field in INTEGER_FIELDS:
            params = qe.IntegerIndexParams(lookup=True, range=True, enable_hnsw=False)
            self._shard.update(qe.UpdateOperation.create_field_index(field, params))
        text = qe.TextIndexParams(
            tokenizer=qe.TokenizerType.Multilingual, lowercase=True, enable_hnsw=False
        )
        self._shard.update(qe.UpdateOperation.create_field_index(TEXT_FIELD, text))
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

    def existing_ids(self, ids: Sequence[int]) -> set[int]:
        if not ids:
            return set()
        records = self.shard.retrieve(list(ids), with_payload=False, with_vector=False)
        return {int(r.id) for r in records}

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[dict]) -> None:
        # One tolist() for the whole batch rather than one per row (cheaper conversion).
        rows = np.asarray(vectors, dtype=np.float32).tolist()
        points = [
            qe.Point(int(i), {VECTOR_NAME: vec}, payload)
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
        filter: SearchFilter | None = None,
        score_threshold: float | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(list(map(float, vector)), using=VECTOR_NAME),
            filter=_edge_filter(filter),
            with_payload=True,
            score_threshold=score_threshold,
            params=qe.SearchParams(
                hnsw_ef=self.hnsw_ef,
                exact=exact,
                quantization=qe.QuantizationSearchParams(
                    ignore=exact, rescore=True, oversampling=OVERSAMPLING
                ),
            ),
        )
        return to_hits(self.shard.query(request))

    def poem(self, poem_id: str) -> list[Hit]:
        flt = _edge_filter(SearchFilter(poem_ids=[poem_id]))
        records, _ = self.shard.scroll(
            qe.ScrollRequest(limit=MAX_POEM_LINES, filter=flt, with_payload=True, with_vector=False)
        )
        return in_line_order(to_hits(records))

    def scroll_points(
        self, batch: int = 1024, with_vector: bool = True
    ) -> Iterator[tuple[int, Any, dict[str, Any]]]:
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
                yield int(r.id), vector, dict(r.payload or {})
            if offset is None:
                return


def _edge_config(dim: int) -> qe.EdgeConfig:
    quant = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=QUANTILE, always_ram=True)
    return qe.EdgeConfig(
        vectors={
            VECTOR_NAME: qe.EdgeVectorParams(
                size=dim, distance=qe.Distance.Cosine, quantization_config=quant
            )
        },
        hnsw_config=qe.HnswIndexConfig(
            m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
        ),
        quantization_config=quant,
    )


def _edge_filter(flt: SearchFilter | None) -> qe.Filter | None:
    if flt is None or flt.is_empty():
        return None
    must: list[Any] = [
        qe.FieldCondition(key=key, match=qe.MatchAny(values)) for key, values in flt.conditions()
    ]
    if flt.text:
        must.append(qe.FieldCondition(key=TEXT_FIELD, match=qe.MatchText(flt.text)))
    return qe.Filter(must=must)
