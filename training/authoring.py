"""Authored chat data (v2): candidate couplets for writers, checks of what they wrote, and the
triplet files built from it.

    python -m training.authoring candidates --slices 8 --per-slice 4000 --out DIR
    python -m training.authoring check RAW.jsonl ...
    python -m training.authoring build RAW.jsonl ... --out training/data
    python -m training.authoring stats training/data/chat_v2_*.jsonl

Writers start from a corpus couplet and write the chat message it would be the perfect
quotation for. ``candidates`` deals out one quotable couplet per poem, in disjoint slices, from
the whole corpus (唐诗三百首 and poems already used left out, ritual and court titles skipped).
A writer's raw file holds one ``{"id": point id, "anchor": message}`` per line, optionally with
``"negative_id"`` (a couplet that shares words or imagery with the message but does not fit).
``check`` applies every rule (:func:`training.data.lint_authored`, one row per poem, no message
written twice or from one template); ``build`` writes ``chat_v2_NN.jsonl`` triplets whose
negative is the authored one or, failing that, the regular five- or seven-character corpus
couplet sharing the most (rarest) characters with the message outside the positive's poem: a
surface match that (mostly) does not fit, which counters the shared-character shortcut.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np

from poemrag.errors import PoemragError
from training.data import (
    AUTHORED_PREFIX,
    DEFAULT_DATA_GLOB,
    TrainingDataError,
    Triplet,
    char_postings,
    data_files,
    han_chars,
    lint_authored,
    read_triplet_files,
    shares_run,
)

DEFAULT_INDEX = Path("artifacts/authoring/couplets.jsonl")
FILE_ROWS = 4000
"""Rows per built file (about 1.5 MB, well under the 5 MB per file asked of data files)."""

QUOTABLE_RE = re.compile(r"^(?:[^，。？！；]{5}，[^，。？！；]{5}|[^，。？！；]{7}，[^，。？！；]{7})[。？！]$")
"""A regular five- or seven-character couplet."""

SKIP_TITLE_WORDS = ("应制", "奉和", "郊庙", "乐章", "祀", "享", "册", "朝会", "舞曲", "偈")
"""Titles of ritual, court and liturgical poems: no everyday chat message fits them."""

ROWS_PER_POEM = 2
"""A poem gives at most this many rows, each a different couplet: a second couplet of a poem
that fits modern life is worth more than a strained first one of a poem that does not."""

NEAR_DUPLICATE_RATIO = 0.75
"""Two messages whose difflib ratio reaches this are one message pattern written twice."""

_COMMON_BIGRAM_DF = 300
"""Bigrams in more messages than this do not propose near-duplicate pairs (they still count
in the ratio)."""


@dataclass(frozen=True, slots=True)
class IndexedCouplet:
    """What authoring needs of a corpus couplet."""

    id: int
    text: str
    title: str
    author: str
    poem_index: int
    famous: bool
    """The poem is in 唐诗三百首."""


def build_index(corpus_source: Path | None, out: Path) -> None:
    """Write every corpus couplet (id, text, title, author, poem, 唐诗三百首 flag) to ``out``."""
    from poemrag.corpus import load_corpus

    famous = {p.index for p in load_corpus(corpus_source, sample=True).poems}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for c in load_corpus(corpus_source).couplets():
            row = {"id": c.id, "text": c.text, "title": c.title, "author": c.author,
                   "poem_index": c.poem_index, "famous": c.poem_index in famous}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def load_index(path: Path, corpus_source: Path | None = None) -> dict[int, IndexedCouplet]:
    """The couplet index by point id, built from the corpus first when ``path`` is missing."""
    if not path.is_file():
        print(f"building the couplet index {path} (once)", file=sys.stderr)
        build_index(corpus_source, path)
    out: dict[int, IndexedCouplet] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            out[row["id"]] = IndexedCouplet(**row)
    return out


def is_quotable(c: IndexedCouplet) -> bool:
    return bool(QUOTABLE_RE.match(c.text)) and not any(w in c.title for w in SKIP_TITLE_WORDS)


def deal_candidates(
    index: dict[int, IndexedCouplet], slices: int, per_slice: int, used_couplets: Collection[int],
    seed: int, start: int = 0, poem_rows: int = 0,
) -> list[list[IndexedCouplet]]:
    """``slices`` disjoint lists of one seeded-random quotable couplet per poem, from the poems
    with exactly ``poem_rows`` of ``used_couplets`` (0: poems without a row; 1: a second couplet
    of poems with one), leaving out 唐诗三百首 and the used couplets' texts; ``start`` skips
    that many poems of the seeded order (a later round with the same seed gets poems no earlier
    round had)."""
    if not 0 <= poem_rows < ROWS_PER_POEM:
        raise TrainingDataError(f"poem_rows must be 0-{ROWS_PER_POEM - 1}, not {poem_rows}")
    used = [index[i] for i in used_couplets if i in index]
    rows_of = Counter(c.poem_index for c in used)
    # The corpus holds some poems twice (under two titles or poets): a used couplet's text is
    # used wherever it appears.
    used_texts = {c.text for c in used}
    by_poem: dict[int, list[IndexedCouplet]] = defaultdict(list)
    for c in index.values():
        if (not c.famous and rows_of[c.poem_index] == poem_rows and c.text not in used_texts
                and is_quotable(c)):
            by_poem[c.poem_index].append(c)
    rng = random.Random(seed)
    poems = sorted(by_poem)
    rng.shuffle(poems)
    picks = [rng.choice(by_poem[p]) for p in poems[start : start + slices * per_slice]]
    return [picks[k::slices] for k in range(slices)]


@dataclass(frozen=True, slots=True)
class RawRow:
    """One line a writer wrote."""

    id: int
    anchor: str
    negative_id: int | None
    where: str


def read_raw(paths: Iterable[Path]) -> tuple[list[RawRow], list[str]]:
    """Rows of writers' raw files and ``file:line`` problems of their shape."""
    rows: list[RawRow] = []
    problems: list[str] = []
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise TrainingDataError(f"cannot read {path}: {exc.strerror or exc}") from None
        for number, line in enumerate(lines, start=1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: bad JSON ({exc.msg})")
                continue
            anchor = obj.get("anchor") if isinstance(obj, dict) else None
            pid = obj.get("id") if isinstance(obj, dict) else None
            neg = obj.get("negative_id") if isinstance(obj, dict) else None
            if not isinstance(pid, int) or not isinstance(anchor, str) or not anchor.strip():
                problems.append(f"{where}: expected {{\"id\": point id, \"anchor\": message}}")
                continue
            if neg is not None and not isinstance(neg, int):
                problems.append(f"{where}: 'negative_id' is not a point id")
                continue
            rows.append(RawRow(pid, anchor.strip(), neg, where))
    return rows, problems


def near_duplicates(
    anchors: Sequence[str], ratio: float = NEAR_DUPLICATE_RATIO
) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, ratio)``, ``i < j``, of messages that are one pattern written twice
    (difflib ratio >= ``ratio``); candidate pairs come from shared uncommon bigrams."""
    grams = [{a[k : k + 2] for k in range(len(a) - 1)} for a in anchors]
    postings: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(grams):
        for b in g:
            postings[b].append(i)
    pairs: list[tuple[int, int, float]] = []
    for j, g in enumerate(grams):
        counts: Counter[int] = Counter()
        for b in g:
            plist = postings[b]
            if len(plist) <= _COMMON_BIGRAM_DF:
                counts.update(i for i in plist if i < j)
        for i, shared in counts.items():
            # difflib's ratio cannot reach ``ratio`` with fewer shared bigrams than this.
            if shared < ratio * min(len(grams[i]), len(g)) * 0.5:
                continue
            r = SequenceMatcher(None, anchors[i], anchors[j], autojunk=False).ratio()
            if r >= ratio:
                pairs.append((i, j, r))
    return pairs


def check_rows(
    rows: Sequence[RawRow], index: dict[int, IndexedCouplet], existing: Sequence[Triplet] = ()
) -> list[str]:
    """Every problem of ``rows``, one ``file:line: message`` line each."""
    problems: list[str] = []
    by_text = {c.text: c for c in index.values()}
    couplet_seen: dict[str, str] = {}
    poem_rows: dict[int, list[str]] = defaultdict(list)
    for t in existing:
        c = index.get(t.positive_id) if t.positive_id is not None else by_text.get(t.positive)
        couplet_seen.setdefault(t.positive, t.where)
        if c is not None:
            poem_rows[c.poem_index].append(t.where)
    anchors_seen = {t.anchor: t.where for t in existing}
    for r in rows:
        c = index.get(r.id)
        if c is None:
            problems.append(f"{r.where}: {r.id} is not a corpus point id")
            continue
        t = Triplet(r.anchor, c.text, (), r.where, r.id)
        problems += lint_authored(t)
        if c.text in couplet_seen:
            problems.append(f"{r.where}: the couplet already has a row ({couplet_seen[c.text]})")
        elif len(poem_rows[c.poem_index]) >= ROWS_PER_POEM:
            problems.append(f"{r.where}: poem 《{c.title}》 already has {ROWS_PER_POEM} rows "
                            f"({', '.join(poem_rows[c.poem_index])})")
        couplet_seen.setdefault(c.text, r.where)
        poem_rows[c.poem_index].append(r.where)
        if r.anchor in anchors_seen:
            problems.append(f"{r.where}: duplicate message (first at {anchors_seen[r.anchor]})")
        anchors_seen.setdefault(r.anchor, r.where)
        if r.negative_id is not None:
            n = index.get(r.negative_id)
            if n is None:
                problems.append(f"{r.where}: negative {r.negative_id} is not a corpus point id")
            elif n.poem_index == c.poem_index:
                problems.append(f"{r.where}: the negative comes from the positive's own poem")
    all_anchors = [t.anchor for t in existing] + [r.anchor for r in rows]
    wheres = [t.where for t in existing] + [r.where for r in rows]
    for i, j, ratio in near_duplicates(all_anchors):
        if j >= len(existing) and all_anchors[i] != all_anchors[j]:
            problems.append(f"{wheres[j]}: same pattern as {wheres[i]} (similarity {ratio:.2f}): "
                            f"{all_anchors[j]} / {all_anchors[i]}")
    return problems


class LexicalIndex:
    """Corpus couplets by character, to find the couplet sharing the most (rarest) characters
    with a message: weights are inverse document frequencies."""

    def __init__(self, couplets: Sequence[IndexedCouplet]) -> None:
        self.couplets = list(couplets)
        n = len(self.couplets)
        self.postings = {ch: rows for ch, (rows, _) in
                         char_postings([c.text for c in self.couplets]).items()}
        self.idf = {ch: math.log(n / len(rows)) for ch, rows in self.postings.items()}

    def best(self, message: str, exclude_poem: int, avoid: str, top: int = 20) -> int | None:
        """Point id of the couplet outside ``exclude_poem`` sharing the most characters with
        ``message`` (at least two), not sharing a four-character run with ``avoid``."""
        scores = np.zeros(len(self.couplets), dtype=np.float32)
        chars = [ch for ch in han_chars(message) if ch in self.postings]
        for ch in chars:
            scores[self.postings[ch]] += self.idf[ch]
        hits = np.zeros(len(self.couplets), dtype=np.int16)
        for ch in chars:
            hits[self.postings[ch]] += 1
        scores[hits < 2] = 0
        order = np.argpartition(-scores, min(top, len(scores) - 1))[:top]
        for row in order[np.argsort(-scores[order])]:
            c = self.couplets[row]
            if scores[row] <= 0:
                return None
            if c.poem_index != exclude_poem and shares_run(c.text, avoid) is None:
                return c.id
        return None


def build_rows(rows: Sequence[RawRow], index: dict[int, IndexedCouplet]) -> list[dict[str, object]]:
    """Triplet rows with the positive's text and id and an authored or lexical negative."""
    lexical = LexicalIndex([c for c in index.values() if QUOTABLE_RE.match(c.text)])
    out: list[dict[str, object]] = []
    for r in rows:
        c = index[r.id]
        neg_id = r.negative_id
        kind = "authored"
        if neg_id is None:
            neg_id = lexical.best(r.anchor, c.poem_index, c.text)
            kind = "lexical"
        if neg_id is None:
            continue
        out.append({"anchor": r.anchor, "positive": c.text, "negative": index[neg_id].text,
                    "positive_id": r.id, "negative_id": neg_id, "negative_kind": kind})
    return out


