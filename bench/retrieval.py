"""Query latency and HNSW recall on the ingested collection.

    python -m bench.retrieval [--queries 100] [--k 10] [--json OUT]
    POEMRAG_HNSW_EF=256 python -m bench.retrieval     # another speed/recall trade-off

For each chat-style query: end-to-end latency (embed + search, top-k) through the retriever's
store, and recall@k of the approximate (HNSW + int8) search against exact brute-force search
over the original vectors. Also reports the store's size on disk.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.queries import chat_queries
from poemrag.cli import run_cli
from poemrag.embeddings import PoemEmbeddings
from poemrag.settings import Settings
from poemrag.store import open_store


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval", description=__doc__)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)

    settings = Settings()
    embeddings = PoemEmbeddings.from_settings(settings)
    store = open_store(settings)
    queries = chat_queries(args.queries)
    embeddings.encode_queries(queries[:2])  # warm up the ONNX session
    store.search(embeddings.encode_queries(queries[:1])[0], args.k)

    latencies, embed_ms, results = [], [], []
    for query in queries:
        t0 = time.perf_counter()
        vector = embeddings.encode_queries([query])[0]
        t1 = time.perf_counter()
        approx = store.search(vector, args.k)
        t2 = time.perf_counter()
        latencies.append((t2 - t0) * 1000)
        embed_ms.append((t1 - t0) * 1000)
        results.append((vector, {h.id for h in approx}))
    # Exact searches scan every vector: run them after the timed loop, whose caches they
    # would otherwise flush between queries.
    recalls = []
    for vector, approx_ids in results:
        exact = {h.id for h in store.search(vector, args.k, exact=True)}
        recalls.append(len(exact & approx_ids) / max(1, len(exact)))

    result = {
        "points": store.count(),
        "queries": len(queries),
        "k": args.k,
        "latency_p50_ms": round(percentile(latencies, 50), 2),
        "latency_p95_ms": round(percentile(latencies, 95), 2),
        "embed_p50_ms": round(percentile(embed_ms, 50), 2),
        "search_p50_ms": round(percentile([a - b for a, b in zip(latencies, embed_ms)], 50), 2),
        "hnsw_ef": settings.hnsw_ef,
        "hnsw_recall_at_k": round(statistics.fmean(recalls), 4),
        "store_size_mb": round(dir_size_mb(settings.store_path), 1) if not settings.qdrant_url else None,
    }
    store.close()
    text = json.dumps(result, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
