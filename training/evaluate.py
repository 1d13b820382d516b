"""Evaluate an encoder exactly as poemrag serves it.

    python -m training.evaluate MODEL_DIR [--json OUT]

Reports CCPM valid 4-way accuracy, Recall@1 / Recall@10 / MRR of the held-out chat dev pairs
against a pool of corpus couplets (the dev targets plus a seeded random sample of the rest),
and document encoding throughput. A directory with ``model.onnx`` is run on the ONNX backend,
anything else on the torch (sentence-transformers) backend.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poemrag.chinese import HAN_RE
from poemrag.errors import PoemragError
from training.ccpm import CcpmRow, ccpm_accuracy
from training.data import (
    DEFAULT_DATA_GLOB,
    Triplet,
    char_postings,
    data_files,
    data_group,
    is_shortcut_free,
    load_ccpm_split,
    read_triplet_files,
    resolve_ccpm_dir,
    split_dev,
)

BATCH_SIZE = 64

Encode = Callable[[list[str]], np.ndarray]


@dataclass
class Report:
    """Evaluation results; ``None`` where a part was skipped (no CCPM, no dev pairs)."""

    model: str
    backend: str
    ccpm_accuracy: float | None
    ccpm_rows: int
    recall_at_1: float | None
    recall_at_10: float | None
    mrr: float | None
    dev_pairs: int
    pool_size: int
    couplets_per_s: float | None
    subsets: dict[str, dict[str, float]] = field(default_factory=dict)
    """Recall@1/@10, MRR and row count per dev subset (see :func:`dev_subsets`)."""
    hybrid: dict[str, dict[str, float]] = field(default_factory=dict)
    """Dense + ``weight`` x character BM25 (see :func:`char_bm25`): metrics of every dev row
    and of the shortcut-free ones, per weight."""


@dataclass
class Encoders:
    """Query and document encoders (prompts applied), returning one row per text."""

    queries: Encode
    documents: Encode
    backend: str


def open_encoders(model: str) -> Encoders:
    """Load ``model`` through :class:`poemrag.embeddings.PoemEmbeddings`, as served."""
    from poemrag.embeddings import PoemEmbeddings
    from poemrag.encoders import detect_backend

    backend = detect_backend(model)
    emb = PoemEmbeddings(model=model, backend=backend, batch_size=BATCH_SIZE)
    return Encoders(emb.encode_queries, emb.encode_documents, backend)


def build_pool(targets: Iterable[str], corpus_texts: Sequence[str], size: int, seed: int) -> list[str]:
    """Unique targets first, then a seeded random sample of other corpus couplets up to ``size``."""
    pool = list(dict.fromkeys(targets))
    chosen = set(pool)
    rest = [t for t in dict.fromkeys(corpus_texts) if t not in chosen]
    pool += random.Random(seed).sample(rest, min(max(size - len(pool), 0), len(rest)))
    return pool


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def target_ranks(queries: np.ndarray, pool: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """0-based rank of each query's target in ``pool`` by cosine (ties count in its favour)."""
    scores = _unit(queries) @ _unit(pool).T
    own = scores[np.arange(len(targets)), list(targets)]
    return (scores > own[:, None]).sum(axis=1)


def char_bm25(queries: Sequence[str], docs: Sequence[str], k1: float = 1.2,
              b: float = 0.75) -> np.ndarray:
    """BM25 over Chinese characters, ``[queries, docs]``, each row divided by its maximum: a
    stand-in for a store's full-text index scored beside the dense one."""
    lengths = np.array([len(HAN_RE.findall(d)) for d in docs], dtype=np.float32)
    norm = k1 * (1 - b + b * lengths / max(float(lengths.mean()), 1e-9))
    n = len(docs)
    weights = {}
    for ch, (rows, tf) in char_postings(docs).items():
        idf = np.log(1 + (n - len(rows) + 0.5) / (len(rows) + 0.5))
        weights[ch] = (rows, idf * tf * (k1 + 1) / (tf + norm[rows]))
    out = np.zeros((len(queries), n), dtype=np.float32)
    for q, text in enumerate(queries):
        for ch in set(HAN_RE.findall(text)) & weights.keys():
            rows, w = weights[ch]
            out[q, rows] += w
    return out / np.maximum(out.max(axis=1, keepdims=True), 1e-9)


