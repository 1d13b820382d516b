"""Evaluate a cross-encoder reranker: CCPM as a cross-encoder, and chat dev after reranking.

    python -m training.rerank_eval RERANKER [--encoder MODEL] [--top-n 10 30 50] [--json OUT]

``RERANKER`` is an exported directory (``model.onnx``: run by :class:`poemrag.reranker.
PoemReranker`, as served) or a ``CrossEncoder`` directory (run with sentence-transformers).
Reports

- CCPM valid 4-way accuracy: the choice the cross-encoder scores highest against the
  translation;
- chat dev Recall@1 / Recall@10 / MRR of the bi-encoder alone (``--encoder``, default the
  configured ``POEMRAG_MODEL``) against the pool of :func:`training.evaluate.build_pool` (dev
  targets plus a seeded sample of corpus couplets, 20,000 by default), and after reranking its
  top N for each ``--top-n`` (a target outside the top N keeps its bi-encoder rank);
- the same per dev subset (:func:`training.evaluate.dev_subsets`), and the pairs scored per
  second.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poemrag.errors import PoemragError
from training.ccpm import CcpmRow
from training.data import Triplet
from training.evaluate import (
    Encoders,
    add_common_args,
    aligned,
    build_pool,
    corpus_couplet_texts,
    dev_subsets,
    load_dev_and_ccpm,
    open_encoders,
    pct,
    retrieval_metrics,
    write_json,
)

PairScorer = Callable[[Sequence[tuple[str, str]]], np.ndarray]
"""(query, text) pairs -> one score per pair (higher fits better)."""
TOP_N = (10, 30, 50)


@dataclass(frozen=True)
class Choice:
    """One question: a query, its candidates and the index of the right one."""

    query: str
    candidates: tuple[str, ...]
    answer: int


def ccpm_choices(rows: Sequence[CcpmRow]) -> list[Choice]:
    return [Choice(r.translation, r.choices, r.answer) for r in rows]


def triplet_choices(rows: Sequence[Triplet]) -> list[Choice]:
    """The positive (index 0) among the row's own negatives."""
    return [Choice(t.anchor, (t.positive, *t.negatives), 0) for t in rows]


def choice_accuracy(score: PairScorer, choices: Sequence[Choice]) -> float:
    """Share of questions whose highest-scoring candidate is the answer (CCPM: 4-way)."""
    if not choices:
        return 0.0
    scores = score([(c.query, x) for c in choices for x in c.candidates])
    bounds = np.cumsum([0] + [len(c.candidates) for c in choices])
    return float(np.mean([int(np.argmax(scores[a:b])) == c.answer
                          for c, a, b in zip(choices, bounds[:-1], bounds[1:], strict=True)]))


def open_scorer(model: str, batch_size: int = 64) -> tuple[PairScorer, str]:
    """(pair scorer, backend): an ONNX export through PoemReranker, else a CrossEncoder."""
    from poemrag.encoders import ONNX_FILE
    from poemrag.reranker import PoemReranker, reranker_dir

    if (reranker_dir(model) / ONNX_FILE).is_file():
        return PoemReranker(model=model, batch_size=batch_size).score_pairs, "onnx"
    import torch

    from training.rerank_export import load_cross_encoder

    ce = load_cross_encoder(reranker_dir(model))
    return (lambda pairs: np.asarray(ce.predict(
        [list(p) for p in pairs], batch_size=batch_size, activation_fn=torch.nn.Identity(),
        convert_to_numpy=True), np.float32).reshape(-1)), "torch"


