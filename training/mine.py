"""Mine extra hard negatives for the chat triplets with the current model.

    python -m training.mine --model artifacts/trained/run1 --output artifacts/mined/chat_hn.jsonl

For each training-split anchor (dev anchors stay untouched), the corpus couplets that the
model ranks highest become negatives, except: the positive itself and any couplet of the
positive's own poem, couplets sharing a 4-character run with the positive or too close to it
(document cosine >= ``--max-similarity``), and, with ``--relative-margin``, candidates
scoring within that margin of the positive (likely false negatives). Rows are written as
``anchor, positive, negative_1 (the authored negative), negative_2..`` for ``--data``; or,
with ``--write-back``, into the data files themselves: each training row keeps its own
``negative`` and gets the mined ones as ``negative_1..n`` (rerunning replaces them).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from poemrag.errors import PoemragError
from training.data import (
    DEFAULT_DATA_GLOB,
    Triplet,
    data_files,
    read_triplet_files,
    shares_run,
    split_dev,
)

Encode = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class MineConfig:
    """Filtering knobs, see the module docstring."""

    num_negatives: int = 3
    top_k: int = 50
    max_similarity: float = 0.9
    relative_margin: float = 0.05
    min_negatives: int | None = None
    """Keep a row with at least this many usable candidates (``None``: ``num_negatives``)."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def top_candidates(queries: np.ndarray, docs: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Indices of the ``k`` best documents per query, best first (cosine)."""
    k = min(k, len(docs))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ docs.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


@dataclass(frozen=True)
class Candidate:
    """A corpus couplet proposed for one anchor."""

    text: str
    poems: frozenset[str]
    score: float
    """Cosine to the anchor."""
    similarity: float
    """Cosine to the anchor's positive."""


def pick_negatives(
    t: Triplet, candidates: Sequence[Candidate], pos_score: float,
    positive_poems: frozenset[str], cfg: MineConfig,
) -> list[str]:
    """Up to ``cfg.num_negatives`` candidate texts that pass every filter, best first."""
    taken = {t.positive, *t.negatives}
    picked: list[str] = []
    for c in candidates:
        if (
            c.text in taken
            or c.poems & positive_poems
            or shares_run(c.text, t.positive) is not None
            or c.similarity >= cfg.max_similarity
            or (cfg.relative_margin > 0 and c.score >= pos_score * (1 - cfg.relative_margin))
        ):
            continue
        picked.append(c.text)
        taken.add(c.text)
        if len(picked) == cfg.num_negatives:
            break
    return picked


def mine(
    triplets: Sequence[Triplet], corpus: Sequence[tuple[str, str]],
    encode_queries: Encode, encode_documents: Encode, cfg: MineConfig,
    corpus_vectors: np.ndarray | None = None,
) -> tuple[list[dict[str, str]], int]:
    """Mined rows for ``triplets`` against ``corpus`` (text, poem id); returns (rows, skipped).

    ``corpus_vectors`` (one row per ``corpus`` entry, from the same model) skips embedding
    the corpus, e.g. the vectors of an ingested collection."""
    poems_of: dict[str, set[str]] = {}
    first_row: dict[str, int] = {}
    for row, (text, poem_id) in enumerate(corpus):
        poems_of.setdefault(text, set()).add(poem_id)
        first_row.setdefault(text, row)
    texts = list(poems_of)
    if corpus_vectors is None:
        docs = _unit(np.asarray(encode_documents(texts), dtype=np.float32))
    else:
        docs = _unit(np.asarray(corpus_vectors, dtype=np.float32)[[first_row[t] for t in texts]])
    queries = _unit(np.asarray(encode_queries([t.anchor for t in triplets]), dtype=np.float32))
    positives = _unit(np.asarray(encode_documents([t.positive for t in triplets]), dtype=np.float32))
    best = top_candidates(queries, docs, cfg.top_k)
    rows: list[dict[str, str]] = []
    skipped = 0
    for n, t in enumerate(triplets):
        candidates = [
            Candidate(texts[i], frozenset(poems_of[texts[i]]), float(docs[i] @ queries[n]),
                      float(docs[i] @ positives[n]))
            for i in best[n]
        ]
        picked = pick_negatives(t, candidates, float(queries[n] @ positives[n]),
                                frozenset(poems_of.get(t.positive, ())), cfg)
        if len(picked) < (cfg.num_negatives if cfg.min_negatives is None else cfg.min_negatives):
            skipped += 1
            continue
        negatives = [*t.negatives, *picked]
        provenance = {} if t.positive_id is None else {"positive_id": t.positive_id}
        rows.append({"anchor": t.anchor, "positive": t.positive,
                     **{f"negative_{i}": x for i, x in enumerate(negatives, start=1)},
                     **provenance})
    return rows, skipped


def _mined_key(key: str) -> bool:
    return key.startswith("negative_") and key[9:].isdigit()