def fused_ranks(dense: np.ndarray, lexical: np.ndarray, targets: Sequence[int],
                weight: float) -> np.ndarray:
    """0-based ranks of the targets under ``dense + weight * lexical`` scores."""
    scores = dense + weight * lexical
    own = scores[np.arange(len(targets)), list(targets)]
    return (scores > own[:, None]).sum(axis=1)


def retrieval_metrics(ranks: np.ndarray) -> dict[str, float]:
    """Recall@1, Recall@10 and MRR from 0-based target ranks."""
    return {
        "recall_at_1": float(np.mean(ranks < 1)),
        "recall_at_10": float(np.mean(ranks < 10)),
        "mrr": float(np.mean(1.0 / (ranks + 1))),
    }


def dev_subsets(dev: Sequence[Triplet]) -> dict[str, list[int]]:
    """Row indices of the reported dev subsets: the v1 and v2 files, and the shortcut-free rows
    (the message shares at most one character with its couplet) overall and of v2."""
    subsets: dict[str, list[int]] = {}
    for i, t in enumerate(dev):
        group = data_group(t)
        names = [group] + (["shortcut-free", f"{group} shortcut-free"] if is_shortcut_free(t) else [])
        for name in names:
            subsets.setdefault(name, []).append(i)
    return dict(sorted(subsets.items()))


