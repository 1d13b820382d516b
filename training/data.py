"""Training data: authored chat triplets (JSONL), CCPM triplets, the fixed dev split and checks.

Chat triplet files hold one JSON object per line: ``{"anchor": chat message, "positive":
corpus couplet, "negative": corpus couplet}``; mined files may carry ``negative_1`` ..
``negative_n`` instead of ``negative``. Every problem is reported as ``file:line: message``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poemrag.chinese import HAN_RE
from poemrag.errors import PoemragError
from training.ccpm import CcpmRow, read_ccpm

DEV_PERCENT = 10
"""Share of anchors held out as the chat dev set (by a stable hash of the anchor)."""

OVERLAP_RUN = 4
"""An anchor may not copy this many consecutive characters of its positive."""

MAX_SHARED_CHARS = 3
"""An authored (v2) message may share at most this many distinct characters with its couplet."""

SHORTCUT_FREE_CHARS = 1
"""Dev rows sharing at most this many characters with their couplet form the shortcut-free subset."""

MESSAGE_CHARS = (8, 80)
"""Shortest and longest authored (v2) message, in characters."""

DEFAULT_DATA_GLOB = "training/data/chat_*.jsonl"
"""The project's chat triplet files, from the repository root (every command's default data)."""

AUTHORED_PREFIX = "chat_v2_"
"""File-name prefix of the authored v2 files (rows carry ``positive_id``, stricter checks)."""


def data_files(paths: Sequence[Path] | None = None) -> list[Path]:
    """``paths`` as given, or the project's chat triplet files (:data:`DEFAULT_DATA_GLOB`)."""
    if paths is not None:
        return list(paths)
    return sorted(Path(__file__).resolve().parent.parent.glob(DEFAULT_DATA_GLOB))


class TrainingDataError(PoemragError):
    """A training data file is missing or malformed (the message names ``file:line``)."""


@dataclass(frozen=True, slots=True)
class Triplet:
    """An anchor, its positive and zero or more hard negatives; ``where`` is ``file:line``."""

    anchor: str
    positive: str
    negatives: tuple[str, ...] = ()
    where: str = ""
    positive_id: int | None = None
    """Point id of the positive in the corpus collection, where the row records it."""


def _negative_keys(row: dict[str, object]) -> list[str]:
    numbered = sorted(
        (k for k in row if k.startswith("negative_") and k[9:].isdigit()), key=lambda k: int(k[9:])
    )
    return (["negative"] if "negative" in row else []) + numbered


def parse_triplet(line: str, where: str) -> Triplet:
    """Parse one JSONL line; raises :class:`TrainingDataError` naming ``where`` on any problem."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrainingDataError(f"{where}: bad JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise TrainingDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    keys = ["anchor", "positive", *_negative_keys(row)]
    if len(keys) == 2:
        raise TrainingDataError(f"{where}: missing field 'negative'")
    values: list[str] = []
    for key in keys:
        value = row.get(key)
        if value is None:
            raise TrainingDataError(f"{where}: missing field {key!r}")
        if not isinstance(value, str):
            raise TrainingDataError(f"{where}: field {key!r} is not a string")
        if not value.strip():
            raise TrainingDataError(f"{where}: field {key!r} is empty")
        values.append(value.strip())
    positive_id = row.get("positive_id")
    if positive_id is not None and (not isinstance(positive_id, int) or positive_id < 0):
        raise TrainingDataError(f"{where}: field 'positive_id' is not a point id")
    return Triplet(values[0], values[1], tuple(values[2:]), where, positive_id)


def read_triplets(path: Path, strict: bool = False) -> tuple[list[Triplet], list[str]]:
    """Read a triplet JSONL file; returns (triplets, problems).

    Blank lines are ignored. Malformed rows are skipped and reported in ``problems``, or with
    ``strict`` the first one raises :class:`TrainingDataError`.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrainingDataError(f"cannot read {path}: {exc.strerror or exc}") from None
    triplets: list[Triplet] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            triplets.append(parse_triplet(line, f"{path}:{number}"))
        except TrainingDataError as exc:
            if strict:
                raise
            problems.append(str(exc))
    return triplets, problems


def read_triplet_files(
    paths: Iterable[Path], strict: bool = False, warn: bool = True
) -> list[Triplet]:
    """Read several triplet files; skipped rows are printed to stderr unless ``warn`` is off."""
    triplets: list[Triplet] = []
    for path in paths:
        rows, problems = read_triplets(path, strict=strict)
        if warn:
            for problem in problems:
                print(f"warning: skipped {problem}", file=sys.stderr)
        triplets.extend(rows)
    return triplets


