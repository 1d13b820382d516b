"""docs/dashboard.md: every Web UI console request parses and does what the text says.

Each request is parsed into qdrant-client's REST model for its endpoint and run, with the same
parameters, on the fixture collection through ServerStore's client: qdrant-client's local mode,
and a real server when ``POEMRAG_TEST_QDRANT_URL`` is set. Local mode builds no payload
indexes, so the full-text request is checked against the Edge store (the Qdrant engine with the
real Multilingual index) and, in local mode, only parsed and run.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _server_helpers import (  # noqa: F401  (fixtures)
    LOCAL_MODE_WARNINGS,
    is_local,
    loaded_server_store_fixture,
)
from pydantic import BaseModel
from qdrant_client.http import models as hm

from poemrag.server_store import ServerStore, payload_schemas
from poemrag.store import SearchFilter

pytestmark = LOCAL_MODE_WARNINGS

DOC = Path(__file__).parents[1] / "docs" / "dashboard.md"
COLLECTION = "tang_poems"
BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
REQUEST_LINE = re.compile(r"^(GET|POST) collections/([^/\s]+)(?:/(\S+))?$")

MODELS: dict[str, type[BaseModel] | None] = {
    "": None,  # GET collections/<name>: the collection info
    "points": hm.PointRequest,
    "points/scroll": hm.ScrollRequest,
    "points/count": hm.CountRequest,
    "facet": hm.FacetRequest,
    "points/query": hm.QueryRequest,
    "points/query/groups": hm.QueryGroupsRequest,
}
# REST body field -> qdrant-client keyword, per endpoint (a field not listed fails the test).
KWARGS: dict[str, dict[str, str]] = {
    "points": {"ids": "ids", "with_payload": "with_payload", "with_vector": "with_vectors"},
    "points/scroll": {
        "filter": "scroll_filter",
        "limit": "limit",
        "offset": "offset",
        "with_payload": "with_payload",
        "with_vector": "with_vectors",
        "order_by": "order_by",
    },
    "points/count": {"filter": "count_filter", "exact": "exact"},
    "facet": {"key": "key", "filter": "facet_filter", "limit": "limit", "exact": "exact"},
    "points/query": {
        "query": "query",
        "using": "using",
        "filter": "query_filter",
        "limit": "limit",
        "offset": "offset",
        "params": "search_params",
        "score_threshold": "score_threshold",
        "with_payload": "with_payload",
        "with_vector": "with_vectors",
    },
    "points/query/groups": {
        "query": "query",
        "using": "using",
        "filter": "query_filter",
        "limit": "limit",
        "group_by": "group_by",
        "group_size": "group_size",
        "params": "search_params",
        "with_payload": "with_payload",
        "with_vector": "with_vectors",
    },
}
METHODS = {
    "points": "retrieve",
    "points/scroll": "scroll",
    "points/count": "count",
    "facet": "facet",
    "points/query": "query_points",
    "points/query/groups": "query_points_groups",
}


@dataclass
class DocRequest:
    method: str
    endpoint: str
    body: dict[str, Any]
    request: BaseModel | None

    @property
    def label(self) -> str:
        return f"{self.method} {self.endpoint or COLLECTION} {json.dumps(self.body, ensure_ascii=False)}"

    def mentions(self, *needles: str) -> bool:
        text = json.dumps(self.body, ensure_ascii=False)
        return all(n in text for n in needles)


def doc_requests() -> list[DocRequest]:
    requests = []
    for block in BLOCK.findall(DOC.read_text(encoding="utf-8")):
        first, _, rest = block.partition("\n")
        match = REQUEST_LINE.match(first.strip())
        if not match:
            continue
        method, collection, endpoint = match.group(1), match.group(2), match.group(3) or ""
        assert collection == COLLECTION, first
        assert endpoint in MODELS, f"no REST model known for {first!r}"
        body = json.loads(rest) if rest.strip() else {}
        model = MODELS[endpoint]
        assert (method == "GET") == (model is None), first
        requests.append(
            DocRequest(method, endpoint, body, model.model_validate(body) if model else None)
        )
    return requests


REQUESTS = doc_requests()


def execute(store: ServerStore, req: DocRequest) -> Any:
    """Run a documented request with qdrant-client (the same parameters, any backend)."""
    if req.request is None:
        return store.client.get_collection(store.collection)
    names = KWARGS[req.endpoint]
    unknown = req.request.model_fields_set - set(names)
    assert not unknown, f"{req.label}: fields not mapped to the client: {unknown}"
    kwargs = {names[f]: getattr(req.request, f) for f in req.request.model_fields_set}
    return getattr(store.client, METHODS[req.endpoint])(store.collection, **kwargs)


def pick(endpoint: str, *needles: str, without: str | None = None) -> DocRequest:
    found = [
        r
        for r in REQUESTS
        if r.endpoint == endpoint and r.mentions(*needles) and not (without and r.mentions(without))
    ]
    assert len(found) == 1, (endpoint, needles, [r.label for r in found])
    return found[0]


def points(result: Any) -> list[Any]:
    """The records or scored points of a retrieve/scroll/query answer."""
    if isinstance(result, tuple):  # scroll: (records, next offset)
        return result[0]
    return result.points if hasattr(result, "points") else result


# -- parsing --------------------------------------------------------------------------------


def test_the_doc_covers_every_endpoint() -> None:
    assert {r.endpoint for r in REQUESTS} == set(MODELS)
    assert len(REQUESTS) >= 15


@pytest.mark.parametrize("req", REQUESTS, ids=lambda r: r.label[:60])
def test_every_request_parses_and_runs(req: DocRequest, loaded_server_store: ServerStore) -> None:
    assert execute(loaded_server_store, req) is not None


def test_field_table_matches_the_indexes_and_the_payload(loaded_server_store: ServerStore) -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w.]+)` \| [^|]+ \| ([^|]+) \|$", text, re.MULTILINE)
    indexed = {name for name, index in rows if index.strip() != "none"}
    assert indexed == set(payload_schemas())
    record = loaded_server_store.client.retrieve(loaded_server_store.collection, [11001])[0]
    payload = record.payload or {}
    fields = {"page_content"} | {f"metadata.{key}" for key in payload["metadata"]}
    assert {name for name, _ in rows} == fields


def test_payload_example_is_point_11001(loaded_server_store: ServerStore) -> None:
    example = next(b for b in BLOCK.findall(DOC.read_text(encoding="utf-8")) if b.startswith("{"))
    record = loaded_server_store.client.retrieve(loaded_server_store.collection, [11001])[0]
    assert json.loads(example) == record.payload


# -- what each request is said to return ----------------------------------------------------


def test_collection_info(loaded_server_store: ServerStore, onnx_embeddings) -> None:
    info = execute(loaded_server_store, pick(""))
    vector = info.config.params.vectors["dense"]
    assert vector.size == onnx_embeddings.dimension and vector.distance == hm.Distance.COSINE
    assert info.points_count == 43
    if not is_local(loaded_server_store):  # local mode builds no payload indexes
        assert set(info.payload_schema) == set(payload_schemas())


def test_point_by_id(loaded_server_store: ServerStore) -> None:
    [record] = execute(loaded_server_store, pick("points", "11001"))
    assert record.id == 11001 and record.payload["page_content"] == "举杯邀明月，对影成三人。"


def test_browse_an_author(loaded_server_store: ServerStore, fixture_corpus) -> None:
    records, next_offset = execute(
        loaded_server_store, pick("points/scroll", "metadata.author", "李白", without="饮酒")
    )
    expected = [c.id for c in fixture_corpus.couplets() if c.author == "李白"]
    assert sorted(r.id for r in records) == sorted(expected) and next_offset is None
    assert {r.payload["metadata"]["author"] for r in records} == {"李白"}
    assert set(records[0].payload["metadata"]) == {"title", "author", "line"}


def test_whole_poem_in_order(loaded_server_store: ServerStore) -> None:
    records, _ = execute(loaded_server_store, pick("points/scroll", "order_by"))
    assert [r.payload["metadata"]["line"] for r in records] == list(range(7))
    assert records[1].payload["page_content"] == "举杯邀明月，对影成三人。"


def test_filter_by_form(loaded_server_store: ServerStore, fixture_corpus) -> None:
    records, _ = execute(loaded_server_store, pick("points/scroll", "metadata.form", "七言"))
    expected = {c.id for c in fixture_corpus.couplets() if c.form == "七言"}
    assert {r.id for r in records} == expected and expected


def test_filter_by_tags(loaded_server_store: ServerStore, fixture_corpus) -> None:
    records, _ = execute(loaded_server_store, pick("points/scroll", "思乡", "月亮"))
    expected = {c.id for c in fixture_corpus.couplets() if {"思乡", "月亮"} & set(c.tags)}
    assert {r.id for r in records} == expected and expected
    both, _ = execute(loaded_server_store, pick("points/scroll", "李白", "饮酒"))
    expected = {c.id for c in fixture_corpus.couplets() if c.author == "李白" and "饮酒" in c.tags}
    assert {r.id for r in both} == expected and expected


def test_full_text_match(loaded_server_store: ServerStore, ingested_store, fixture_corpus) -> None:
    req = pick("points/scroll", "page_content", "明月")
    records, _ = execute(loaded_server_store, req)
    substring = {c.id for c in fixture_corpus.couplets() if "明月" in c.text}
    # The Qdrant engine with the Multilingual index (Edge) gives the documented word match.
    engine = {
        h.id
        for h in ingested_store.search(
            [1.0] * ingested_store.vector_size(), 50, SearchFilter(text="明月"), exact=True
        )
    }
    assert engine == {11001} and engine < substring == {11001, 2001}
    if is_local(loaded_server_store):
        # Local mode has no Multilingual tokenizer: it splits on punctuation, so a word inside a
        # clause never matches. The request is only parsed and run here.
        assert {r.id for r in records} <= substring
    else:
        assert {r.id for r in records} == engine


def test_count_and_facets(loaded_server_store: ServerStore, fixture_corpus) -> None:
    couplets = list(fixture_corpus.couplets())
    count = execute(loaded_server_store, pick("points/count", "李白"))
    assert count.count == sum(c.author == "李白" for c in couplets)
    authors = execute(loaded_server_store, pick("facet", "metadata.author"))
    assert {h.value: h.count for h in authors.hits} == Counter(c.author for c in couplets)
    assert [h.count for h in authors.hits] == sorted((h.count for h in authors.hits), reverse=True)
    tags = execute(loaded_server_store, pick("facet", "metadata.tags", "五言"))
    expected = Counter(t for c in couplets if c.form == "五言" for t in c.tags)
    assert len(tags.hits) == 10 and all(h.count == expected[h.value] for h in tags.hits)
    assert sorted(h.count for h in tags.hits) == sorted(expected.values())[-10:]


def nearest_to_11001(store: ServerStore, limit: int) -> list[int]:
    [record] = store.client.retrieve(store.collection, [11001], with_vectors=True)
    hits = store.search(record.vector["dense"], limit + 1, exact=True)
    return [h.id for h in hits if h.id != 11001][:limit]


def test_similar_couplets(loaded_server_store: ServerStore) -> None:
    expected = nearest_to_11001(loaded_server_store, 10)
    by_id = points(
        execute(loaded_server_store, pick("points/query", '"query": 11001', without="filter"))
    )
    recommend = points(execute(loaded_server_store, pick("points/query", "recommend")))
    assert [p.id for p in by_id] == [p.id for p in recommend] == expected
    others = points(execute(loaded_server_store, pick("points/query", "must_not")))
    assert others and all(p.payload["metadata"]["author"] != "李白" for p in others)


def test_groups_by_poem(loaded_server_store: ServerStore) -> None:
    result = execute(loaded_server_store, pick("points/query/groups"))
    assert len(result.groups) == 5
    assert len({g.id for g in result.groups}) == 5
    for group in result.groups:
        assert 1 <= len(group.hits) <= 2
        ids = [h.id for h in group.hits]
        records = loaded_server_store.client.retrieve(loaded_server_store.collection, ids)
        assert {r.payload["metadata"]["poem_id"] for r in records} == {group.id}
    first = [g.hits[0].id for g in result.groups]
    assert first[0] == nearest_to_11001(loaded_server_store, 1)[0]
