"""One side of the benchmark (poemrag, or a LangChain stack), one task, in its own process.

    python -m bench.sides {poemrag,seed,baseline} {ingest,query} --data DIR --model PATH --out JSON ...

The parent (:mod:`bench.harness`) starts one process per side and task so that peak RSS is
per side; it reads the JSON written to ``--out``. A ``--progress`` file is rewritten after every
write batch so that a time-boxed run that is killed still says how far it got.

* **poemrag**: :func:`poemrag.corpus.load_corpus` + :func:`poemrag.ingest.ingest` (fastembed
  ONNX encoder, Qdrant Edge store), then :class:`poemrag.retriever.PoemRetriever`.
* **baseline** and **seed**: what a LangChain user assembles today: ``langchain_huggingface``'s
  ``HuggingFaceEmbeddings`` (sentence-transformers on torch) + ``langchain_qdrant``'s
  ``QdrantVectorStore`` over ``QdrantClient(path=...)`` (qdrant-client local mode). The two
  differ only in the model they load (:mod:`bench.models`): the baseline poemrag's own weights
  unpacked (with their ``query: `` / ``passage: `` prompts), the seed the reference card's
  architecture with random weights (no prompts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

K = 10
COLLECTION = "tang_poems"
WARMUP_QUERIES = 5
BASELINE_CHUNK = 1024
"""Texts per ``add_texts`` call (it still embeds and upserts in batches of 64)."""


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Progress:
    """Rewrites a small JSON file with the work done so far (survives a SIGKILL)."""

    def __init__(self, path: Path | None, total: int) -> None:
        self.path = path
        self.total = total
        self.started = time.perf_counter()

    def update(self, done: int, phase: str) -> None:
        if self.path is None:
            return
        record = {
            "done": done,
            "total": self.total,
            "phase": phase,
            "seconds": round(time.perf_counter() - self.started, 2),
            "rss_mb": round(rss_mb(), 1),
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(self.path)


@contextlib.contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    """Run the block under pyinstrument and write its text report to ``path`` (if given)."""
    if path is None:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        path.write_text(profiler.output_text(unicode=True, color=False, show_all=False))


# -- poemrag ----------------------------------------------------------------------------------


class _TimedEmbeddings:
    """Wraps PoemEmbeddings for :func:`poemrag.ingest.ingest`, timing ``encode_documents``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.dimension = inner.dimension
        self.model = inner.model
        self.fingerprint = inner.fingerprint

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.inner.encode_documents(texts)
        finally:
            self.seconds += time.perf_counter() - t0


class _TimedStore:
    """Wraps a PoemStore, timing writes and the final index build, reporting progress."""

    def __init__(self, inner: Any, progress: Progress) -> None:
        self.inner = inner
        self.progress = progress
        self.upsert_s = 0.0
        self.finish_s = 0.0
        self.written = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert(self, ids, vectors, payloads) -> None:
        t0 = time.perf_counter()
        self.inner.upsert(ids, vectors, payloads)
        self.upsert_s += time.perf_counter() - t0
        self.written += len(ids)
        self.progress.update(self.written, "upsert")

    def finish(self) -> None:
        self.progress.update(self.written, "index")
        t0 = time.perf_counter()
        self.inner.finish()
        self.finish_s = time.perf_counter() - t0


def poemrag_ingest(args: argparse.Namespace) -> dict[str, Any]:
    from poemrag.corpus import load_corpus
    from poemrag.edge_store import EdgeStore
    from poemrag.embeddings import PoemEmbeddings
    from poemrag.ingest import ingest
    from poemrag.settings import Settings

    settings = Settings()
    t0 = time.perf_counter()
    corpus = load_corpus(args.source, limit=args.n, cache_dir=settings.corpus_dir)
    t1 = time.perf_counter()
    embeddings = PoemEmbeddings(model=args.model, batch_size=settings.batch_size)
    t2 = time.perf_counter()
    progress = Progress(args.progress, len(corpus))
    timed_emb = _TimedEmbeddings(embeddings)
    store = _TimedStore(EdgeStore(args.data / COLLECTION), progress)
    try:
        with profiled(args.profile):
            t3 = time.perf_counter()
            summary = ingest(
                corpus, timed_emb, store,  # type: ignore[arg-type]
                write_batch=settings.upsert_batch_size, progress=False,
            )
            t4 = time.perf_counter()
        points = store.count()
    finally:
        store.close()
    return {
        "couplets": len(corpus),
        "points": points,
        "embedded": summary.embedded,
        "corpus_s": t1 - t0,
        "model_load_s": t2 - t1,
        "ingest_s": t4 - t3,
        "embed_s": timed_emb.seconds,
        "upsert_s": store.upsert_s,
        "index_s": store.finish_s,
        "ingest_per_s": len(corpus) / (t4 - t3),
        "batch_size": settings.batch_size,
        "upsert_batch_size": settings.upsert_batch_size,
    }