def dev_bucket(anchor: str) -> int:
    """Stable bucket 0-99 of an anchor (sha1 of its stripped UTF-8 text)."""
    digest = hashlib.sha1(anchor.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def is_dev(anchor: str) -> bool:
    """True for the fixed ~10% of anchors held out as the dev set."""
    return dev_bucket(anchor) < DEV_PERCENT


def split_dev(triplets: Sequence[Triplet]) -> tuple[list[Triplet], list[Triplet]]:
    """(train, dev) by :func:`is_dev`; a row's side never changes as files grow."""
    train = [t for t in triplets if not is_dev(t.anchor)]
    dev = [t for t in triplets if is_dev(t.anchor)]
    return train, dev


def ccpm_triplets(rows: Iterable[CcpmRow]) -> list[Triplet]:
    """CCPM rows as triplets: translation, the right line, the three wrong lines."""
    return [
        Triplet(
            anchor=row.translation,
            positive=row.choices[row.answer],
            negatives=tuple(c for i, c in enumerate(row.choices) if i != row.answer),
            where=row.where,
        )
        for row in rows
    ]


def resolve_ccpm_dir(path: Path | None) -> Path | None:
    """The CCPM folder: ``path`` if given, else ``POEMRAG_CCPM_DIR`` (None when neither is set)."""
    if path is not None:
        return path
    from poemrag.settings import Settings

    return Settings().ccpm_dir


def load_ccpm_split(ccpm_dir: Path, split: str) -> list[CcpmRow]:
    """Rows of ``train`` or ``valid`` from a CCPM folder; one-line errors name ``file:line``."""
    path = ccpm_dir / f"{split}.jsonl"
    if not path.is_file():
        raise TrainingDataError(f"CCPM {split} file not found: {path}")
    return read_ccpm(path)


def check_positives(triplets: Iterable[Triplet], corpus_texts: set[str]) -> list[str]:
    """One ``file:line`` error for each positive that is not a verbatim corpus couplet."""
    return [
        f"{t.where}: positive is not a corpus couplet: {t.positive}"
        for t in triplets
        if t.positive not in corpus_texts
    ]


def shares_run(anchor: str, positive: str, run: int = OVERLAP_RUN) -> str | None:
    """The first run of ``run`` Chinese characters of ``positive`` found in ``anchor``, if any
    (punctuation does not count: three characters and a comma are not a copied run)."""
    for start in range(len(positive) - run + 1):
        piece = positive[start : start + run]
        if len(HAN_RE.findall(piece)) == run and piece in anchor:
            return piece
    return None


def han_chars(text: str) -> set[str]:
    """The distinct Chinese characters of ``text``."""
    return set(HAN_RE.findall(text))


def char_postings(texts: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each Chinese character of ``texts`` -> the rows holding it and its count in each row:
    the inverted index behind every character-overlap score of the project."""
    postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row, text in enumerate(texts):
        for ch, count in Counter(HAN_RE.findall(text)).items():
            postings[ch].append((row, count))
    return {ch: (np.array([r for r, _ in p], dtype=np.int64),
                 np.array([k for _, k in p], dtype=np.float32)) for ch, p in postings.items()}


def shared_chars(anchor: str, positive: str) -> set[str]:
    """Distinct Chinese characters of ``positive`` that also occur in ``anchor``."""
    return han_chars(positive) & han_chars(anchor)


def is_shortcut_free(t: Triplet) -> bool:
    """True when the message shares at most :data:`SHORTCUT_FREE_CHARS` characters with its
    couplet: a model can only find it by meaning."""
    return len(shared_chars(t.anchor, t.positive)) <= SHORTCUT_FREE_CHARS


def data_group(t: Triplet) -> str:
    """``v2`` for authored rows that record their couplet's point id, ``v1`` for the rest."""
    return "v1" if t.positive_id is None else "v2"


def copy_error(t: Triplet) -> str | None:
    """The ``file:line`` error of a message that copies a run of its couplet, if it does."""
    piece = shares_run(t.anchor, t.positive)
    return None if piece is None else f"{t.where}: anchor copies {piece!r} from its positive"


def lint_authored(t: Triplet) -> list[str]:
    """``file:line`` errors of the stricter rules for authored v2 rows (the copied-run rule of
    every row included: a message can share only 3 distinct characters yet repeat one)."""
    errors: list[str] = []
    if (copied := copy_error(t)) is not None:
        errors.append(copied)
    low, high = MESSAGE_CHARS
    if not low <= len(t.anchor) <= high:
        errors.append(f"{t.where}: message has {len(t.anchor)} characters (allowed {low}-{high})")
    shared = shared_chars(t.anchor, t.positive)
    if len(shared) > MAX_SHARED_CHARS:
        errors.append(
            f"{t.where}: message shares {len(shared)} characters with its couplet "
            f"({''.join(sorted(shared))}; at most {MAX_SHARED_CHARS})"
        )
    if t.positive_id is None:
        errors.append(f"{t.where}: missing field 'positive_id'")
    return errors


def lint_triplets(triplets: Iterable[Triplet]) -> list[str]:
    """``file:line`` errors for anchors copying their positive and for duplicate anchors."""
    errors: list[str] = []
    seen: dict[str, str] = {}
    for t in triplets:
        if (copied := copy_error(t)) is not None:
            errors.append(copied)
        if t.anchor in seen:
            errors.append(f"{t.where}: duplicate anchor (first at {seen[t.anchor]})")
        else:
            seen[t.anchor] = t.where
    return errors
