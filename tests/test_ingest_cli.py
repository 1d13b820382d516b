"""`python -m poemrag.ingest` and `python -m poemrag.search` end to end on the fixture corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poemrag import ingest, search
from poemrag.cli import run_cli
from poemrag.edge_store import EdgeStore
from poemrag.settings import Settings

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"


def run(main, *args: str) -> int:
    return run_cli(main, list(args))


def stored_ids(settings: Settings) -> list[int]:
    with EdgeStore(settings.store_path) as store:
        return sorted(i for i, _, _ in store.scroll_points(with_vector=False))


def test_ingest_is_idempotent_and_prints_a_summary(env: Settings, capsys) -> None:
    assert run(ingest.main, "--source", str(FIXTURE), "--quiet") == 0
    out = capsys.readouterr().out
    assert "dropped     5" in out and "bracketed_note 2" in out and "in store    43" in out
    first = stored_ids(env)
    assert run(ingest.main, "--source", str(FIXTURE), "--quiet") == 0
    assert "(43 already stored)" in capsys.readouterr().out
    assert stored_ids(env) == first and len(first) == 43


def test_interrupted_ingest_resumes(env: Settings, capsys) -> None:
    assert run(ingest.main, "--source", str(FIXTURE), "--limit", "10", "--quiet") == 0
    assert len(stored_ids(env)) == 10
    assert run(ingest.main, "--source", str(FIXTURE), "--quiet") == 0
    out = capsys.readouterr().out
    assert "(10 already stored)" in out and "embedded    33" in out
    assert len(stored_ids(env)) == 43


def test_sample_ingests_only_the_300(env: Settings) -> None:
    assert run(ingest.main, "--source", str(FIXTURE), "--sample", "--quiet") == 0
    assert len(stored_ids(env)) == 19


def test_search_cli_prints_text_and_json(env: Settings, capsys) -> None:
    run(ingest.main, "--source", str(FIXTURE), "--quiet")
    capsys.readouterr()
    assert run(search.main, "想家", "-k", "2") == 0
    text = capsys.readouterr().out
    assert text.startswith("1. ") and "score" in text and "——" in text
    assert run(search.main, "想家", "-k", "3", "--json", "--author", "李白") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2  # 李白 has two poems in the fixture
    for row in rows:
        assert {"text", "title", "author", "poem_id", "line", "id", "score"} <= set(row)
        assert row["author"] == "李白"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "/nonexistent/corpus"], "corpus source not found"),
        (["--source", str(FIXTURE / "dist" / "quantangshi" / "authors.tang.json")], "neither"),
    ],
)
def test_bad_source_is_one_line_and_writes_nothing(env: Settings, capsys, args, message) -> None:
    assert run(ingest.main, *args, "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not env.store_path.exists()


def test_missing_model_is_refused(env: Settings, monkeypatch, capsys) -> None:
    monkeypatch.setenv("POEMRAG_MODEL", "/nonexistent/model")
    assert run(ingest.main, "--source", str(FIXTURE), "--quiet") == 2
    assert "model directory not found" in capsys.readouterr().err
    assert not env.store_path.exists()


def test_dimension_mismatch_is_refused_before_writing(env: Settings, capsys) -> None:
    with EdgeStore(env.store_path) as store:
        store.ensure_collection(7)
    assert run(ingest.main, "--source", str(FIXTURE), "--quiet") == 2
    err = capsys.readouterr().err
    assert "7-d" in err and "--recreate" in err
    with EdgeStore(env.store_path) as store:
        assert store.count() == 0 and store.vector_size() == 7
    assert run(ingest.main, "--source", str(FIXTURE), "--quiet", "--recreate") == 0
    assert len(stored_ids(env)) == 43


def test_store_in_use_is_refused(env: Settings, capsys) -> None:
    run(ingest.main, "--source", str(FIXTURE), "--quiet")
    with EdgeStore(env.store_path):
        assert run(search.main, "想家") == 2
        assert "in use by another process" in capsys.readouterr().err


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_empty_query_exits_non_zero(env: Settings, capsys, query: str) -> None:
    assert run(search.main, query) == 2
    assert "empty" in capsys.readouterr().err


def test_batched_splits_any_iterable() -> None:
    from poemrag.batching import batched

    assert list(batched(iter(range(5)), 2)) == [[0, 1], [2, 3], [4]]
    assert list(batched([], 3)) == []
    with pytest.raises(ValueError):
        list(batched([1], 0))
