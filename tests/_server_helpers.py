"""Server-path test helpers: ServerStore on qdrant-client's local mode or on a real server.

Tests that take ``server_store``/``loaded_server_store`` run twice: on ``QdrantClient(":memory:")``
("local") and on the server at ``POEMRAG_TEST_QDRANT_URL`` ("server", with the optional
``POEMRAG_TEST_QDRANT_API_KEY``), which is skipped with a printed reason when that is unset.
Server runs use a throwaway collection, dropped afterwards. Import the ``*_fixture`` names
into a test module to use the fixtures ``server_store`` and ``loaded_server_store``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import UnexpectedResponse

from poemrag.server_store import ServerStore
from poemrag.settings import Settings

SERVER_URL_ENV = "POEMRAG_TEST_QDRANT_URL"
SERVER_KEY_ENV = "POEMRAG_TEST_QDRANT_API_KEY"
LOCAL_WHERE = "qdrant-client local mode"
BACKENDS = ["local", pytest.param("server", marks=pytest.mark.server)]
LOCAL_MODE_WARNINGS = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
]
"""Local mode warns that it builds no payload indexes and ignores search params: use as
``pytestmark``."""


def server_settings(collection: str, **overrides: Any) -> Settings:
    """Settings for the test server, or skip (with the reason printed) when none is configured."""
    url = os.environ.get(SERVER_URL_ENV)
    if not url:
        reason = f"no Qdrant server to test against: set {SERVER_URL_ENV} (and {SERVER_KEY_ENV})"
        print(reason)
        pytest.skip(reason)
    values: dict[str, Any] = {
        "qdrant_url": url,
        "qdrant_api_key": os.environ.get(SERVER_KEY_ENV) or None,
        "collection": collection,
    }
    return Settings(_env_file=None, **(values | overrides))


def make_store(backend: str, collection: str = "tang_poems") -> ServerStore:
    """An empty ServerStore on ``backend`` ("local" or "server")."""
    if backend == "local":
        return ServerStore(QdrantClient(":memory:"), collection, LOCAL_WHERE, backoff_s=0.0)
    name = f"poemrag_test_{collection}_{uuid.uuid4().hex[:8]}"
    store = ServerStore.connect(server_settings(name), backoff_s=0.05)
    if store.client.collection_exists(name):
        store.client.delete_collection(name)
    return store


def drop(store: ServerStore) -> None:
    """Delete a test collection from a real server; close the client."""
    if not is_local(store) and store.client.collection_exists(store.collection):
        store.client.delete_collection(store.collection)
    store.close()


def is_local(store: ServerStore) -> bool:
    return store.where == LOCAL_WHERE


@pytest.fixture(name="server_store", params=BACKENDS)
def server_store_fixture(request: pytest.FixtureRequest) -> Iterator[ServerStore]:
    """An empty collection on each backend."""
    store = make_store(request.param)
    yield store
    drop(store)


@pytest.fixture(name="loaded_server_store", scope="module", params=BACKENDS)
def loaded_server_store_fixture(request: pytest.FixtureRequest, fixture_corpus, onnx_embeddings):
    """The fixture corpus ingested (tiny encoder) through ServerStore, on each backend."""
    import warnings

    from poemrag.ingest import ingest

    store = make_store(request.param)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Payload indexes have no effect")
        ingest(fixture_corpus, onnx_embeddings, store, progress=False)
    yield store
    drop(store)


class Unclosable:
    """A client proxy whose ``close`` does nothing (to share one local-mode client in a test)."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def close(self) -> None:
        pass


def http_error(status: int, body: bytes = b"") -> UnexpectedResponse:
    """What qdrant-client raises for an HTTP error answer."""
    phrase = httpx.codes.get_reason_phrase(status)
    return UnexpectedResponse(status, phrase, body or phrase.encode(), httpx.Headers())
