"""CCPM rows and zero-shot accuracy: does the translation's embedding pick the right line?

Query = the modern translation, documents = the classical choices; the prediction is the
choice with the highest dot product (cosine for normalized embeddings). Prompts
(``query: ``/``passage: ``) are the encoders' job.

``python -m training.ccpm MODEL_DIR [--onnx] [--limit N]`` prints the valid accuracy.
CCPM: Li, Qi, Sun, Yi, Zhang (2021), "CCPM: A Chinese Classical Poetry Matching Dataset",
arXiv:2106.01979.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from poemrag.errors import PoemragError

Encoder = Callable[[Sequence[str]], Any]
"""Texts -> embeddings, array-like ``[n, dim]``."""



class CcpmError(PoemragError):
    """A CCPM file is missing or has a malformed row (the message names file and line)."""


@dataclass(frozen=True)
class CcpmRow:
    """One CCPM question: a modern translation, its classical choices, the right index."""

    translation: str
    choices: tuple[str, ...]
    answer: int
    where: str = ""


def _row(obj: Any, where: str) -> CcpmRow:
    if not isinstance(obj, dict):
        raise CcpmError(f"{where}: row must be a JSON object")
    translation, choices, answer = obj.get("translation"), obj.get("choices"), obj.get("answer")
    if not isinstance(translation, str) or not translation:
        raise CcpmError(f"{where}: 'translation' must be a non-empty string")
    if not isinstance(choices, list) or not choices or not all(
            isinstance(c, str) for c in choices):
        raise CcpmError(f"{where}: 'choices' must be a list of strings")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise CcpmError(f"{where}: 'answer' must be an index into 'choices'")
    return CcpmRow(translation, tuple(choices), answer, where)


def read_ccpm(path: Path, limit: int | None = None) -> list[CcpmRow]:
    """Rows of a CCPM ``.jsonl`` file (the first ``limit`` if given); errors name file:line."""
    if not path.is_file():
        raise CcpmError(f"CCPM file not found: {path}")
    rows: list[CcpmRow] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CcpmError(f"{where}: invalid JSON ({exc.msg})") from exc
            rows.append(_row(obj, where))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def ccpm_predictions(encode_query: Encoder, encode_doc: Encoder,
                     rows: Sequence[CcpmRow]) -> np.ndarray:
    """Index of the highest-scoring choice for every row."""
    q = np.asarray(encode_query([r.translation for r in rows]), np.float32)
    d = np.asarray(encode_doc([c for r in rows for c in r.choices]), np.float32)
    bounds = np.cumsum([0] + [len(r.choices) for r in rows])
    return np.array([int(np.argmax(d[a:b] @ q[i]))
                     for i, (a, b) in enumerate(pairwise(bounds))])


def ccpm_accuracy(encode_query: Encoder, encode_doc: Encoder, rows: Sequence[CcpmRow]) -> float:
    """Fraction of rows whose highest-scoring choice is the answer."""
    if not rows:
        return 0.0
    pred = ccpm_predictions(encode_query, encode_doc, rows)
    return float(np.mean(pred == np.array([r.answer for r in rows])))


def st_encoders(model_dir: Path, batch_size: int = 64) -> tuple[Encoder, Encoder]:
    """(query, document) encoders of a sentence-transformers model, with its prompts."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")

    def encode(prompt: str) -> Encoder:
        return lambda texts: st.encode(list(texts), prompt_name=prompt, batch_size=batch_size,
                                       normalize_embeddings=True, convert_to_numpy=True)

    return encode("query"), encode("document")


def onnx_encoders(model_dir: Path, batch_size: int = 64) -> tuple[Encoder, Encoder]:
    """(query, document) encoders of an exported ONNX dir, as the product runs it."""
    from poemrag.encoders import OnnxEncoder

    model = OnnxEncoder(Path(model_dir))

    def encode(prefix: str) -> Encoder:
        return lambda texts: model.encode([prefix + t for t in texts], batch_size)

    return encode(model.query_prompt), encode(model.document_prompt)


def ccpm_dir_or_error(path: Path | None) -> Path:
    """``path``, else the ``POEMRAG_CCPM_DIR`` setting; a :class:`CcpmError` if neither."""
    if path is None:
        from poemrag.settings import Settings

        path = Settings().ccpm_dir
    if path is None:
        raise CcpmError("no CCPM folder: pass --ccpm DIR or set POEMRAG_CCPM_DIR")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ccpm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="sentence-transformers dir, or ONNX dir with --onnx")
    p.add_argument("--onnx", action="store_true", help="the model is an exported ONNX dir")
    p.add_argument("--split", default="valid", choices=["train", "valid"])
    p.add_argument("--ccpm", type=Path, help="CCPM folder (default: POEMRAG_CCPM_DIR)")
    p.add_argument("--limit", type=int, help="only the first N rows")
    args = p.parse_args(argv)
    try:
        rows = read_ccpm(ccpm_dir_or_error(args.ccpm) / f"{args.split}.jsonl", args.limit)
        t0 = time.time()
        encoders = onnx_encoders(args.model) if args.onnx else st_encoders(args.model)
        acc = ccpm_accuracy(*encoders, rows)
    except (PoemragError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"CCPM {args.split} zero-shot accuracy: {acc:.2%} ({len(rows)} rows, "
          f"{time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