def poemrag_query(args: argparse.Namespace, queries: list[str]) -> dict[str, Any]:
    from poemrag.edge_store import EdgeStore
    from poemrag.embeddings import PoemEmbeddings
    from poemrag.retriever import PoemRetriever

    t0 = time.perf_counter()
    embeddings = PoemEmbeddings(model=args.model)
    t1 = time.perf_counter()
    store = EdgeStore(args.data / COLLECTION)
    points = store.count()  # loads the shard
    t2 = time.perf_counter()
    retriever = PoemRetriever(embeddings=embeddings, store=store, k=K, one_per_poem=False)
    try:
        result = run_queries(
            queries,
            invoke=retriever.invoke,
            embed=lambda q: embeddings.encode_queries([q])[0],
            search=lambda v: store.search(v, K),
            embed_many=embeddings.encode_queries,
            batch=retriever.batch,
            profile=args.profile,
        )
        # The default configuration (one couplet per poem) costs a few more hits per query.
        per_poem = PoemRetriever(embeddings=embeddings, store=store, k=K)
        lat = []
        for q in queries:
            s = time.perf_counter()
            per_poem.invoke(q)
            lat.append((time.perf_counter() - s) * 1000)
        result["query_p50_ms_one_per_poem"] = percentile(lat, 50)
    finally:
        store.close()
    return result | {"points": points, "model_load_s": t1 - t0, "open_s": t2 - t1}


# -- baseline ---------------------------------------------------------------------------------


def model_prompts(model: str) -> dict[str, str]:
    """The prompts a sentence-transformers directory defines (empty ones left out)."""
    path = Path(model) / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    prompts = json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    return {name: text for name, text in prompts.items() if text}


def baseline_embeddings(model: str) -> Any:
    """``HuggingFaceEmbeddings`` as the model's card asks: its own prompts when it has them
    (poemrag's ``query: `` / ``passage: ``), normalized vectors, batches of 64."""
    from langchain_huggingface import HuggingFaceEmbeddings

    prompts = model_prompts(model)
    doc = {"prompt_name": "document"} if "document" in prompts else {}
    query = {"prompt_name": "query"} if "query" in prompts else {}
    return HuggingFaceEmbeddings(
        model_name=model,
        model_kwargs={"device": "cpu"},
        encode_kwargs={**doc, "normalize_embeddings": True, "batch_size": 64},
        query_encode_kwargs={**query, "normalize_embeddings": True},
    )


def read_couplets(path: Path, n: int | None) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if n is not None and len(rows) >= n:
                break
            rows.append(json.loads(line))
    return rows


def baseline_ingest(args: argparse.Namespace) -> dict[str, Any]:
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient, models

    t0 = time.perf_counter()
    rows = read_couplets(args.couplets, args.n)
    t1 = time.perf_counter()
    embeddings = baseline_embeddings(args.model)
    dim = len(embeddings.embed_query("维度"))
    t2 = time.perf_counter()
    progress = Progress(args.progress, len(rows))
    client = QdrantClient(path=str(args.data))
    embed_s = 0.0
    original = embeddings.embed_documents

    def timed_embed(texts: list[str]) -> list[list[float]]:
        nonlocal embed_s
        s = time.perf_counter()
        try:
            return original(texts)
        finally:
            embed_s += time.perf_counter() - s

    object.__setattr__(embeddings, "embed_documents", timed_embed)
    try:
        with profiled(args.profile):
            t3 = time.perf_counter()
            client.create_collection(
                COLLECTION,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            )
            store = QdrantVectorStore(client, COLLECTION, embedding=embeddings)
            done = 0
            for start in range(0, len(rows), BASELINE_CHUNK):
                chunk = rows[start : start + BASELINE_CHUNK]
                store.add_texts(
                    [r["text"] for r in chunk],
                    metadatas=[r["metadata"] for r in chunk],
                    ids=[r["id"] for r in chunk],
                    batch_size=64,
                )
                done += len(chunk)
                progress.update(done, "add_texts")
            t4 = time.perf_counter()
        points = client.count(COLLECTION).count
    finally:
        client.close()
    return {
        "couplets": len(rows),
        "points": points,
        "corpus_s": t1 - t0,
        "model_load_s": t2 - t1,
        "ingest_s": t4 - t3,
        "embed_s": embed_s,
        "upsert_s": (t4 - t3) - embed_s,
        "index_s": 0.0,
        "ingest_per_s": len(rows) / (t4 - t3),
    }


