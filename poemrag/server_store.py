"""A Qdrant server (or qdrant-client's local mode) behind the :class:`PoemStore` interface.

Every client call goes through :meth:`ServerStore._call`: transient failures (connection
errors, timeouts, 408, 429, 500, 502, 503, 504) are retried with exponential backoff, and every
failure ends as one :class:`StoreError` line that names the server URL and never the API key.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from poemrag.batching import batched
from poemrag.errors import StoreError
from poemrag.settings import Settings
from poemrag.store import (
    DISTANCE,
    HNSW,
    HNSW_EF_SEARCH,
    MAX_POEM_LINES,
    QUANTIZATION,
    UPSERT_BATCH,
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

T = TypeVar("T")
MODEL_KEY = "poemrag_model"
FINGERPRINT_KEY = "poemrag_model_fingerprint"
"""Collection metadata keys: the model name and its weights' fingerprint."""
RETRIES = 4
"""Attempts per request (the first try included)."""
BACKOFF_S = 0.5
"""Sleep before the second attempt; doubled before each further one (0.5, 1, 2 s)."""
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ServerStore:
    """One collection on a Qdrant server, reached through qdrant-client.

    ``client`` may also be qdrant-client's local mode (``QdrantClient(":memory:")``), which the
    tests use. ``retries``/``backoff_s`` tune the retry loop (tests pass ``backoff_s=0``);
    ``batch_size`` caps the points sent per upsert request.
    """

    retries: int = RETRIES
    backoff_s: float = BACKOFF_S

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        where: str = "the Qdrant server",
        *,
        retries: int | None = None,
        backoff_s: float | None = None,
        batch_size: int = UPSERT_BATCH,
        hnsw_ef: int = HNSW_EF_SEARCH,
    ) -> None:
        self.client = client
        self.hnsw_ef = hnsw_ef
        self.collection = collection
        self.where = where
        self.retries = max(1, retries if retries is not None else type(self).retries)
        self.backoff_s = backoff_s if backoff_s is not None else type(self).backoff_s
        self.batch_size = max(1, batch_size)

    @classmethod
    def connect(
        cls, settings: Settings, *, retries: int | None = None, backoff_s: float | None = None
    ) -> ServerStore:
        """Connect to ``POEMRAG_QDRANT_URL`` and check that it answers (and accepts the key)."""
        url = settings.qdrant_url or ""
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        with warnings.catch_warnings():
            if _is_local(url):  # the compose setup: plain http on this machine or its network
                warnings.filterwarnings("ignore", "Api key is used with an insecure connection")
            try:
                client = QdrantClient(
                    url=url,
                    api_key=key,
                    timeout=max(1, math.ceil(settings.qdrant_timeout)),
                    check_compatibility=False,
                )
            except Exception as exc:  # a malformed URL  # noqa: BLE001
                reason = _root_cause(exc).replace(url, safe_url(url))
                raise StoreError(
                    f"invalid POEMRAG_QDRANT_URL {safe_url(url)!r}: {reason}"
                ) from None
        store = cls(
            client,
            settings.collection,
            where=f"the Qdrant server at {safe_url(url)}",
            retries=retries,
            backoff_s=backoff_s,
            batch_size=settings.upsert_batch_size,
            hnsw_ef=settings.hnsw_ef,
        )
        store._call(client.get_collections)
        return store

    # -- plumbing -----------------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the client, retrying transient failures with exponential backoff."""
        for attempt in range(self.retries):
            last = attempt == self.retries - 1
            try:
                return fn(*args, **kwargs)
            except UnexpectedResponse as exc:
                if exc.status_code in (401, 403):
                    raise StoreError(
                        f"{self.where} refused the API key ({exc.status_code}); "
                        "check POEMRAG_QDRANT_API_KEY"
                    ) from None
                if exc.status_code not in TRANSIENT_STATUS or last:
                    raise StoreError(
                        f"{self.where} answered {exc.status_code}: {_reason(exc)}"
                    ) from None
            except (ResponseHandlingException, ConnectionError, TimeoutError) as exc:
                if last:
                    raise StoreError(f"cannot reach {self.where}: {_root_cause(exc)}") from None
            if self.backoff_s > 0:
                time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()

    # -- collection ---------------------------------------------------------------------------

    def _info(self) -> m.CollectionInfo | None:
        """The collection's info, or None when it does not exist."""
        if not self._call(self.client.collection_exists, self.collection):
            return None
        return self._call(self.client.get_collection, self.collection)

    def _vector_params(self, info: m.CollectionInfo | None = None) -> m.VectorParams | None:
        info = info or self._info()
        if info is None:
            return None
        vectors = info.config.params.vectors
        if not isinstance(vectors, dict) or VECTOR_NAME not in vectors:
            raise StoreError(
                f"collection {self.collection!r} on {self.where} has no {VECTOR_NAME!r} vector; "
                "it was not made by poemrag: rerun with --recreate to rebuild it"
            )
        return vectors[VECTOR_NAME]

    @property
    def label(self) -> str:
        return f"collection {self.collection!r} on {self.where}"

    def state(self, info: m.CollectionInfo | None = None) -> CollectionState | None:
        info = info or self._info()
        params = self._vector_params(info)
        if info is None or params is None:
            return None
        meta = info.config.metadata or {}
        return CollectionState(
            size=int(params.size), distance=params.distance.value,
            fingerprint=str(meta.get(FINGERPRINT_KEY, "")), model=str(meta.get(MODEL_KEY, "")),
        )

    def vector_size(self) -> int | None:
        params = self._vector_params()
        return None if params is None else int(params.size)

    def model_fingerprint(self, info: m.CollectionInfo | None = None) -> str | None:
        state = self.state(info)
        return None if state is None else state.fingerprint

    def ensure_collection(
        self, dim: int, model: str = "", recreate: bool = False, fingerprint: str = ""
    ) -> None:
        if recreate and self._call(self.client.collection_exists, self.collection):
            self._call(self.client.delete_collection, self.collection)
        state = self.state()
        if state is not None:
            check_collection(self.label, state, dim, fingerprint)
            self._create_indexes()  # those a create that died half-way did not make
            return
        try:
            self._call(
                self.client.create_collection,
                self.collection,
                vectors_config={VECTOR_NAME: m.VectorParams(size=dim, distance=m.Distance.COSINE)},
                hnsw_config=HNSW,
                quantization_config=m.ScalarQuantization(scalar=QUANTIZATION),
                metadata=({MODEL_KEY: model} if model else {})
                | ({FINGERPRINT_KEY: fingerprint} if fingerprint else {}) or None,
            )
        except StoreError:
            # A retried create whose first attempt did reach the server answers 409: fine if
            # the collection is now there with the right vectors.
            params = self._vector_params()
            if params is None or params.size != dim or params.distance.value != DISTANCE:
                raise
        self._create_indexes()

    def _create_indexes(self) -> None:
        existing = self._call(self.client.get_collection, self.collection).payload_schema
        for field_name, schema in payload_schemas().items():
            if field_name not in existing:
                self._call(
                    self.client.create_payload_index,
                    self.collection,
                    field_name,
                    field_schema=schema,
                )

    # -- writes -------------------------------------------------------------------------------

    def check_free_space(self, points: int, dim: int) -> None:
        """The server manages its own disk."""

    def existing_ids(self, ids: Sequence[PointId]) -> set[PointId]:
        if not ids:
            return set()
        records = self._call(
            self.client.retrieve, self.collection, list(ids), with_payload=False, with_vectors=False
        )
        return {h.id for h in to_hits(records)}

    def retrieve(self, ids: Sequence[PointId]) -> list[Hit]:
        if not ids or not self._call(self.client.collection_exists, self.collection):
            return []
        return to_hits(self._call(self.client.retrieve, self.collection, list(ids),
                                  with_payload=True, with_vectors=False))

    def delete(self, ids: Sequence[PointId]) -> None:
        if ids and self._call(self.client.collection_exists, self.collection):
            self._call(self.client.delete, self.collection,
                       points_selector=m.PointIdsList(points=list(ids)), wait=True)

    def upsert(
        self,
        ids: Sequence[PointId],
        vectors: np.ndarray | Sequence[Sequence[float]],
        payloads: Sequence[dict],
    ) -> None:
        """Write points in requests of at most ``batch_size`` (a 1792-d point is ~20 kB of JSON)."""
        points = [
            m.PointStruct(id=i if isinstance(i, str) else int(i), vector={VECTOR_NAME: _floats(vec)}, payload=payload)
            for i, vec, payload in zip(ids, vectors, payloads, strict=True)
        ]
        for batch in batched(points, self.batch_size):
            self._call(self.client.upsert, self.collection, points=batch, wait=True)

    def finish(self) -> None:
        """Nothing to do: the server builds its indexes in the background."""

    # -- reads --------------------------------------------------------------------------------

    def count(self) -> int:
        if not self._call(self.client.collection_exists, self.collection):
            return 0
        return int(self._call(self.client.count, self.collection, exact=True).count)

    def info(self) -> dict[str, Any]:
        """Points, indexed vectors, segments and payload indexes (as ``EdgeStore.info``)."""
        return collection_summary(self._call(self.client.get_collection, self.collection))

    def search(
        self,
        vector: Sequence[float],
        limit: int,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        exact: bool = False,
        with_vector: bool = False,
    ) -> list[Hit]:
        response = self._call(
            self.client.query_points,
            self.collection,
            query=[float(x) for x in vector],
            using=VECTOR_NAME,
            limit=limit,
            query_filter=to_filter(filter),
            score_threshold=score_threshold,
            with_payload=True,
            with_vectors=[VECTOR_NAME] if with_vector else False,
            search_params=search_params(self.hnsw_ef, exact),
        )
        return to_hits(response.points, with_vector=with_vector)

    def poem(self, poem_id: str) -> list[Hit]:
        records, _ = self._call(
            self.client.scroll,
            self.collection,
            scroll_filter=to_filter(SearchFilter(poem_ids=[poem_id])),
            limit=MAX_POEM_LINES,
            with_payload=True,
        )
        return in_line_order(to_hits(records))

    def scroll_points(
        self, batch: int = 256, with_vector: bool = True
    ) -> Iterator[tuple[PointId, Any, dict]]:
        """Yield (id, vector, payload) of every point."""
        offset = None
        while True:
            records, offset = self._call(
                self.client.scroll,
                self.collection,
                limit=batch,
                offset=offset,
                with_payload=True,
                with_vectors=with_vector,
            )
            for r in records:
                vector = r.vector.get(VECTOR_NAME) if isinstance(r.vector, dict) else None
                yield (r.id if isinstance(r.id, int) else str(r.id)), vector, dict(r.payload or {})
            if offset is None:
                return


def server_filter(flt: FilterLike) -> m.Filter | None:
    """The filter as sent to the server (the spec's own Qdrant ``Filter``)."""
    return to_filter(flt)


def safe_url(url: str) -> str:
    """``url`` without any user:password part, fit to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _is_local(url: str) -> bool:
    """True for this machine or a single-label host (a compose service such as ``qdrant``)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host in LOCAL_HOSTS or (host != "" and "." not in host and ":" not in host)


def _floats(vector: Any) -> list[float]:
    return vector.tolist() if isinstance(vector, np.ndarray) else [float(x) for x in vector]


def _reason(exc: UnexpectedResponse) -> str:
    text = (exc.content or b"").decode("utf-8", "replace").strip()
    return text.splitlines()[0][:200] if text else exc.reason_phrase


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
