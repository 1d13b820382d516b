"""poemrag against two LangChain + qdrant-client local-mode stacks, on this machine.

    python -m bench --quick          # N = 1,000, 60 queries: meant for < 15 min on 2 cores
    python -m bench                  # N = 20,000, 200 queries, then the full corpus

Three sides, each task in its own process (peak RSS per side: the worker's ``VmHWM``), alternating
poemrag / seed / baseline / poemrag / seed / baseline:

* **poemrag**: the packaged int8 ONNX encoder, Qdrant Edge, ``PoemRetriever``;
* **seed**: the reference model card's stack: its 326M-parameter BERT-large architecture
  (random weights: a speed-only stand-in, no quality figure is reported for it) through
  ``HuggingFaceEmbeddings`` into ``QdrantVectorStore`` (see :mod:`bench.models`);
* **baseline**: the same stack with poemrag's own weights (unpacked from the packaged ONNX
  model), so the difference is the engine alone.

Workloads:

1. ingest N couplets (embed + write + index) into a fresh store;
2. chat-style queries one at a time end to end (embed + search, top-10): p50/p95 latency,
   the embed/search split, and peak RSS of a process that only opens the store and queries;
3. batch query throughput: ``Runnable.batch`` over the queries, and one batched embedding
   call followed by one search per vector.

The full run then ingests the whole corpus with poemrag (and queries it), and tries the same
with the seed and baseline stacks under a time box each, recording how far they got. Writes
``bench/results/<quick|full>.json`` and ``.md``; the last line printed is one JSON object.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.models import CACHE, SEED_ARCHS, same_weights_model, seed_model
from bench.rss_watch import read_status
from poemrag.errors import ModelError, PoemragError
from poemrag.settings import PACKAGED_MODEL_DIR

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SIDES = ("poemrag", "seed", "baseline")
OTHERS = ("seed", "baseline")
"""The LangChain stacks poemrag is compared with (ratios are poemrag relative to each)."""
QUICK = {"n": 1000, "queries": 60}
FULL = {"n": 20_000, "queries": 200}
PROGRESS_EVERY_S = 60.0
BUSY_SEEN: dict[str, str] = {}
"""Other CPU-heavy processes seen while the workers ran: command -> "NN% command"."""
STACKS = {
    "poemrag": "PoemRetriever(k=10, one_per_poem=False) + PoemEmbeddings (fastembed/onnxruntime, "
               "int8 ONNX) + EdgeStore (Qdrant Edge, HNSW m16/ef_construct100, int8 scalar "
               "quantization)",
    "seed": "QdrantVectorStore(QdrantClient(path=...)).as_retriever(k=10) + "
            "langchain_huggingface.HuggingFaceEmbeddings (sentence-transformers on torch CPU, "
            "fp32, batch 64) over {model}",
    "baseline": "the seed's stack over poemrag's own weights (unpacked from its ONNX model to "
                "sentence-transformers, model prompts)",
}


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


def couplet_texts(path: Path) -> list[str]:
    """The texts of a couplets file written by :func:`write_couplets`."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


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
    """Run one worker process; return its JSON plus wall time and peak memory.

    Peak RSS is the worker's own high-water mark (``VmHWM`` after its exec), not ``wait4``'s
    ``ru_maxrss``: Linux carries the forking parent's resident pages into the child's
    ``ru_maxrss``, so every side would read at least the harness's own size."""
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
    next_report = started + PROGRESS_EVERY_S
    peak_mem = {"RssAnon": 0, "RssFile": 0}
    peak_total = 0
    while True:
        sample = read_status(proc.pid) or {}
        for key, value in sample.items():
            peak_mem[key] = max(peak_mem[key], value)
        peak_total = max(peak_total, sum(sample.values()))
        if time.perf_counter() >= next_sample:
            peak_disk = max(peak_disk, disk_mb(data))
            next_sample = time.perf_counter() + 2.0
        if time.perf_counter() >= next_report:
            report_progress(tag, progress, time.perf_counter() - started)
            next_report = time.perf_counter() + PROGRESS_EVERY_S
        if time.perf_counter() >= next_busy:
            for b in other_heavy_processes():
                BUSY_SEEN.setdefault(b.split(" ", 1)[1], b)
            next_busy = time.perf_counter() + 10.0
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if timeout is not None and time.perf_counter() - started > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            timed_out = True
            pid, status, _ = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    result: dict[str, Any] = {
        "side": side, "task": task, "wall_s": wall, "exit_code": proc.returncode,
        "peak_rss_mb": peak_total, "timed_out": timed_out,
        # Sampled every 0.2 s: anonymous pages (what the process needs) apart from
        # file-backed ones (the store's memory-mapped files, which the kernel can drop).
        "peak_anon_mb": peak_mem["RssAnon"], "peak_file_mb": peak_mem["RssFile"],
        "peak_disk_mb": max(peak_disk, disk_mb(data)),
    }
    if out.exists() and not timed_out:
        result |= json.loads(out.read_text(encoding="utf-8"))
        result["peak_rss_mb"] = max(result.pop("peak_rss_mb_self"), peak_total)
    else:
        tail = (work / f"{tag}.log").read_text(errors="replace").strip().splitlines()[-3:]
        result["error"] = "timed out" if timed_out else (tail[-1] if tail else "no output")
        result["log_tail"] = tail
        if progress.exists():
            result["progress"] = json.loads(progress.read_text(encoding="utf-8"))
    return result


