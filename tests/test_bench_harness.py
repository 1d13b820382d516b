"""python -m bench end to end on the fixture corpus with tiny random models (poemrag's tiny
ONNX encoder, its unpacked same-weights baseline, a tiny seed), so the harness cannot rot;
and its summary, report and targets on made-up runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import harness
from bench.harness import SIDES, markdown, summarise, targets

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"
REQUIRED = ("n", "poemrag_ingest_per_s", "poemrag_query_p50_ms", "poemrag_peak_rss_mb",
            "seed_ingest_per_s", "seed_query_p50_ms", "baseline_ingest_per_s",
            "baseline_query_p50_ms")
BALLAST_MB = 1536


@pytest.mark.slow
def test_quick_run_end_to_end_with_tiny_models(
    env, tmp_path: Path, tiny_onnx_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("langchain_qdrant")
    pytest.importorskip("langchain_huggingface")
    out, cache = tmp_path / "results", tmp_path / "cache"
    # The harness holds 1.5 GB: a worker's peak RSS must not count it (wait4's ru_maxrss did).
    ballast = bytearray(BALLAST_MB * 2**20)
    ballast[:: 4096] = b"x" * len(range(0, len(ballast), 4096))
    argv = ["--quick", "--n", "20", "--queries", "5", "--rounds", "1",
            "--model", str(tiny_onnx_dir), "--source", str(FIXTURE),
            "--seed-arch", "tiny", "--cache", str(cache), "--out", str(out)]
    assert harness.main(argv) == 0

    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["n"] == 20 and result["mode"] == "quick"
    for key in REQUIRED[1:]:
        assert result[key] > 0, key
    assert 0 < result["poemrag_peak_anon_mb"] <= result["poemrag_peak_rss_mb"]
    for side in SIDES:
        assert result[f"{side}_peak_rss_mb"] < BALLAST_MB, side
    del ballast
    for side in SIDES:
        assert result[f"{side}_failures"] == []
    # One process per side and task, the sides in turn.
    assert [(r["side"], r["task"]) for r in result["runs"]] == (
        [(s, "ingest") for s in SIDES] + [(s, "query") for s in SIDES])
    assert all(r["points"] == 20 for r in result["runs"])
    # The baseline is the packaged-style ONNX model unpacked (same weights: same answers,
    # within int8-free tolerance here); the seed's random answers are never compared.
    unpacked = json.loads((Path(result["models"]["baseline"]) / "bench_unpack.json").read_text())
    assert unpacked["min_cosine_to_onnx"] >= 0.99
    assert result["top10_overlap_with_baseline"] >= 0.8
    assert not any("overlap" in k and "seed" in k for k in result)
    assert Path(result["models"]["seed"]).parent == cache
    assert result["ratio_ingest_vs_seed"] and result["ratio_query_p50_vs_baseline"]
    assert json.loads((out / "quick.json").read_text())["n"] == 20
    assert "the tiny architecture (BERT: 2 layers" in result["stacks"]["seed"]
    report = (out / "quick.md").read_text()
    assert "| query latency p50 (ms) |" in report and "poemrag vs seed" in report


def test_bad_model_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        harness.main(["--quick", "--model", str(tmp_path), "--source", str(FIXTURE)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"no model.onnx in {tmp_path}: export the packaged model first")


def _run(side: str, task: str, **fields: float) -> dict:
    return {"side": side, "task": task, "peak_rss_mb": fields.pop("rss", 100.0), **fields}


def made_up_runs() -> list[dict]:
    runs = []
    for ingest, p50 in ((200.0, 20.0), (220.0, 24.0)):  # two rounds; medians 210 / 22
        runs += [_run("poemrag", "ingest", ingest_per_s=ingest),
                 _run("seed", "ingest", ingest_per_s=10.0, rss=4000.0),
                 _run("baseline", "ingest", ingest_per_s=100.0, rss=2000.0),
                 _run("poemrag", "query", query_p50_ms=p50, query_p95_ms=30.0),
                 _run("seed", "query", query_p50_ms=440.0, query_p95_ms=600.0, rss=3000.0),
                 _run("baseline", "query", query_p50_ms=220.0, query_p95_ms=300.0)]
    return runs


def test_summary_ratios_are_poemrag_against_each_stack() -> None:
    s = summarise(made_up_runs())
    assert s["poemrag_ingest_per_s"] == 210.0 and s["poemrag_query_p50_ms"] == 22.0
    assert s["ratio_ingest_vs_seed"] == 21.0 and s["ratio_ingest_vs_baseline"] == 2.1
    assert s["ratio_query_p50_vs_seed"] == 20.0 and s["ratio_query_p50_vs_baseline"] == 10.0
    assert s["ratio_peak_rss_vs_seed"] == 40.0 and s["seed_peak_rss_mb"] == 4000.0
    result = s | {"n": 20_000}
    met = {t["target"]: t["met"] for t in targets(result)}
    assert met == {"≥ 10× the seed stack's ingest throughput at N=20,000": True,
                   "≥ 20× the seed stack's query speed (p50) at N=20,000": True}


def test_report_has_every_side_and_the_full_corpus() -> None:
    result = summarise(made_up_runs()) | {
        "mode": "full", "date": "today", "command": "python -m bench", "n": 20_000,
        "queries": 200, "k": 10, "rounds": 2, "total_s": 3600.0,
        "models": {side: f"models/{side}" for side in SIDES},
        "stacks": harness.stacks(harness.build_parser().parse_args([])),
        "machine": {"cpus": 2, "processor": "x86_64", "loadavg_before": [0, 0, 0],
                    "loadavg_after": [1, 1, 1], "other_busy_processes_before": [],
                    "other_busy_processes_after": []},
        "full_corpus": {
            "poemrag": {"couplets": 256_634, "wall_min": 39.0, "ingest_per_s": 110.0,
                        "query_p50_ms": 22.0, "ingest_peak_rss_mb": 6200.0,
                        "peak_anon_mb": 1900.0, "query_peak_anon_mb": 700.0},
            "seed": {"couplets": 256_634, "points": 2700, "ingest_per_s": 9.0,
                     "outcome": "time-boxed at 5 min: killed after 2,700 of 256,634 couplets"},
        },
    }
    report = markdown(result | {"targets": targets(result)})
    assert "| ingest throughput (couplets/s) | 210.0 | 10.0 | 100.0 | 21.00× | 2.10× |" in report
    assert "| | poemrag | seed |" in report and "seed at full corpus: time-boxed" in report
    assert "| full-corpus ingest ≤ 20 min | 39.00 min | no |" in report
    assert "| peak anonymous memory ≤ 4 GB (4096 MiB) | 1,900.00 MiB | yes |" in report
    assert "random weights" in report and "24 layers, hidden 1024" in report


def test_full_corpus_phase_time_boxes_the_stacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full run's whole-corpus phase, its workers replaced by canned results: poemrag
    ingests and queries; the seed is killed at its time box (how far it got, the rate); the
    baseline finishes and is queried."""
    calls: list[tuple[str, str, float | None]] = []

    def fake_run_side(side: str, task: str, *, timeout: float | None, **_: object) -> dict:
        calls.append((side, task, timeout))
        base = {"side": side, "task": task, "wall_s": 120.0, "peak_rss_mb": 900.0,
                "peak_anon_mb": 500.0}
        if side == "seed" and task == "ingest":
            return base | {"timed_out": True, "error": "timed out",
                           "progress": {"done": 27, "seconds": 3.0, "rss_mb": 3000.0}}
        if task == "ingest":
            return base | {"ingest_per_s": 200.0, "points": 43}
        return base | {"query_p50_ms": 5.0, "query_p95_ms": 9.0}

    monkeypatch.setattr(harness, "run_side", fake_run_side)
    args = harness.build_parser().parse_args(
        ["--source", str(FIXTURE), "--seed-full-timeout", "120", "--queries", "5"])
    args.queries = 5
    models = {side: tmp_path / side for side in SIDES}
    full = harness.full_corpus(args, tmp_path, models)

    assert [(s, t) for s, t, _ in calls] == [
        ("poemrag", "ingest"), ("poemrag", "query"), ("seed", "ingest"),
        ("baseline", "ingest"), ("baseline", "query")]
    assert calls[2][2] == 120 and calls[3][2] == 300  # each stack's own time box
    assert full["poemrag"]["query_p50_ms"] == 5.0 and full["poemrag"]["peak_anon_mb"] == 500.0
    seed = full["seed"]
    assert seed["couplets"] == 43 and seed["points"] == 27 and seed["ingest_per_s"] == 9.0
    assert seed["outcome"].startswith("time-boxed at 2 min: killed after 27 of 43 couplets")
    assert full["baseline"]["outcome"] == "completed"
    assert full["baseline"]["query_peak_anon_mb"] == 500.0
