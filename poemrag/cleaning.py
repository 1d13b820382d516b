"""Table-driven rules that turn corpus paragraphs into indexable verse.

Two tables, applied in order to each paragraph (traditional characters, as in the corpus):

1. ``EDITS``: editorial marks inside a verse line are removed (variant-reading notes in
   full-width parentheses, restoration brackets around a character). The line stays.
2. ``DROP_RULES``: the first rule that matches drops the paragraph, and its name is counted.
   Paragraphs that survive are verse and get indexed.

Each rule has a name and a one-line reason so a reviewer can read the table alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from poemrag.chinese import HAN, HAN_RE

_VERSE_PUNCT = "，。？！；、："
_CLAUSE_RE = re.compile(f"[^{_VERSE_PUNCT}]+")
_VERSE_CHARS_RE = re.compile(f"^[{HAN}{_VERSE_PUNCT}]+$")

MAX_CLAUSE_CHARS = 13
"""Longest clause a verse line may have; longer runs are prose (commentary)."""


@dataclass(frozen=True)
class Edit:
    name: str
    reason: str
    pattern: re.Pattern[str]
    replacement: str


@dataclass(frozen=True)
class DropRule:
    name: str
    reason: str
    matches: Callable[[str], bool]


EDITS: tuple[Edit, ...] = (
    Edit(
        "inline_note",
        "variant readings and notes inside a line, e.g. 散（《剡錄》作「放」）襟 → 散襟",
        re.compile(r"(?<=[^\s（(])[（(][^（）()]*[）)](?=.)"),
        "",
    ),
    Edit(
        "restoration_brackets",
        "editor's restored characters keep the character, e.g. 燃[蜜]炬 → 燃蜜炬",
        re.compile(r"[\[［]([^\]］]{1,2})[\]］]"),
        r"\1",
    ),
)


def _has_any(chars: str) -> Callable[[str], bool]:
    return lambda text: any(ch in text for ch in chars)


def _is_not_verse_shape(text: str) -> bool:
    if _VERSE_CHARS_RE.match(text) is None:
        return True
    return any(len(c) > MAX_CLAUSE_CHARS for c in clauses(text))


EDITORIAL_MARKERS: tuple[str, ...] = (
    "此詩", "此首", "本書", "二詩", "三詩", "諸詩", "右詩", "詩集", "唐詩", "作品", "作者",
    "初唐", "盛唐", "中唐", "晚唐", "今按", "按：", "原注", "錄示", "俟考", "待考", "附考",
    "存疑", "不錄", "著錄", "收入", "擬作", "所作", "疑非", "疑爲", "當是", "寫定", "輯補",
    "鈔補", "認爲", "可能", "已經", "他們", "我們", "這", "的",
)
"""Words of editors' and modern scholars' prose; verse with them is kept when its clauses are
regular (e.g. 曉渭度簷帆的的，晚原含雨樹重重。)."""


def _is_commentary(text: str) -> bool:
    if not any(marker in text for marker in EDITORIAL_MARKERS):
        return False
    lengths = {len(c) for c in clauses(text)}
    return len(lengths) > 1 or len(clauses(text)) == 1


DROP_RULES: tuple[DropRule, ...] = (
    DropRule("empty", "empty or whitespace only", lambda t: not t.strip()),
    DropRule("no_chinese", "punctuation or symbols only, e.g. 。", lambda t: not HAN_RE.search(t)),
    DropRule(
        "bracketed_note",
        "an editorial note in brackets, e.g. （見影印天一閣藏《正德汝州志》卷七）",
        _has_any("（）()〖〗【】〔〕{}"),
    ),
    DropRule(
        "book_citation",
        "cites a book title, e.g. 又見百卷本《法苑珠林》卷五四。",
        _has_any("《》〈〉"),
    ),
    DropRule(
        "quotation",
        "quotes a reading in 「」 or 『』, e.g. 第七句作「還取同心契」。",
        _has_any("「」『』"),
    ),
    DropRule("lacuna", "has missing characters (□, ○, ●, …)", _has_any("□○●…⿰")),
    DropRule(
        "latin_or_digits",
        "Latin letters or digits belong to modern notes, not to verse",
        lambda t: re.search(r"[A-Za-z0-9Ａ-Ｚａ-ｚ０-９]", t) is not None,
    ),
    DropRule(
        "private_use_char",
        "characters in the Unicode private use area do not display anywhere",
        lambda t: re.search(r"[\ue000-\uf8ff]", t) is not None,
    ),
    DropRule(
        "prose",
        f"clauses longer than {MAX_CLAUSE_CHARS} characters or stray symbols: modern commentary",
        _is_not_verse_shape,
    ),
    DropRule(
        "commentary",
        "editorial words (此詩, 本書, 俟考, 的…) in irregular clauses, "
        "e.g. 今收入先宋詩，以俟考定。",
        _is_commentary,
    ),
)


@dataclass
class CleaningReport:
    """How many paragraphs were read, kept, edited and dropped (per rule)."""

    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    edited: Counter[str] = field(default_factory=Counter)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "read": self.read,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "edited": dict(self.edited),
        }


def apply_edits(text: str, report: CleaningReport | None = None) -> str:
    """Apply :data:`EDITS` to a paragraph and strip surrounding white space."""
    text = text.strip()
    for edit in EDITS:
        new = edit.pattern.sub(edit.replacement, text)
        if new != text and report is not None:
            report.edited[edit.name] += 1
        text = new
    return text


def drop_reason(text: str) -> str | None:
    """Name of the first :data:`DROP_RULES` rule that drops ``text``, or None if it is verse."""
    for rule in DROP_RULES:
        if rule.matches(text):
            return rule.name
    return None


def clean_paragraph(text: str, report: CleaningReport | None = None) -> str | None:
    """The indexable verse text of a paragraph, or None when a rule drops it."""
    if report is not None:
        report.read += 1
    edited = apply_edits(text, report)
    reason = drop_reason(edited)
    if report is not None:
        if reason is None:
            report.kept += 1
        else:
            report.dropped[reason] += 1
    return None if reason else edited


def clauses(text: str) -> list[str]:
    """The clauses of a verse line, split on Chinese punctuation."""
    return _CLAUSE_RE.findall(text)