def write_files(rows: Sequence[dict[str, object]], out_dir: Path, per_file: int = FILE_ROWS) -> list[Path]:
    """New ``chat_v2_NN.jsonl`` files of ``per_file`` rows each, numbered after the folder's
    existing ones (which stay as they are)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for f in out_dir.glob(f"{AUTHORED_PREFIX}*.jsonl")
             if (m := re.fullmatch(rf"{AUTHORED_PREFIX}(\d+)\.jsonl", f.name))]
    first = max(taken, default=0) + 1
    paths: list[Path] = []
    for k, start in enumerate(range(0, len(rows), per_file), start=first):
        path = out_dir / f"{AUTHORED_PREFIX}{k:02d}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                for r in rows[start : start + per_file]), "utf-8")
        paths.append(path)
    return paths


LENGTH_BINS = (8, 21, 41, 61, 81)
"""Message length histogram edges: 8-20, 21-40, 41-60, 61-80 characters."""


def stats(rows: Sequence[Triplet], index: dict[int, IndexedCouplet]) -> str:
    """Rows, distinct poems, 唐诗三百首 share, length histogram, shared characters, negatives."""
    from training.data import is_dev, shared_chars

    poems = [index[t.positive_id] for t in rows if t.positive_id in index]
    famous = sum(c.famous for c in poems)
    lengths = np.array([len(t.anchor) for t in rows])
    hist, _ = np.histogram(lengths, bins=LENGTH_BINS)
    shared = Counter(min(len(shared_chars(t.anchor, t.positive)), 3) for t in rows)
    mined = sum(len(t.negatives) > 1 for t in rows)
    n = max(len(rows), 1)
    lines = [
        (f"rows {len(rows)} (dev {sum(is_dev(t.anchor) for t in rows)}), distinct poems "
        f"{len({c.poem_index for c in poems})}, from 唐诗三百首 {famous} ({famous / n:.1%})"),
        "message length: " + ", ".join(
            f"{lo}-{hi - 1}: {k} ({k / n:.0%})" for lo, hi, k in zip(LENGTH_BINS, LENGTH_BINS[1:], hist)),
        "characters shared with the couplet: " + ", ".join(
            f"{k if k < 3 else '3'}: {shared[k]} ({shared[k] / n:.0%})" for k in range(4)),
        (f"questions {sum(t.anchor.endswith(('？', '?')) for t in rows) / n:.0%}, exclamations "
        f"{sum(t.anchor.endswith(('！', '!')) for t in rows) / n:.0%}; rows with mined negatives "
        f"{mined}"),
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.authoring",
                                description=__doc__.split("\n")[0])
    p.add_argument("--index", type=Path, default=DEFAULT_INDEX,
                   help=f"couplet index, built from the corpus if missing (default {DEFAULT_INDEX})")
    p.add_argument("--corpus", type=Path, default=None, help="corpus tarball/dir (default: pinned)")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("candidates", help="deal candidate couplets to writers")
    c.add_argument("--slices", type=int, default=8)
    c.add_argument("--per-slice", type=int, default=4000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--start", type=int, default=0,
                   help="skip this many poems of the seeded order (the rounds before)")
    c.add_argument("--poem-rows", type=int, default=0, choices=range(ROWS_PER_POEM),
                   help="deal poems with this many rows already (1: a second couplet of each)")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--existing", type=Path, nargs="*", default=None,
                   help=f"data files whose poems are left out (default: {DEFAULT_DATA_GLOB})")
    k = sub.add_parser("check", help="check writers' raw files")
    k.add_argument("raw", type=Path, nargs="+")
    b = sub.add_parser("build", help="check raw files and write chat_v2_*.jsonl triplets")
    b.add_argument("raw", type=Path, nargs="+")
    b.add_argument("--out", type=Path, default=Path(DEFAULT_DATA_GLOB).parent)
    st = sub.add_parser("stats", help="describe built chat_v2 files")
    st.add_argument("files", type=Path, nargs="+")
    for q in (k, b):
        q.add_argument("--existing", type=Path, nargs="*", default=None,
                       help="data files whose messages and poems are taken (default: every "
                            f"chat file of --out's folder, or {DEFAULT_DATA_GLOB})")
    return p


def _existing(args: argparse.Namespace) -> list[Triplet]:
    if args.existing is not None:
        return read_triplet_files(args.existing, warn=False)
    folder = getattr(args, "out", None)
    files = data_files() if folder is None else sorted(folder.glob(Path(DEFAULT_DATA_GLOB).name))
    return read_triplet_files(files, warn=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        index = load_index(args.index, args.corpus)
        if args.command == "candidates":
            existing = read_triplet_files(data_files(args.existing), warn=False)
            by_text = {c.text: c.id for c in index.values()}
            used = {by_text[t.positive] for t in existing if t.positive in by_text}
            args.out.mkdir(parents=True, exist_ok=True)
            parts = deal_candidates(index, args.slices, args.per_slice, used, args.seed,
                                    args.start, args.poem_rows)
            for k, part in enumerate(parts, start=1):
                path = args.out / f"slice_{k}.jsonl"
                path.write_text("".join(
                    json.dumps({"id": c.id, "text": c.text, "title": c.title, "author": c.author},
                               ensure_ascii=False) + "\n" for c in part), "utf-8")
                print(f"{path}: {len(part)} couplets")
            return 0
        if args.command == "stats":
            built = read_triplet_files(args.files, strict=True)
            for path in args.files:
                print(f"{path}: {len(read_triplet_files([path], strict=True))} rows")
            print(stats(built, index))
            return 0
        rows, problems = read_raw(args.raw)
        problems += check_rows(rows, index, _existing(args))
        for line in problems:
            print(line)
        if args.command == "check":
            print(f"{len(rows)} rows, {len(problems)} problems", file=sys.stderr)
            return 1 if problems else 0
        bad = {line.split(": ", 1)[0] for line in problems}
        good = [r for r in rows if r.where not in bad]
        built = build_rows(good, index)
        paths = write_files(built, args.out)
        print(f"wrote {len(built)} rows to {len(paths)} files in {args.out} "
              f"({len(rows) - len(good)} rows with problems left out, "
              f"{len(good) - len(built)} without a negative)", file=sys.stderr)
        return 0
    except PoemragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
