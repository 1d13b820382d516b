"""bench.sides end to end on the fixture corpus with the tiny encoder: both sides ingest and
query, and report the fields the harness reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import sides
from bench.harness import default_st_model, write_couplets
from poemrag.errors import ModelError

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"


def run_side(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"{args[0]}-{args[1]}.json"
    assert sides.main([*args, "--out", str(out), "--queries", "5"]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_poemrag_side_ingests_and_queries(env, tmp_path: Path, tiny_onnx_dir: Path) -> None:
    data = tmp_path / "poemrag-store"
    common = ["--data", str(data), "--model", str(tiny_onnx_dir)]
    ingest = run_side(tmp_path, "poemrag", "ingest", *common, "--source", str(FIXTURE))
    assert ingest["points"] == ingest["couplets"] == ingest["embedded"] == 43
    assert ingest["ingest_per_s"] > 0 and ingest["embed_s"] > 0
    query = run_side(tmp_path, "poemrag", "query", *common)
    assert query["peak_rss_mb_self"] > 0 and "side" in query


def test_baseline_side_ingests_and_queries(env, tmp_path: Path, tiny_st_dir: Path) -> None:
    pytest.importorskip("langchain_qdrant")
    pytest.importorskip("langchain_huggingface")
    couplets = tmp_path / "couplets.jsonl"
    assert write_couplets(FIXTURE, None, couplets) == 43
    common = ["--data", str(tmp_path / "baseline-store"), "--model", str(tiny_st_dir)]
    ingest = run_side(tmp_path, "baseline", "ingest", *common, "--couplets", str(couplets))
    assert ingest["ingest_per_s"] > 0
    query = run_side(tmp_path, "baseline", "query", *common)
    assert query["side"] == "baseline"


def test_bench_baseline_is_the_export_source_or_a_clear_error(
    tiny_st_dir: Path, tiny_onnx_dir: Path, tmp_path: Path
) -> None:
    assert default_st_model(tiny_onnx_dir) == tiny_st_dir
    moved = tmp_path / "elsewhere"
    shutil.copytree(tiny_onnx_dir, moved)
    info = json.loads((moved / "poemrag_model.json").read_text())
    (moved / "poemrag_model.json").write_text(json.dumps(info | {"source": str(tmp_path / "gone")}))
    with pytest.raises(ModelError, match="gone, which is not here.*--baseline-model"):
        default_st_model(moved)