def report_progress(tag: str, progress: Path, seconds: float) -> None:
    """One stderr line on a long-running worker: how far its ingest got."""
    with contextlib.suppress(OSError, ValueError):
        prog = json.loads(progress.read_text(encoding="utf-8"))
        say(f"  {tag}: {prog['done']:,}/{prog['total']:,} couplets after {seconds:.0f} s "
            f"(RSS {prog.get('rss_mb', 0):,.0f} MiB)")
        return
    say(f"  {tag}: running for {seconds:.0f} s")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


INGEST_KEYS = ("ingest_per_s", "ingest_s", "embed_s", "upsert_s", "index_s", "corpus_s")
QUERY_KEYS = ("query_p50_ms", "query_p95_ms", "embed_p50_ms", "search_p50_ms", "batch_qps",
              "vectorized_qps", "query_p50_ms_one_per_poem", "open_s")
RATIOS = (  # name, poemrag's key, larger is better
    ("ingest", "ingest_per_s", True),
    ("query_p50", "query_p50_ms", False),
    ("query_p95", "query_p95_ms", False),
    ("batch_qps", "batch_qps", True),
    ("vectorized_qps", "vectorized_qps", True),
    ("peak_rss", "peak_rss_mb", False),
)
"""``ratio_<name>_vs_<side>``: how many times better poemrag is (peak RSS: how many times
less memory)."""


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per side over the rounds, and poemrag's ratios to each other side."""
    out: dict[str, Any] = {}
    for side in SIDES:
        ing = [r for r in runs if r["side"] == side and r["task"] == "ingest"]
        qry = [r for r in runs if r["side"] == side and r["task"] == "query"]
        if not ing and not qry:
            continue
        for key in INGEST_KEYS:
            out[f"{side}_{key}"] = median(ing, key)
        for key in QUERY_KEYS:
            out[f"{side}_{key}"] = median(qry, key)
        out[f"{side}_ingest_peak_rss_mb"] = max((r["peak_rss_mb"] for r in ing), default=None)
        out[f"{side}_query_peak_rss_mb"] = max((r["peak_rss_mb"] for r in qry), default=None)
        out[f"{side}_peak_rss_mb"] = max(
            (r["peak_rss_mb"] for r in ing + qry), default=None)
        out[f"{side}_peak_anon_mb"] = max(
            (r.get("peak_anon_mb") or 0 for r in ing + qry), default=None)
        out[f"{side}_failures"] = [r.get("error") for r in ing + qry if r.get("error")]

    for other in OTHERS:
        for name, key, larger_better in RATIOS:
            mine, theirs = out.get(f"poemrag_{key}"), out.get(f"{other}_{key}")
            value = None
            if mine and theirs:
                value = round(mine / theirs if larger_better else theirs / mine, 2)
            out[f"ratio_{name}_vs_{other}"] = value
    # Result overlap only where the weights are the same: the seed's random ones mean nothing.
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
    rows = [  # label, key, ratio name, ratio unit
        ("ingest throughput (couplets/s)", "ingest_per_s", "ingest", "×"),
        ("ingest time (s)", "ingest_s", None, ""),
        ("· of which embedding (s)", "embed_s", None, ""),
        ("· of which store writes (s)", "upsert_s", None, ""),
        ("· of which index build (s)", "index_s", None, ""),
        ("query latency p50 (ms)", "query_p50_ms", "query_p50", "× faster"),
        ("query latency p95 (ms)", "query_p95_ms", "query_p95", "× faster"),
        ("· embed p50 (ms)", "embed_p50_ms", None, ""),
        ("· search p50 (ms)", "search_p50_ms", None, ""),
        ("batch queries/s (Runnable.batch)", "batch_qps", "batch_qps", "×"),
        ("batch queries/s (one embed call)", "vectorized_qps", "vectorized_qps", "×"),
        ("open store (s)", "open_s", None, ""),
        ("peak RSS, ingest (MiB)", "ingest_peak_rss_mb", None, ""),
        ("peak RSS, queries (MiB)", "query_peak_rss_mb", None, ""),
        ("peak RSS, either (MiB)", "peak_rss_mb", "peak_rss", "× less"),
        ("peak anonymous memory, either (MiB)", "peak_anon_mb", None, ""),
    ]
    lines = [
        f"# poemrag benchmark ({s['mode']}, {s['date']})",
        "",
        f"Command: `{s['command']}` ({fmt(s.get('total_s'), 0)} s in all)  ",
        (f"Machine: {s['machine']['cpus']} CPUs ({s['machine']['processor']}), load average "
         f"before {s['machine']['loadavg_before']}, after {s['machine']['loadavg_after']}  "),
        (f"N = {s['n']:,} couplets, {s['queries']} chat queries, top-{s['k']}, "
         f"{s['rounds']} rounds alternating {' / '.join(SIDES)} (medians)  "),
    ]
    lines += [f"{side}: `{s['models'][side]}`: {s['stacks'][side]}  " for side in SIDES]
    lines += ["", ("The seed has random weights: it measures the reference stack's speed and "
                   "memory only, never its answers."), ""]
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
        ("| workload | poemrag | seed | baseline (same weights) | poemrag vs seed "
         "| poemrag vs baseline |"),
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, key, ratio, unit in rows:
        cells = [fmt(s.get(f"{side}_{key}")) for side in SIDES]
        for other in OTHERS:
            value = s.get(f"ratio_{ratio}_vs_{other}") if ratio else None
            cells.append(f"{fmt(value, 2)}{unit}" if value else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "top10_overlap_with_baseline" in s:
        lines += ["", (f"Top-10 overlap with the baseline's results (same weights; poemrag "
                       f"adds int8 ONNX, int8 scalar quantization and HNSW): "
                       f"{s['top10_overlap_with_baseline']:.1%}")]
    failures = {side: s.get(f"{side}_failures") for side in SIDES if s.get(f"{side}_failures")}
    if failures:
        lines += ["", "Failed workers: " + "; ".join(
            f"{side}: {', '.join(map(str, errs))}" for side, errs in failures.items())]
    full = s.get("full_corpus")
    if full:
        cols = [side for side in SIDES if side in full]
        lines += ["", "## Full corpus", "", "| | " + " | ".join(cols) + " |",
                  "| --- |" + " ---: |" * len(cols)]

        def row(label: str, get: Any) -> None:
            lines.append(f"| {label} | " + " | ".join(get(full[c]) for c in cols) + " |")

        row("couplets", lambda r: fmt(r.get("couplets")))
        row("points written", lambda r: fmt(r.get("points")))
        row("ingest wall time incl. model + corpus (min)", lambda r: fmt(r.get("wall_min"), 2))
        row("ingest throughput (couplets/s)", lambda r: fmt(r.get("ingest_per_s")))
        row("peak RSS, ingest (MiB)", lambda r: fmt(r.get("ingest_peak_rss_mb")))
        row("peak anonymous memory, ingest (MiB, sampled every 0.2 s)",
            lambda r: fmt(r.get("peak_anon_mb")))
        row("peak disk use, ingest (MiB, sampled every 2 s)", lambda r: fmt(r.get("peak_disk_mb")))
        row("query p50 / p95 (ms)", lambda r: f"{fmt(r.get('query_p50_ms'), 2)} / "
                                               f"{fmt(r.get('query_p95_ms'), 2)}")
        row("peak RSS, queries (MiB)", lambda r: fmt(r.get("query_peak_rss_mb")))
        row("peak anonymous memory, queries (MiB)", lambda r: fmt(r.get("query_peak_anon_mb")))
        for side in cols:
            if full[side].get("outcome"):
                lines += ["", f"{side} at full corpus: {full[side]['outcome']}"]
    targets = s.get("targets")
    if targets:
        lines += ["", "## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
        for t in targets:
            lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |")
    lines += ["", "Raw runs and every field: the JSON file beside this one.", ""]
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against the seed stack, where measured."""
    out = []

    def add(target: str, value: float | None, ok: bool | None, unit: str) -> None:
        if value is not None and ok is not None:
            out.append({"target": target, "measured": f"{value:,.2f}{unit}", "met": ok})

    full = (result.get("full_corpus") or {}).get("poemrag") or {}
    if full.get("wall_min") is not None:
        add("full-corpus ingest ≤ 20 min", full["wall_min"], full["wall_min"] <= 20, " min")
        # Anonymous memory: the store's memory-mapped files count in RSS but can be dropped.
        peak = max(full.get("peak_anon_mb") or 0, full.get("query_peak_anon_mb") or 0)
        add("peak anonymous memory ≤ 4 GB (4096 MiB)", peak, peak <= 4096, " MiB")
        q = full.get("query_p50_ms")
        add("query p50 ≤ 15 ms on the full collection", q, q is not None and q <= 15, " ms")
    n = f"{result['n']:,}"
    r = result.get("ratio_ingest_vs_seed")
    add(f"≥ 10× the seed stack's ingest throughput at N={n}", r, r is not None and r >= 10, "×")
    r = result.get("ratio_query_p50_vs_seed")
    add(f"≥ 20× the seed stack's query speed (p50) at N={n}", r, r is not None and r >= 20, "×")
    return out


def full_corpus(args: argparse.Namespace, work: Path, models: dict[str, Path]) -> dict[str, Any]:
    """poemrag on the whole corpus; the seed and baseline stacks time-boxed on the same."""
    out: dict[str, Any] = {}
    data = work / "full-poemrag"
    ing = run_side("poemrag", "ingest", data=data, model=models["poemrag"], work=work,
                   tag="full-poemrag-ingest", extra=["--source", str(args.source)],
                   timeout=args.timeout_full)
    p = strip(ing) | {"wall_min": ing["wall_s"] / 60, "ingest_peak_rss_mb": ing["peak_rss_mb"]}
    say(f"full corpus poemrag ingest: {ing['wall_s'] / 60:.1f} min, "
        f"{ing.get('ingest_per_s', 0):.1f}/s {ing.get('error') or ''}")
    if not ing.get("error"):
        q = run_side("poemrag", "query", data=data, model=models["poemrag"], work=work,
                     tag="full-poemrag-query", extra=["--queries", str(args.queries)],
                     timeout=args.timeout)
        p |= {k: q.get(k) for k in ("query_p50_ms", "query_p95_ms", "embed_p50_ms",
                                     "search_p50_ms", "batch_qps", "vectorized_qps",
                                     "query_p50_ms_one_per_poem")}
        p["query_peak_rss_mb"] = q["peak_rss_mb"]
        p["query_peak_anon_mb"] = q["peak_anon_mb"]
        p["query_error"] = q.get("error")
        say(f"full corpus poemrag query: p50 {q.get('query_p50_ms', 0):.2f} ms "
            f"{q.get('error') or ''}")
    shutil.rmtree(data, ignore_errors=True)
    out["poemrag"] = p
    boxes = {"seed": args.seed_full_timeout, "baseline": args.baseline_full_timeout}
    if not any(box > 0 for box in boxes.values()):
        return out
    couplets = work / "couplets-full.jsonl"
    total = write_couplets(args.source, None, couplets)
    for side in OTHERS:
        if boxes[side] > 0:
            out[side] = time_boxed_full(args, work, side, models[side], couplets, total,
                                        boxes[side])
            say(f"full corpus {side}: {out[side].get('outcome')}")
    return out


def time_boxed_full(args: argparse.Namespace, work: Path, side: str, model: Path,
                    couplets: Path, total: int, box: float) -> dict[str, Any]:
    """A LangChain stack's whole-corpus ingest, killed after ``box`` seconds (then how far
    it got and the time all would take at that rate), queried if it finished."""
    data = work / f"full-{side}"
    b = run_side(side, "ingest", data=data, model=model, work=work, tag=f"full-{side}-ingest",
                 extra=["--couplets", str(couplets)], timeout=box)
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
        rec["outcome"] = (f"time-boxed at {box / 60:.0f} min: killed after {done:,} of "
                          f"{total:,} couplets ({rate:.1f}/s, RSS {prog.get('rss_mb', 0):,.0f} "
                          f"MiB){eta}. qdrant-client local mode also warns above 20,000 points.")
    elif b.get("error"):
        rec["outcome"] = f"failed: {b['error']}"
    else:
        q = run_side(side, "query", data=data, model=model, work=work, tag=f"full-{side}-query",
                     extra=["--queries", str(args.queries)], timeout=args.timeout)
        rec |= {k: q.get(k) for k in ("query_p50_ms", "query_p95_ms", "open_s")}
        rec["query_peak_rss_mb"] = q["peak_rss_mb"]
        rec["query_peak_anon_mb"] = q["peak_anon_mb"]
        failed = f"; queries failed: {q['error']}" if q.get("error") else ""
        rec["outcome"] = "completed" + failed
    shutil.rmtree(data, ignore_errors=True)
    return rec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"N = {QUICK['n']:,}, {QUICK['queries']} queries, no full corpus")
    parser.add_argument("--n", type=int, help=f"couplets per A/B ingest (quick {QUICK['n']:,}; "
                                              f"full {FULL['n']:,})")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the three sides")
    parser.add_argument("--queries", type=int,
                        help=f"chat queries (quick {QUICK['queries']}; full {FULL['queries']})")
    parser.add_argument("--model", type=Path, default=PACKAGED_MODEL_DIR, help="poemrag ONNX model")
    parser.add_argument("--baseline-model", type=Path,
                        help="sentence-transformers form of the same weights (default: the "
                             "ONNX model unpacked, cached under --cache)")
    parser.add_argument("--seed-model", type=Path,
                        help="sentence-transformers model for the seed side (default: the "
                             "reference architecture with random weights, cached under --cache)")
    parser.add_argument("--seed-arch", choices=sorted(SEED_ARCHS), default="reference",
                        help="architecture of the built seed (tiny: for tests of the harness)")
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="where the built seed and unpacked baseline are kept")
    parser.add_argument("--source", type=Path, help="corpus tarball (default: the pinned one)")
    parser.add_argument("--no-full-corpus", action="store_true", help="skip the full-corpus run")
    parser.add_argument("--baseline-full-timeout", type=float, default=300,
                        help="time box for the baseline's full-corpus attempt, s (0 = skip)")
    parser.add_argument("--seed-full-timeout", type=float, default=300,
                        help="time box for the seed's full-corpus attempt, s (0 = skip)")
    parser.add_argument("--timeout", type=float, default=7200,
                        help="per worker process, s (the seed's 20,000-couplet ingest takes "
                             "about 40 min on 2 cores)")
    parser.add_argument("--timeout-full", type=float, default=5400,
                        help="poemrag full-corpus ingest, s (the default model's took 39 min "
                             "on 2 cores)")
    parser.add_argument("--profile", action="store_true",
                        help="also write pyinstrument reports of poemrag's ingest and queries")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser


def side_models(args: argparse.Namespace, couplets: Path) -> dict[str, Path]:
    """The model each side loads: the seed and the same-weights baseline built (or reused)."""
    from bench.queries import chat_queries

    baseline = args.baseline_model or same_weights_model(args.model, args.cache)
    seed = args.seed_model or seed_model(
        couplet_texts(couplets) + chat_queries(args.queries), SEED_ARCHS[args.seed_arch],
        args.cache)
    for side, path in (("baseline", baseline), ("seed", seed)):
        if not (Path(path) / "modules.json").is_file():
            raise ModelError(f"no sentence-transformers model (modules.json) in {path} "
                             f"for the {side} side")
    return {"poemrag": args.model, "seed": Path(seed), "baseline": Path(baseline)}


def stacks(args: argparse.Namespace) -> dict[str, str]:
    """What each side runs, the seed's model described as built (or given)."""
    if args.seed_model:
        model = f"the given model {args.seed_model}"
    else:
        a = SEED_ARCHS[args.seed_arch]
        model = (f"the {a.name} architecture (BERT: {a.layers} layers, hidden {a.hidden}, "
                 f"{a.heads} heads, FFN {a.ffn}, vocab {a.vocab:,}, mean pooling, Dense "
                 f"{a.hidden}->{a.dim}) with random weights and a character-level BERT "
                 "tokenizer: speed only")
    return STACKS | {"seed": STACKS["seed"].format(model=model)}


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_absolute() and path.is_relative_to(ROOT)
               else path)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()  # total_s counts everything below: corpus, models, runs
    mode = "quick" if args.quick else "full"
    preset = QUICK if args.quick else FULL
    args.n = args.n or preset["n"]
    args.queries = args.queries or preset["queries"]
    if args.rounds < 1 or args.n < 1 or args.queries < 1:
        parser.error("--rounds, --n and --queries must be at least 1")
    if not (args.model / "model.onnx").is_file():
        parser.error(f"no model.onnx in {args.model}: export the packaged model first")
    try:
        args.source = args.source or default_source()
    except PoemragError as exc:
        parser.error(f"no corpus: {exc}")

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="poemrag-bench-"))
    load_before = os.getloadavg()
    busy_before = other_heavy_processes()
    try:
        couplets = work / "couplets.jsonl"
        n = write_couplets(args.source, args.n, couplets)
        try:
            models = side_models(args, couplets)
        except (PoemragError, OSError) as exc:
            parser.error(str(exc))
        except ImportError as exc:
            parser.error(f"{exc}: the seed and baseline sides need the bench extra "
                         '(pip install -e ".[bench]")')
        setup_s = time.perf_counter() - started
        say(f"models ready after {setup_s:.0f} s; {args.rounds} rounds of "
            f"{' / '.join(SIDES)} at N = {n:,}, {args.queries} queries")
        runs: list[dict[str, Any]] = []
        for r in range(args.rounds):
            data = {side: work / f"r{r}-{side}" for side in SIDES}
            for side in SIDES:
                extra = ["--n", str(args.n)] + (
                    ["--source", str(args.source)] if side == "poemrag" else
                    ["--couplets", str(couplets)])
                prof = args.out / f"profile-{mode}-ingest.txt" if (
                    args.profile and side == "poemrag" and r == 0) else None
                runs.append(run_side(side, "ingest", data=data[side], model=models[side],
                                     work=work, tag=f"r{r}-{side}-ingest", extra=extra,
                                     timeout=args.timeout, profile=prof))
                say(f"round {r + 1}/{args.rounds} {side} ingest: "
                    f"{runs[-1].get('ingest_per_s', 0):.1f}/s {runs[-1].get('error') or ''}"
                    f"({time.perf_counter() - started:.0f} s so far)")
            for side in SIDES:
                prof = args.out / f"profile-{mode}-query.txt" if (
                    args.profile and side == "poemrag" and r == 0) else None
                runs.append(run_side(side, "query", data=data[side], model=models[side],
                                     work=work, tag=f"r{r}-{side}-query",
                                     extra=["--queries", str(args.queries)],
                                     timeout=args.timeout, profile=prof))
                say(f"round {r + 1}/{args.rounds} {side} query: "
                    f"p50 {runs[-1].get('query_p50_ms', 0):.2f} ms "
                    f"{runs[-1].get('error') or ''}({time.perf_counter() - started:.0f} s so far)")
            for path in data.values():
                shutil.rmtree(path, ignore_errors=True)
        shown_args = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--quick"]
        result: dict[str, Any] = {
            "mode": mode,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python -m bench" + (" --quick" if args.quick else "")
                       + "".join(f" {a}" for a in shown_args),
            "n": n,
            "queries": args.queries,
            "k": 10,
            "rounds": args.rounds,
            "models": {side: shown(path) for side, path in models.items()},
            "stacks": stacks(args),
            "setup_s": round(setup_s, 1),
        }
        result |= summarise(runs)
        result["machine"] = machine_info(load_before, busy_before)
        result["runs"] = [strip(r) for r in runs]
        if not args.quick and not args.no_full_corpus:
            result["targets"] = targets(result)
            save(result, args.out, mode)  # the A/B part survives if the full-corpus part dies
            result["full_corpus"] = full_corpus(args, work, models)
        result["targets"] = targets(result)
        result["machine"] = machine_info(load_before, busy_before)
        result["total_s"] = round(time.perf_counter() - started, 1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"work directory kept: {work}")
    save(result, args.out, mode)
    print_last_line(result)
    return 0


def save(result: dict[str, Any], out: Path, mode: str,
         render: Callable[[dict[str, Any]], str] | None = None) -> None:
    """``out/{mode}.json`` (every field) and ``out/{mode}.md`` (``render``, default the A/B
    report)."""
    (out / f"{mode}.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out / f"{mode}.md").write_text((render or markdown)(result), encoding="utf-8")


def print_last_line(result: dict[str, Any]) -> None:
    """The result as the one JSON object a benchmark prints last (floats to 3 decimals)."""
    print(json.dumps(result, ensure_ascii=False,
                     default=lambda o: round(o, 3) if isinstance(o, float) else str(o)))


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
