"""poemrag vs the LangChain + qdrant-client local-mode baseline, on this machine.

    python -m bench --quick          # a few thousand couplets, ≤ 5 minutes on 2 cores
    python -m bench                  # N = 20,000 for both sides, then the full corpus

Workloads, each side in its own process (peak RSS per side, from ``wait4``), alternating
poemrag / baseline / poemrag / baseline:

1. ingest N couplets (embed + write + index) into a fresh store;
2. 200 chat-style queries one at a time end to end (embed + search, top-10): p50/p95 latency,
   the embed/search split, and peak RSS of a process that only opens the store and queries;
3. batch query throughput: ``Runnable.batch`` over the 200 queries, and one batched embedding
   call followed by one search per vector.

The full run then ingests the whole corpus with poemrag (and queries it), and tries the same
with the baseline under a time box, recording how far it got. Prints one JSON object and
writes ``bench/results/<quick|full>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from poemrag.errors import ModelError
from poemrag.settings import PACKAGED_MODEL_DIR

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SIDES = ("poemrag", "baseline")
BUSY_SEEN: dict[str, str] = {}
"""Other CPU-heavy processes seen while the workers ran: command -> "NN% command"."""


def default_st_model(onnx_dir: Path) -> Path:
    """The sentence-transformers model the ONNX export came from (``source`` in its
    ``poemrag_model.json``), when that directory is here; else a one-line error asking for
    ``--baseline-model`` (another model's weights would not be a like-for-like baseline)."""
    info = onnx_dir / "poemrag_model.json"
    source = ""
    if info.is_file():
        source = str(json.loads(info.read_text(encoding="utf-8")).get("source") or "")
    for path in ([Path(source), ROOT / source] if source else []):
        if (path / "modules.json").is_file():
            return path
    named = f"its export names {source}, which is not here" if source else \
        "its export does not name one"
    raise ModelError(f"no sentence-transformers form of {onnx_dir} for the baseline ({named}): "
                     "pass --baseline-model DIR with the same weights (the training output the "
                     "export came from)")


def default_source() -> Path:
    from poemrag.corpus import resolve_source
    from poemrag.settings import Settings
    from poemrag.sources import CorpusManifest

    return resolve_source(None, Settings().corpus_dir, CorpusManifest.load())


def write_couplets(source: Path, n: int | None, dest: Path) -> int:
    """The couplets (id, text, metadata) the baseline ingests: the same as poemrag's."""
    from poemrag.corpus import load_corpus

    corpus = load_corpus(source, limit=n)
    count = 0
    with dest.open("w", encoding="utf-8") as fh:
        for c in corpus.couplets():
            p = c.payload()
            fh.write(json.dumps({"id": c.id, "text": c.text, "metadata": p["metadata"]},
                                ensure_ascii=False) + "\n")
            count += 1
    return count


def disk_mb(path: Path) -> float:
    """Space the files under ``path`` take on disk (allocated blocks, not apparent size)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total / 2**20


def run_side(
    side: str, task: str, *, data: Path, model: Path, work: Path, tag: str,
    extra: list[str], timeout: float | None, profile: Path | None = None,
) -> dict[str, Any]:
    """Run one worker process; return its JSON plus wall time and peak RSS (from wait4)."""
    out = work / f"{tag}.json"
    progress = work / f"{tag}.progress.json"
    cmd = [sys.executable, "-m", "bench.sides", side, task, "--data", str(data),
           "--model", str(model), "--out", str(out), "--progress", str(progress), *extra]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    env = os.environ | {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                        "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    log = (work / f"{tag}.log").open("w")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    timed_out = False
    peak_disk, next_sample, next_busy = 0.0, 0.0, 0.0
    while True:
        if time.perf_counter() >= next_sample:
            peak_disk = max(peak_disk, disk_mb(data))
            next_sample = time.perf_counter() + 2.0
        if time.perf_counter() >= next_busy:
            for b in other_heavy_processes():
                BUSY_SEEN.setdefault(b.split(" ", 1)[1], b)
            next_busy = time.perf_counter() + 10.0
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if timeout is not None and time.perf_counter() - started > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            timed_out = True
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    result: dict[str, Any] = {
        "side": side, "task": task, "wall_s": wall, "exit_code": proc.returncode,
        "peak_rss_mb": usage.ru_maxrss / 1024, "timed_out": timed_out,
        "peak_disk_mb": max(peak_disk, disk_mb(data)),
    }
    if out.exists() and not timed_out:
        result |= json.loads(out.read_text(encoding="utf-8"))
    else:
        tail = (work / f"{tag}.log").read_text(errors="replace").strip().splitlines()[-3:]
        result["error"] = "timed out" if timed_out else (tail[-1] if tail else "no output")
        result["log_tail"] = tail
        if progress.exists():
            result["progress"] = json.loads(progress.read_text(encoding="utf-8"))
    return result


def other_heavy_processes() -> list[str]:
    """Command lines of other processes using the CPU now (e.g. a training job): numbers
    measured beside them are not this machine's capacity."""
    mine = {os.getpid(), os.getppid()}
    try:
        out = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,args", "--sort=-pcpu"],
                             capture_output=True, text=True, check=False).stdout.splitlines()[1:]
    except OSError:
        return []
    busy = []
    for line in out:
        pid, ppid, cpu, args = line.split(None, 3)
        # ps itself is our child: a process seconds old reads as 100% CPU.
        ours = int(pid) in mine or int(ppid) == os.getpid()
        if not ours and float(cpu) >= 20 and "bench.sides" not in args:
            busy.append(f"{float(cpu):.0f}% {args[:120]}")
    return busy


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def overlap_at_k(a: list[list[int]], b: list[list[int]]) -> float:
    """Mean share of the baseline's top-k ids that poemrag also returns."""
    shares = [len(set(x) & set(y)) / max(1, len(y)) for x, y in zip(a, b, strict=True)]
    return statistics.fmean(shares) if shares else 0.0


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per side over the rounds, and poemrag/baseline ratios."""
    out: dict[str, Any] = {}
    for side in SIDES:
        ing = [r for r in runs if r["side"] == side and r["task"] == "ingest"]
        qry = [r for r in runs if r["side"] == side and r["task"] == "query"]
        for key in ("ingest_per_s", "ingest_s", "embed_s", "upsert_s", "index_s", "corpus_s"):
            out[f"{side}_{key}"] = median(ing, key)
        for key in ("query_p50_ms", "query_p95_ms", "embed_p50_ms", "search_p50_ms",
                    "batch_qps", "vectorized_qps", "query_p50_ms_one_per_poem", "open_s"):
            out[f"{side}_{key}"] = median(qry, key)
        out[f"{side}_ingest_peak_rss_mb"] = max((r["peak_rss_mb"] for r in ing), default=None)
        out[f"{side}_query_peak_rss_mb"] = max((r["peak_rss_mb"] for r in qry), default=None)
        out[f"{side}_peak_rss_mb"] = max(
            (r["peak_rss_mb"] for r in ing + qry), default=None)
        out[f"{side}_failures"] = [r.get("error") for r in ing + qry if r.get("error")]

    def ratio(a: str, b: str) -> float | None:
        x, y = out.get(a), out.get(b)
        return round(x / y, 2) if x and y else None

    out["ratio_ingest_throughput"] = ratio("poemrag_ingest_per_s", "baseline_ingest_per_s")
    out["ratio_query_speed_p50"] = ratio("baseline_query_p50_ms", "poemrag_query_p50_ms")
    out["ratio_query_speed_p95"] = ratio("baseline_query_p95_ms", "poemrag_query_p95_ms")
    out["ratio_batch_qps"] = ratio("poemrag_batch_qps", "baseline_batch_qps")
    out["ratio_vectorized_qps"] = ratio("poemrag_vectorized_qps", "baseline_vectorized_qps")
    out["ratio_peak_rss"] = ratio("poemrag_peak_rss_mb", "baseline_peak_rss_mb")
    pq = [r for r in runs if r["side"] == "poemrag" and r["task"] == "query" and "result_ids" in r]
    bq = [r for r in runs if r["side"] == "baseline" and r["task"] == "query" and "result_ids" in r]
    if pq and bq:
        out["top10_overlap_with_baseline"] = round(
            overlap_at_k(pq[0]["result_ids"], bq[0]["result_ids"]), 3)
    return out


def strip(run: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 3) if isinstance(v, float) else v)
            for k, v in run.items() if k != "result_ids"}


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown report."""
    s = result
    rows = [
        ("ingest throughput (couplets/s)", "poemrag_ingest_per_s", "baseline_ingest_per_s",
         "ratio_ingest_throughput", "×"),
        ("ingest time (s)", "poemrag_ingest_s", "baseline_ingest_s", None, ""),
        ("· of which embedding (s)", "poemrag_embed_s", "baseline_embed_s", None, ""),
        ("· of which store writes (s)", "poemrag_upsert_s", "baseline_upsert_s", None, ""),
        ("· of which index build (s)", "poemrag_index_s", "baseline_index_s", None, ""),
        ("query latency p50 (ms)", "poemrag_query_p50_ms", "baseline_query_p50_ms",
         "ratio_query_speed_p50", "× faster"),
        ("query latency p95 (ms)", "poemrag_query_p95_ms", "baseline_query_p95_ms",
         "ratio_query_speed_p95", "× faster"),
        ("· embed p50 (ms)", "poemrag_embed_p50_ms", "baseline_embed_p50_ms", None, ""),
        ("· search p50 (ms)", "poemrag_search_p50_ms", "baseline_search_p50_ms", None, ""),
        ("batch queries/s (Runnable.batch)", "poemrag_batch_qps", "baseline_batch_qps",
         "ratio_batch_qps", "×"),
        ("batch queries/s (one embed call)", "poemrag_vectorized_qps", "baseline_vectorized_qps",
         "ratio_vectorized_qps", "×"),
        ("open store (s)", "poemrag_open_s", "baseline_open_s", None, ""),
        ("peak RSS, ingest (MiB)", "poemrag_ingest_peak_rss_mb", "baseline_ingest_peak_rss_mb",
         None, ""),
        ("peak RSS, queries (MiB)", "poemrag_query_peak_rss_mb", "baseline_query_peak_rss_mb",
         None, ""),
    ]
    lines = [
        f"# poemrag benchmark ({s['mode']}, {s['date']})",
        "",
        f"Command: `{s['command']}`  ",
        (f"Machine: {s['machine']['cpus']} CPUs ({s['machine']['processor']}), load average "
         f"before {s['machine']['loadavg_before']}, after {s['machine']['loadavg_after']}  "),
        (f"N = {s['n']:,} couplets, {s['queries']} chat queries, top-{s['k']}, "
         f"{s['rounds']} rounds alternating poemrag/baseline (medians)  "),
        f"poemrag: `{s['poemrag_stack']}`  ",
        f"baseline: `{s['baseline_stack']}`",
        "",
    ]
    m = s["machine"]
    busy = (m["other_busy_processes_before"] + m.get("other_busy_processes_during", [])
            + m["other_busy_processes_after"])
    if busy:
        lines += [("**Other processes were using the CPU during this run**: absolute numbers "
                   "are below what this machine can do, and the ratios may be distorted too:"),
                  ""]
        by_command = {b.split(" ", 1)[1]: b for b in busy}  # "NN% command": one per command
        lines += [f"- `{b}`" for b in by_command.values()]
        lines += [""]
    lines += [
        "| workload | poemrag | baseline | poemrag vs baseline |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, a, b, r, unit in rows:
        ratio = f"{fmt(s.get(r), 2)}{unit}" if r and s.get(r) else ""
        lines.append(f"| {label} | {fmt(s.get(a))} | {fmt(s.get(b))} | {ratio} |")
    if "top10_overlap_with_baseline" in s:
        lines += ["", (f"Top-10 overlap with the baseline's results (same weights; poemrag "
                       f"adds int8 ONNX, int8 scalar quantization and HNSW): "
                       f"{s['top10_overlap_with_baseline']:.1%}")]
    full = s.get("full_corpus")
    if full:
        p, b = full.get("poemrag", {}), full.get("baseline", {})
        lines += ["", "## Full corpus", "",
                  "| | poemrag | baseline |", "| --- | ---: | ---: |"]
        lines.append(f"| couplets | {fmt(p.get('couplets'))} | {fmt(b.get('couplets'))} |")
        lines.append(f"| points written | {fmt(p.get('points'))} | {fmt(b.get('points'))} |")
        lines.append(f"| ingest wall time incl. model + corpus (min) | {fmt(p.get('wall_min'), 2)} "
                     f"| {fmt(b.get('wall_min'), 2)} |")
        lines.append(f"| ingest throughput (couplets/s) | {fmt(p.get('ingest_per_s'))} | "
                     f"{fmt(b.get('ingest_per_s'))} |")
        lines.append(f"| peak RSS, ingest (MiB) | {fmt(p.get('ingest_peak_rss_mb'))} | "
                     f"{fmt(b.get('ingest_peak_rss_mb'))} |")
        lines.append(f"| peak disk use, ingest (MiB, sampled every 2 s) | "
                     f"{fmt(p.get('peak_disk_mb'))} | {fmt(b.get('peak_disk_mb'))} |")
        lines.append(f"| query p50 / p95 (ms) | {fmt(p.get('query_p50_ms'), 2)} / "
                     f"{fmt(p.get('query_p95_ms'), 2)} | {fmt(b.get('query_p50_ms'), 2)} / "
                     f"{fmt(b.get('query_p95_ms'), 2)} |")
        lines.append(f"| peak RSS, queries (MiB) | {fmt(p.get('query_peak_rss_mb'))} | "
                     f"{fmt(b.get('query_peak_rss_mb'))} |")
        if b.get("outcome"):
            lines += ["", f"Baseline at full corpus: {b['outcome']}"]
    targets = s.get("targets")
    if targets:
        lines += ["", "## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
        for t in targets:
            lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |")
    lines += ["", "Raw runs and every field: the JSON file beside this one.", ""]
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []

    def add(target: str, value: float | None, ok: bool | None, unit: str) -> None:
        if value is not None and ok is not None:
            out.append({"target": target, "measured": f"{value:,.2f}{unit}", "met": ok})

    full = (result.get("full_corpus") or {}).get("poemrag") or {}
    if full.get("wall_min") is not None:
        add("full-corpus ingest ≤ 20 min", full["wall_min"], full["wall_min"] <= 20, " min")
        peak = max(full.get("ingest_peak_rss_mb") or 0, full.get("query_peak_rss_mb") or 0)
        add("peak RSS ≤ 4 GB (4096 MiB)", peak, peak <= 4096, " MiB")
        q = full.get("query_p50_ms")
        add("query p50 ≤ 15 ms on the full collection", q, q is not None and q <= 15, " ms")
    r = result.get("ratio_ingest_throughput")
    n = f"{result['n']:,}"
    add(f"≥ 5× baseline ingest throughput at N={n}", r, r is not None and r >= 5, "×")
    r = result.get("ratio_query_speed_p50")
    add(f"≥ 20× baseline query speed (p50) at N={n}", r, r is not None and r >= 20, "×")
    return out


def full_corpus(args: argparse.Namespace, work: Path, st_model: Path) -> dict[str, Any]:
    """poemrag on the whole corpus; the baseline time-boxed on the same."""
    out: dict[str, Any] = {}
    data = work / "full-poemrag"
    ing = run_side("poemrag", "ingest", data=data, model=args.model, work=work,
                   tag="full-poemrag-ingest", extra=["--source", str(args.source)],
                   timeout=args.timeout_full)
    p = strip(ing) | {"wall_min": ing["wall_s"] / 60, "ingest_peak_rss_mb": ing["peak_rss_mb"]}
    print(f"full corpus poemrag ingest: {ing['wall_s'] / 60:.1f} min, "
          f"{ing.get('ingest_per_s', 0):.1f}/s {ing.get('error') or ''}", file=sys.stderr)
    if not ing.get("error"):
        q = run_side("poemrag", "query", data=data, model=args.model, work=work,
                     tag="full-poemrag-query", extra=["--queries", str(args.queries)],
                     timeout=args.timeout)
        p |= {k: q.get(k) for k in ("query_p50_ms", "query_p95_ms", "embed_p50_ms",
                                     "search_p50_ms", "batch_qps", "vectorized_qps",
                                     "query_p50_ms_one_per_poem")}
        p["query_peak_rss_mb"] = q["peak_rss_mb"]
        p["query_error"] = q.get("error")
        print(f"full corpus poemrag query: p50 {q.get('query_p50_ms', 0):.2f} ms "
              f"{q.get('error') or ''}", file=sys.stderr)
    shutil.rmtree(data, ignore_errors=True)
    out["poemrag"] = p
    if args.baseline_full_timeout > 0:
        couplets = work / "couplets-full.jsonl"
        total = write_couplets(args.source, None, couplets)
        data = work / "full-baseline"
        b = run_side("baseline", "ingest", data=data, model=st_model, work=work,
                     tag="full-baseline-ingest", extra=["--couplets", str(couplets)],
                     timeout=args.baseline_full_timeout)
        rec = strip(b) | {"wall_min": b["wall_s"] / 60, "ingest_peak_rss_mb": b["peak_rss_mb"],
                          "couplets": total}
        if b.get("timed_out"):
            prog = b.get("progress") or {}
            done, secs = prog.get("done", 0), prog.get("seconds") or 0
            rate = done / secs if secs else 0
            rec["points"] = done
            rec["ingest_per_s"] = rate
            eta = (f"; at that rate all {total:,} would take {total / rate / 60:.0f} min"
                   if rate else "")
            rec["outcome"] = (f"time-boxed at {args.baseline_full_timeout / 60:.0f} min: killed "
                              f"after {done:,} of {total:,} couplets ({rate:.1f}/s, RSS "
                              f"{prog.get('rss_mb', 0):,.0f} MiB){eta}. qdrant-client local mode "
                              "also warns above 20,000 points.")
        elif b.get("error"):
            rec["outcome"] = f"failed: {b['error']}"
        else:
            q = run_side("baseline", "query", data=data, model=st_model, work=work,
                         tag="full-baseline-query", extra=["--queries", str(args.queries)],
                         timeout=args.timeout)
            rec |= {k: q.get(k) for k in ("query_p50_ms", "query_p95_ms", "open_s")}
            rec["query_peak_rss_mb"] = q["peak_rss_mb"]
            failed = f"; queries failed: {q['error']}" if q.get("error") else ""
            rec["outcome"] = "completed" + failed
        shutil.rmtree(data, ignore_errors=True)
        out["baseline"] = rec
        print(f"full corpus baseline: {rec.get('outcome')}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few thousand couplets, ≤ 5 min")
    parser.add_argument("--n", type=int, help="couplets per A/B ingest (quick 2,000; full 20,000)")
    parser.add_argument("--rounds", type=int, help="A/B rounds (quick 2, full 2)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--model", type=Path, default=PACKAGED_MODEL_DIR, help="poemrag ONNX model")
    parser.add_argument("--baseline-model", type=Path,
                        help="sentence-transformers form of the same weights (default: the "
                             "model the export names, else artifacts/trained/*, else base)")
    parser.add_argument("--source", type=Path, help="corpus tarball (default: the pinned one)")
    parser.add_argument("--no-full-corpus", action="store_true", help="skip the full-corpus run")
    parser.add_argument("--baseline-full-timeout", type=float, default=300,
                        help="time box for the baseline's full-corpus attempt, s (0 = skip)")
    parser.add_argument("--timeout", type=float, default=900, help="per worker process, s")
    parser.add_argument("--timeout-full", type=float, default=5400,
                        help="poemrag full-corpus ingest, s (the default model's took 39 min "
                             "on 2 cores)")
    parser.add_argument("--profile", action="store_true",
                        help="also write pyinstrument reports of poemrag's ingest and queries")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    args.n = args.n or (2000 if args.quick else 20_000)
    args.rounds = args.rounds or 2
    args.source = args.source or default_source()
    if not (args.model / "model.onnx").is_file():
        parser.error(f"no model.onnx in {args.model}: export the packaged model first")
    try:
        st_model = args.baseline_model or default_st_model(args.model)
    except ModelError as exc:
        parser.error(str(exc))

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="poemrag-bench-"))
    load_before = os.getloadavg()
    busy_before = other_heavy_processes()
    started = time.perf_counter()
    try:
        couplets = work / "couplets.jsonl"
        n = write_couplets(args.source, args.n, couplets)
        runs: list[dict[str, Any]] = []
        for r in range(args.rounds):
            data = {side: work / f"r{r}-{side}" for side in SIDES}
            for side in SIDES:
                extra = ["--n", str(args.n)] + (
                    ["--source", str(args.source)] if side == "poemrag" else
                    ["--couplets", str(couplets)])
                prof = args.out / f"profile-{mode}-ingest.txt" if (
                    args.profile and side == "poemrag" and r == 0) else None
                runs.append(run_side(side, "ingest", data=data[side],
                                     model=args.model if side == "poemrag" else st_model,
                                     work=work, tag=f"r{r}-{side}-ingest", extra=extra,
                                     timeout=args.timeout, profile=prof))
                print(f"round {r + 1}/{args.rounds} {side} ingest: "
                      f"{runs[-1].get('ingest_per_s', 0):.1f}/s {runs[-1].get('error') or ''}",
                      file=sys.stderr)
            for side in SIDES:
                prof = args.out / f"profile-{mode}-query.txt" if (
                    args.profile and side == "poemrag" and r == 0) else None
                runs.append(run_side(side, "query", data=data[side],
                                     model=args.model if side == "poemrag" else st_model,
                                     work=work, tag=f"r{r}-{side}-query",
                                     extra=["--queries", str(args.queries)],
                                     timeout=args.timeout, profile=prof))
                print(f"round {r + 1}/{args.rounds} {side} query: "
                      f"p50 {runs[-1].get('query_p50_ms', 0):.2f} ms "
                      f"{runs[-1].get('error') or ''}", file=sys.stderr)
            for path in data.values():
                shutil.rmtree(path, ignore_errors=True)
        result: dict[str, Any] = {
            "mode": mode,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python -m bench" + (" --quick" if args.quick else "")
                       + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])
                                 if a != "--quick"),
            "n": n,
            "queries": args.queries,
            "k": 10,
            "rounds": args.rounds,
            "poemrag_model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT)
                                 else args.model),
            "baseline_model": str(st_model.relative_to(ROOT) if st_model.is_relative_to(ROOT)
                                  else st_model),
            "poemrag_stack": "PoemRetriever(k=10, one_per_poem=False) + PoemEmbeddings "
                             "(fastembed/onnxruntime, int8 ONNX) + EdgeStore (Qdrant Edge, "
                             "HNSW m16/ef_construct100, int8 scalar quantization)",
            "baseline_stack": "QdrantVectorStore(QdrantClient(path=...)).as_retriever(k=10) + "
                              "langchain_huggingface.HuggingFaceEmbeddings (sentence-transformers "
                              "on torch CPU, fp32, batch 64, model prompts)",
        }
        result |= summarise(runs)
        result["machine"] = machine_info(load_before, busy_before)
        result["runs"] = [strip(r) for r in runs]
        if not args.quick and not args.no_full_corpus:
            result["targets"] = targets(result)
            save(result, args.out, mode)  # the A/B part survives if the full-corpus part dies
            result["full_corpus"] = full_corpus(args, work, st_model)
        result["targets"] = targets(result)
        result["machine"] = machine_info(load_before, busy_before)
        result["total_s"] = round(time.perf_counter() - started, 1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)
    save(result, args.out, mode)
    print(json.dumps(result, ensure_ascii=False,
                     default=lambda o: round(o, 3) if isinstance(o, float) else str(o)))
    return 0


def save(result: dict[str, Any], out: Path, mode: str) -> None:
    (out / f"{mode}.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out / f"{mode}.md").write_text(markdown(result), encoding="utf-8")


def machine_info(load_before: tuple[float, float, float], busy_before: list[str]) -> dict:
    import onnxruntime
    import torch

    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "other_busy_processes_before": busy_before,
        "other_busy_processes_during": list(BUSY_SEEN.values()),
        "other_busy_processes_after": other_heavy_processes(),
    }