def dense_ranks(dense: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """0-based rank of each query's target under ``dense`` ``[queries, pool]`` scores (ties
    count in its favour, as in :func:`training.evaluate.target_ranks`)."""
    own = dense[np.arange(len(targets)), list(targets)]
    return (dense > own[:, None]).sum(axis=1)


def reranked_ranks(score: PairScorer, queries: Sequence[str], dense: np.ndarray,
                   pool: Sequence[str], targets: Sequence[int],
                   top_ns: Sequence[int]) -> dict[int, np.ndarray]:
    """0-based target ranks after reranking each query's top N by ``dense`` scores, for every
    N in ``top_ns``; one scoring pass over the largest N. A target outside the top N keeps
    its dense rank (at least N); ties among reranker scores count in the target's favour."""
    most = min(max(top_ns), dense.shape[1])
    top = np.argsort(-dense, axis=1, kind="stable")[:, :most]
    pair_scores = score([(q, pool[j]) for q, row in zip(queries, top, strict=True)
                         for j in row]).reshape(len(queries), most)
    before = dense_ranks(dense, targets)
    out: dict[int, np.ndarray] = {}
    for n in top_ns:
        n = min(n, most)
        ranks = np.maximum(before, n)
        for q, target in enumerate(targets):
            where = np.flatnonzero(top[q, :n] == target)
            if where.size:
                ranks[q] = int((pair_scores[q, :n] > pair_scores[q, where[0]]).sum())
        out[n] = ranks
    return out


@dataclass
class RerankReport:
    """Results; ``None`` where a part was skipped (no CCPM, no dev pairs)."""

    reranker: str
    backend: str
    encoder: str
    ccpm_accuracy: float | None
    ccpm_rows: int
    dev_pairs: int
    pool_size: int
    bi_encoder: dict[str, float] = field(default_factory=dict)
    reranked: dict[str, dict[str, float]] = field(default_factory=dict)
    """Recall@1/@10 and MRR after reranking the top N, keyed by N."""
    subsets: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Per dev subset: ``"dense"`` and each N -> metrics (and ``rows``)."""
    pairs_per_s: float | None = None


def evaluate_reranker(score: PairScorer, backend: str, reranker: str, enc: Encoders,
                      encoder: str, ccpm_rows: Sequence[CcpmRow], dev: Sequence[Triplet],
                      corpus_texts: Sequence[str], top_ns: Sequence[int] = TOP_N,
                      pool_size: int = 20_000, seed: int = 0) -> RerankReport:
    report = RerankReport(reranker, backend, encoder, None, len(ccpm_rows), len(dev), 0)
    if ccpm_rows:
        print(f"CCPM: {len(ccpm_rows)} rows", file=sys.stderr, flush=True)
        report.ccpm_accuracy = choice_accuracy(score, ccpm_choices(ccpm_rows))
    if not dev:
        return report
    pool = build_pool((t.positive for t in dev), corpus_texts, pool_size, seed)
    report.pool_size = len(pool)
    print(f"encoding a pool of {len(pool)} couplets ({len(dev)} dev targets)", file=sys.stderr,
          flush=True)
    index = {text: i for i, text in enumerate(pool)}
    targets = [index[t.positive] for t in dev]
    queries, pool_vecs = enc.queries([t.anchor for t in dev]), enc.documents(pool)
    dense = queries @ pool_vecs.T  # the encoders return unit vectors: cosine
    before = dense_ranks(dense, targets)
    report.bi_encoder = retrieval_metrics(before)
    print(f"reranking the top {max(top_ns)} of {len(dev)} messages", file=sys.stderr, flush=True)
    start = time.perf_counter()
    ranks = reranked_ranks(score, [t.anchor for t in dev], dense, pool, targets, top_ns)
    report.pairs_per_s = len(dev) * min(max(top_ns), len(pool)) / max(
        time.perf_counter() - start, 1e-9)
    report.reranked = {str(n): retrieval_metrics(r) for n, r in ranks.items()}
    for name, rows in dev_subsets(dev).items():
        report.subsets[name] = {"dense": {**retrieval_metrics(before[rows]),
                                          "rows": len(rows)}}
        for n, r in ranks.items():
            report.subsets[name][str(n)] = retrieval_metrics(r[rows])
    return report


def format_report(r: RerankReport) -> str:
    def row(m: dict[str, Any]) -> str:
        return f"{pct(m['recall_at_1'])} / {pct(m['recall_at_10'])} / {m['mrr']:.3f}"

    rows = [("reranker", f"{r.reranker} ({r.backend})"), ("bi-encoder", r.encoder),
            (f"CCPM valid accuracy as a cross-encoder ({r.ccpm_rows} rows)", pct(r.ccpm_accuracy))]
    if r.bi_encoder:
        alone = f"chat dev R@1 / R@10 / MRR, bi-encoder alone ({r.dev_pairs} pairs, pool {r.pool_size})"
        rows.append((alone, row(r.bi_encoder)))
        rows += [(f"  reranked top {n}", row(m)) for n, m in r.reranked.items()]
        for name, by in r.subsets.items():
            rows.append((f"  {name} ({int(by['dense']['rows'])}): dense", row(by["dense"])))
            rows += [(f"  {name}: reranked top {n}", row(m)) for n, m in by.items() if n != "dense"]
        rows.append(("pairs scored per second", f"{r.pairs_per_s:.0f}"))
    return aligned(rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.rerank_eval",
                                description=__doc__.split("\n")[0])
    p.add_argument("reranker", help="exported reranker directory (ONNX) or CrossEncoder directory")
    p.add_argument("--encoder", default=None,
                   help="bi-encoder whose top N is reranked (default: POEMRAG_MODEL)")
    p.add_argument("--top-n", type=int, nargs="+", default=list(TOP_N))
    add_common_args(p)
    p.add_argument("--batch-size", type=int, default=64)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.top_n) < 1:
        print("error: --top-n values must be >= 1", file=sys.stderr)
        return 2
    try:
        from poemrag.settings import Settings

        encoder = args.encoder or Settings().model
        dev, ccpm_rows = load_dev_and_ccpm(args)
        score, backend = open_scorer(args.reranker, args.batch_size)
        corpus = corpus_couplet_texts(args.corpus) if dev else []
        report = evaluate_reranker(score, backend, args.reranker,
                                   open_encoders(encoder) if dev else None, encoder, ccpm_rows,
                                   dev, corpus, args.top_n, args.pool_size, args.seed)
    except PoemragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
