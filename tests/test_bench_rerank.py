"""python -m bench.rerank end to end with tiny random models: the stand-in reranker is built
from the tiny encoder's layers, and every depth reports its time and its split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import rerank

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"


def test_rerank_latency_end_to_end_with_a_tiny_standin(
    env, tmp_path: Path, tiny_onnx_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, cache = tmp_path / "results", tmp_path / "cache"
    argv = ["--model", str(tiny_onnx_dir), "--standin-from", str(tiny_onnx_dir),
            "--source", str(FIXTURE), "--n", "20", "--queries", "4", "--top-n", "5", "15",
            "--cache", str(cache), "--out", str(out)]
    assert rerank.main(argv) == 0

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 20 and result["queries"] == 4
    assert list(result["latency"]) == ["no_rerank", "top5", "top15"]
    assert result["latency"]["no_rerank"]["rerank_p50_ms"] == 0
    for name in ("top5", "top15"):
        r = result["latency"][name]
        assert 0 < r["p50_ms"] <= r["p95_ms"] and r["rerank_p50_ms"] > 0
    assert "stand-in" in result["reranker"]
    standin = next(cache.glob("standin-reranker-*"))
    info = json.loads((standin / "poemrag_model.json").read_text())
    assert info["kind"] == "cross-encoder" and info["quantization"] == "int8"
    assert "| top 15 |" in (out / "rerank.md").read_text()
    # A second run reuses the built stand-in.
    assert rerank.main(argv) == 0 and list(cache.glob("standin-reranker-*")) == [standin]