def evaluate(
    enc: Encoders,
    model: str,
    ccpm_rows: Sequence[CcpmRow],
    dev: Sequence[Triplet],
    corpus_texts: Sequence[str],
    pool_size: int = 20_000,
    seed: int = 0,
    hybrid_weights: Sequence[float] = (),
) -> Report:
    """Run all measurements with ``enc``; the pool encoding also gives the throughput."""
    report = Report(model, enc.backend, None, len(ccpm_rows), None, None, None, len(dev), 0, None)
    if ccpm_rows:
        _say(f"CCPM: {len(ccpm_rows)} rows")
        report.ccpm_accuracy = ccpm_accuracy(enc.queries, enc.documents, ccpm_rows)
    pool = build_pool((t.positive for t in dev), corpus_texts, pool_size, seed)
    report.pool_size = len(pool)
    if pool:
        _say(f"encoding a pool of {len(pool)} couplets ({len(dev)} dev targets)")
        start = time.perf_counter()
        pool_vecs = enc.documents(pool)
        report.couplets_per_s = len(pool) / max(time.perf_counter() - start, 1e-9)
    if dev:
        index = {text: i for i, text in enumerate(pool)}
        query_vecs = enc.queries([t.anchor for t in dev])
        ranks = target_ranks(query_vecs, pool_vecs, [index[t.positive] for t in dev])
        metrics = retrieval_metrics(ranks)
        report.recall_at_1, report.recall_at_10 = metrics["recall_at_1"], metrics["recall_at_10"]
        report.mrr = metrics["mrr"]
        subsets = dev_subsets(dev)
        for name, rows in subsets.items():
            report.subsets[name] = {**retrieval_metrics(ranks[rows]), "rows": len(rows)}
        if hybrid_weights:
            targets = [index[t.positive] for t in dev]
            dense = _unit(query_vecs) @ _unit(pool_vecs).T
            lexical = char_bm25([t.anchor for t in dev], pool)
            free = subsets.get("shortcut-free", [])
            for w in (0.0, *hybrid_weights):
                fused = fused_ranks(dense, lexical, targets, w)
                report.hybrid[f"{w:g}"] = {
                    **retrieval_metrics(fused),
                    **{f"free_{k}": v for k, v in retrieval_metrics(fused[free]).items()},
                }
    return report


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def aligned(rows: Sequence[tuple[str, str]]) -> str:
    """``rows`` as a two-column table, the labels padded to one width."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def format_report(r: Report) -> str:
    """A small aligned table."""
    rows = [
        ("model", f"{r.model} ({r.backend})"),
        (f"CCPM valid accuracy ({r.ccpm_rows} rows)", pct(r.ccpm_accuracy)),
        (f"chat dev Recall@1 ({r.dev_pairs} pairs, pool {r.pool_size})", pct(r.recall_at_1)),
        ("chat dev Recall@10", pct(r.recall_at_10)),
        ("chat dev MRR", "-" if r.mrr is None else f"{r.mrr:.3f}"),
        (f"throughput (couplets/s, batch {BATCH_SIZE})",
         "-" if r.couplets_per_s is None else f"{r.couplets_per_s:.0f}"),
    ]
    for name, m in r.subsets.items():
        rows.append((f"  {name} ({int(m['rows'])}): R@1 / R@10 / MRR",
                     f"{pct(m['recall_at_1'])} / {pct(m['recall_at_10'])} / {m['mrr']:.3f}"))
    for w, m in r.hybrid.items():
        rows.append((f"  dense + {w} x char BM25: R@1 / R@10 / MRR (shortcut-free)",
                     (f"{pct(m['recall_at_1'])} / {pct(m['recall_at_10'])} / {m['mrr']:.3f} "
                     f"({pct(m['free_recall_at_1'])} / {pct(m['free_recall_at_10'])} / "
                     f"{m['free_mrr']:.3f})")))
    return aligned(rows)


def corpus_couplet_texts(source: Path | None) -> list[str]:
    """Simplified texts of all corpus couplets, in corpus order."""
    from poemrag.corpus import load_corpus

    return [c.text for c in load_corpus(source).couplets()]


def add_common_args(p: argparse.ArgumentParser) -> None:
    """The options every evaluation command shares: output, data, CCPM, corpus, pool."""
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--data", type=Path, nargs="*", default=None,
                   help=f"chat triplet files; their dev split is used (default {DEFAULT_DATA_GLOB})")
    p.add_argument("--ccpm-dir", type=Path, default=None, help="CCPM folder (or POEMRAG_CCPM_DIR)")
    p.add_argument("--corpus", type=Path, default=None, help="corpus tarball/dir (default: pinned)")
    p.add_argument("--pool-size", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)


def load_dev_and_ccpm(args: argparse.Namespace) -> tuple[list[Triplet], list[CcpmRow]]:
    """The dev rows of ``args.data`` (default: every chat file) and CCPM valid, if there."""
    files = data_files(args.data)
    _, dev = split_dev(read_triplet_files(files))
    ccpm_dir = resolve_ccpm_dir(args.ccpm_dir)
    if ccpm_dir is None:
        print("note: no CCPM folder (--ccpm-dir or POEMRAG_CCPM_DIR); skipping CCPM",
              file=sys.stderr)
        return dev, []
    return dev, load_ccpm_split(ccpm_dir, "valid")


def write_json(path: Path | None, report: Any) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(report), ensure_ascii=False, indent=2) + "\n", "utf-8")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("model", help="model directory (ST or ONNX) or hub id")
    add_common_args(p)
    p.add_argument("--hybrid-weights", type=float, nargs="*", default=(),
                   help="also rank by dense + W x character BM25 for each W (0 = dense alone)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        dev, ccpm_rows = load_dev_and_ccpm(args)
        corpus = corpus_couplet_texts(args.corpus)
        report = evaluate(open_encoders(args.model), args.model, ccpm_rows, dev, corpus,
                          pool_size=args.pool_size, seed=args.seed,
                          hybrid_weights=args.hybrid_weights)
    except PoemragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
