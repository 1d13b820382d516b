"""Latency of retrieve + rerank on this machine: where the time goes for each rerank depth.

    python -m bench.rerank                          # the stand-in reranker, N = 5,000
    python -m bench.rerank --reranker DIR           # a trained reranker export

One process: ingest N couplets with poemrag into a temporary Edge store, then for every chat
message (``bench.queries``) run ``PoemRetriever.invoke`` without a reranker and with one at each
``--top-n``, the depths interleaved per message so drift hits them alike. Each depth also gets
the split: the query embedding, the vector search of ``top_n`` hits, and the cross-encoder over
those pairs. Without ``--reranker`` the cross-encoder is a stand-in of the intended shape (the
fast student's 4 layers with a random scoring head, :func:`bench.models.standin_reranker`):
its speed is a trained one's, its order means nothing, so only times are reported.
Results: ``--out``/rerank.{json,md}; the last line printed is the result as one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.harness import (
    default_source,
    fmt,
    machine_info,
    other_heavy_processes,
    print_last_line,
    save,
)
from bench.models import CACHE, standin_reranker
from bench.queries import chat_queries
from bench.sides import percentile

DEFAULT_TOP_N = (10, 30, 50)
K = 10
WARMUP = 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.rerank", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reranker", default=None,
                   help="reranker export or packaged name (default: the speed-only stand-in)")
    p.add_argument("--standin-from", default="poemrag-zh-1792-fast",
                   help="encoder whose layers make the stand-in (default: the fast student)")
    p.add_argument("--model", default="poemrag-zh-1792", help="encoder of the retriever")
    p.add_argument("--n", type=int, default=5000, help="couplets in the store")
    p.add_argument("--queries", type=int, default=60)
    p.add_argument("--top-n", type=int, nargs="+", default=list(DEFAULT_TOP_N))
    p.add_argument("--source", type=Path, default=None, help="corpus (default: pinned)")
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    return p


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and how long it took, in milliseconds."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, (time.perf_counter() - start) * 1000


def measure(retriever: Any, embeddings: Any, store: Any, reranker: Any, queries: Sequence[str],
            depths: Sequence[int]) -> dict[str, Any]:
    """Per depth (0 = no reranker): end-to-end ``invoke`` times and the embed/search/rerank split."""
    ms: dict[int, dict[str, list[float]]] = {
        d: {"total": [], "embed": [], "search": [], "rerank": []} for d in [0, *depths]}
    for i, q in enumerate([*queries[:WARMUP], *queries]):
        warm = i < WARMUP
        for d in [0, *depths]:
            opts = {"rerank": reranker, "rerank_top_n": d} if d else {"rerank": None}
            _, total = timed(retriever.invoke, q, **opts)
            vectors, embed = timed(embeddings.encode_queries, [q])
            hits, search = timed(store.search, vectors[0], max(d, K))
            _, rerank = timed(reranker.score, q, [h.text for h in hits]) if d else (0, 0.0)
            if not warm:
                for key, value in (("total", total), ("embed", embed), ("search", search),
                                   ("rerank", rerank)):
                    ms[d][key].append(value)
    out = {}
    for d, parts in ms.items():
        name = f"top{d}" if d else "no_rerank"
        out[name] = {"p50_ms": percentile(parts["total"], 50),
                     "p95_ms": percentile(parts["total"], 95),
                     **{f"{key}_p50_ms": percentile(parts[key], 50)
                        for key in ("embed", "search", "rerank")}}
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Retrieve + rerank latency ({result['date']})", "",
             (f"`{result['command']}` — {result['n']:,} couplets, {result['queries']} messages, "
              f"k = {K}, one couplet per poem; encoder `{result['model']}`, reranker "
              f"{result['reranker']}. Milliseconds, one message at a time."), "",
             "| rerank depth | p50 | p95 | · embed p50 | · search p50 | · rerank p50 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in result["latency"].items():
        label = "no reranker" if name == "no_rerank" else f"top {name[3:]}"
        lines.append(f"| {label} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | "
                     f"{fmt(r['embed_p50_ms'])} | {fmt(r['search_p50_ms'])} | "
                     f"{fmt(r['rerank_p50_ms'])} |")
    m = result["machine"]
    busy = m["other_busy_processes_before"] + m["other_busy_processes_after"]
    lines += ["", f"Machine: {m['cpus']} CPUs, 1-minute load average {m['loadavg_before'][0]} "
              f"before and {m['loadavg_after'][0]} after"
              + (f"; other processes using the CPU: {len(busy)}" if busy else ""), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from poemrag.corpus import load_corpus
    from poemrag.edge_store import EdgeStore
    from poemrag.embeddings import PoemEmbeddings
    from poemrag.ingest import ingest
    from poemrag.reranker import PoemReranker
    from poemrag.retriever import PoemRetriever
    from poemrag.settings import resolve_model

    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    load_before, busy_before = os.getloadavg(), other_heavy_processes()
    if args.reranker:
        reranker_path, kind = args.reranker, f"`{args.reranker}`"
    else:
        reranker_path = str(standin_reranker(Path(resolve_model(args.standin_from)), args.cache))
        kind = (f"stand-in ({args.standin_from}'s layers, random scoring head: speed only)")
    reranker = PoemReranker(model=reranker_path)
    embeddings = PoemEmbeddings(model=args.model)
    queries = chat_queries(args.queries)
    work = Path(tempfile.mkdtemp(prefix="poemrag-bench-rerank-"))
    try:
        corpus = load_corpus(args.source or default_source(), limit=args.n)
        store = EdgeStore(work / "store")
        ingest(corpus, embeddings, store, progress=False)
        try:
            retriever = PoemRetriever(embeddings=embeddings, store=store, k=K)
            latency = measure(retriever, embeddings, store, reranker, queries, args.top_n)
        finally:
            store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.rerank" + "".join(
            f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "n": len(corpus), "queries": len(queries), "model": args.model,
        "reranker": kind, "latency": latency,
        "machine": machine_info(load_before, busy_before),
        "total_s": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save(result, args.out, "rerank", render=markdown)
    print_last_line(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