def write_back(paths: Sequence[Path], rows: Sequence[dict[str, object]]) -> int:
    """Put each mined row's new negatives into its source row as ``negative_1..n``, replacing
    earlier mined ones; other rows and fields stay as they are. Returns the rows changed."""
    mined = {str(r["anchor"]): [v for k, v in r.items() if _mined_key(k)][1:] for r in rows}
    changed = 0
    for path in paths:
        out: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            obj = json.loads(line)
            extra = mined.get(str(obj.get("anchor", "")).strip())
            if extra is not None:
                obj = {k: v for k, v in obj.items() if not _mined_key(k)}
                obj.update({f"negative_{i}": x for i, x in enumerate(extra, start=1)})
                changed += 1
            out.append(json.dumps(obj, ensure_ascii=False))
        path.write_text("".join(line + "\n" for line in out), encoding="utf-8")
    return changed


def own_negative_only(triplets: Sequence[Triplet]) -> list[Triplet]:
    """The rows with only their first (authored) negative: mined ones are mined anew."""
    return [replace(t, negatives=t.negatives[:1]) for t in triplets]


def store_pool(path: Path, model: str) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(text, poem id) pairs and vectors of every point of an ingested Edge collection,
    refused unless it was embedded with ``model``."""
    from poemrag.edge_store import EdgeStore
    from poemrag.fingerprint import model_fingerprint

    with EdgeStore(path) as store:
        if not store.exists():
            raise PoemragError(f"no collection at {path}")
        if store.model_fingerprint() != model_fingerprint(model):
            raise PoemragError(
                f"the collection at {path} was embedded with other weights than {model!r} "
                f"(recorded: {store.model!r}, fingerprint {store.model_fingerprint() or 'none'}):"
                " mine with that model or without --store"
            )
        # One preallocated matrix: a list of 256k row arrays plus their stacked copy would
        # hold the 1.8 GB of vectors twice.
        vectors = np.empty((store.count(), store.vector_size() or 0), dtype=np.float32)
        pairs: list[tuple[str, str]] = []
        for row, (_, vector, payload) in enumerate(store.scroll_points(batch=4096)):
            pairs.append((payload["page_content"], payload["metadata"]["poem_id"]))
            vectors[row] = vector
    return pairs, vectors[: len(pairs)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.mine", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model directory (ST or ONNX) or hub id")
    p.add_argument("--data", type=Path, nargs="*", default=None,
                   help=f"chat triplet files (default {DEFAULT_DATA_GLOB})")
    p.add_argument("--output", type=Path, default=Path("artifacts/mined/chat_hard_negatives.jsonl"))
    p.add_argument("--write-back", action="store_true",
                   help="add the mined negatives to the --data files' own training rows "
                        "(negative_1..n) instead of writing --output")
    p.add_argument("--corpus", type=Path, default=None, help="corpus tarball/dir (default: pinned)")
    p.add_argument("--store", type=Path, default=None,
                   help="an ingested Edge collection directory (e.g. $POEMRAG_DATA_DIR/qdrant/"
                        "tang_poems) embedded with --model: mine from its vectors, no re-embedding")
    p.add_argument("--pool-size", type=int, default=None,
                   help="mine from a seeded sample of this many couplets (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-negatives", type=int, default=MineConfig.num_negatives)
    p.add_argument("--min-negatives", type=int, default=None, metavar="N",
                   help="keep rows with at least N usable candidates (default: --num-negatives); "
                        "messages the model ranks badly often have fewer")
    p.add_argument("--top-k", type=int, default=MineConfig.top_k)
    p.add_argument("--max-similarity", type=float, default=MineConfig.max_similarity)
    p.add_argument("--relative-margin", type=float, default=MineConfig.relative_margin,
                   help="skip candidates scoring above (1 - margin) x the positive; 0 = off")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from poemrag.corpus import load_corpus
        from poemrag.embeddings import PoemEmbeddings

        files = data_files(args.data)
        train, dev = split_dev(read_triplet_files(files))
        if args.write_back:
            train = own_negative_only(train)
        emb = PoemEmbeddings(model=args.model, batch_size=64)
        vectors = None
        if args.store is not None:
            corpus, vectors = store_pool(args.store, args.model)
        else:
            corpus = [(c.text, c.poem_id) for c in load_corpus(args.corpus).couplets()]
        if args.pool_size is not None and args.pool_size < len(corpus):
            keep = sorted(random.Random(args.seed).sample(range(len(corpus)), args.pool_size))
            corpus = [corpus[i] for i in keep]
            vectors = vectors[keep] if vectors is not None else None
        cfg = MineConfig(args.num_negatives, args.top_k, args.max_similarity, args.relative_margin,
                         args.min_negatives)
        rows, skipped = mine(train, corpus, emb.encode_queries, emb.encode_documents, cfg, vectors)
    except PoemragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.write_back:
        changed = write_back(files, rows)
        where = f"{changed} rows of {len(files)} data files"
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                               "utf-8")
        where = f"{len(rows)} rows to {args.output}"
    least = cfg.num_negatives if cfg.min_negatives is None else cfg.min_negatives
    print(f"wrote {where} ({skipped} anchors without {least} usable candidates "
          f"skipped, {len(dev)} dev anchors left out)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