def baseline_query(args: argparse.Namespace, queries: list[str]) -> dict[str, Any]:
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    t0 = time.perf_counter()
    embeddings = baseline_embeddings(args.model)
    t1 = time.perf_counter()
    client = QdrantClient(path=str(args.data))  # local mode loads every point into memory
    points = client.count(COLLECTION).count
    store = QdrantVectorStore(client, COLLECTION, embedding=embeddings)
    t2 = time.perf_counter()
    retriever = store.as_retriever(search_kwargs={"k": K})
    try:
        result = run_queries(
            queries,
            invoke=retriever.invoke,
            embed=embeddings.embed_query,
            search=lambda v: store.similarity_search_by_vector(v, k=K),
            # HuggingFaceEmbeddings.embed_query, batched (the same call embed_query makes).
            embed_many=lambda qs: embeddings._embed(qs, embeddings.query_encode_kwargs),
            batch=retriever.batch,
            profile=args.profile,
        )
    finally:
        client.close()
    return result | {"points": points, "model_load_s": t1 - t0, "open_s": t2 - t1}


# -- shared query workload --------------------------------------------------------------------


def _doc_id(doc: Any) -> int:
    meta = doc.metadata
    value = meta.get("id", meta.get("_id", doc.id))
    return int(value)


def run_queries(
    queries: list[str], *, invoke, embed, search, embed_many, batch, profile: Path | None
) -> dict[str, Any]:
    """Single end-to-end queries (latency), their embed/search split, and batch throughput."""
    for q in queries[:WARMUP_QUERIES]:
        invoke(q)
    latencies: list[float] = []
    ids: list[list[int]] = []
    with profiled(profile):
        for q in queries:
            t0 = time.perf_counter()
            docs = invoke(q)
            latencies.append((time.perf_counter() - t0) * 1000)
            ids.append([_doc_id(d) for d in docs])
    embed_ms, search_ms = [], []
    for q in queries:
        t0 = time.perf_counter()
        vector = embed(q)
        t1 = time.perf_counter()
        search(vector)
        embed_ms.append((t1 - t0) * 1000)
        search_ms.append((time.perf_counter() - t1) * 1000)
    t0 = time.perf_counter()
    batch(queries)  # LangChain's Runnable.batch: invoke() on a thread pool
    batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    vectors = embed_many(queries)  # one batched embedding call, then one search per vector
    for v in vectors:
        search(v)
    vectorized_s = time.perf_counter() - t0
    return {
        "queries": len(queries),
        "k": K,
        "query_p50_ms": percentile(latencies, 50),
        "query_p95_ms": percentile(latencies, 95),
        "query_mean_ms": statistics.fmean(latencies),
        "embed_p50_ms": percentile(embed_ms, 50),
        "search_p50_ms": percentile(search_ms, 50),
        "batch_qps": len(queries) / batch_s,
        "vectorized_qps": len(queries) / vectorized_s,
        "result_ids": ids,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sides", description=__doc__)
    parser.add_argument("side", choices=["poemrag", "seed", "baseline"])
    parser.add_argument("task", choices=["ingest", "query"])
    parser.add_argument("--data", type=Path, required=True, help="this side's store directory")
    parser.add_argument("--model", required=True,
                        help="ONNX dir (poemrag) or sentence-transformers dir (seed, baseline)")
    parser.add_argument("--out", type=Path, required=True, help="write the result JSON here")
    parser.add_argument("--n", type=int, help="couplets to ingest (default: all)")
    parser.add_argument("--source", type=Path, help="corpus tarball or directory (poemrag)")
    parser.add_argument("--couplets", type=Path, help="couplets JSONL (seed, baseline)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--progress", type=Path, help="rewrite progress JSON here")
    parser.add_argument("--profile", type=Path, help="write a pyinstrument report here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # local mode warns above 20k points; recorded by the parent

    started = time.perf_counter()
    if args.task == "ingest":
        result = poemrag_ingest(args) if args.side == "poemrag" else baseline_ingest(args)
    else:
        from bench.queries import chat_queries

        queries = chat_queries(args.queries)
        runner = poemrag_query if args.side == "poemrag" else baseline_query
        result = runner(args, queries)
    result |= {
        "side": args.side,
        "task": args.task,
        "seconds": time.perf_counter() - started,
        "peak_rss_mb_self": peak_rss_mb(),
    }
    args.out.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
