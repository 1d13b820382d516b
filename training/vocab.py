"""Trim XLM-R's 250k-piece vocabulary to what Chinese needs, and add missing characters.

Keeping every piece that the Viterbi segmentation of a text uses keeps that text's
tokenization identical (the best path survives; only alternatives disappear), provided
the lowest piece score, which sets the score of ``<unk>``, is kept too.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

_HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))
MAX_COMMON_HAN = 4
MAX_COMMON_ASCII = 3


def is_han(ch: str) -> bool:
    """A CJK unified (or compatibility) ideograph."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _HAN_RANGES)


def _is_punct_or_symbol(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def is_common_piece(piece: str) -> bool:
    """Short pieces a Chinese chat message may need even if no training text used them.

    After an optional leading ``▁``: any single character (Han, kana, punctuation, emoji,
    letters of any script), up to 4 Han characters, up to 3 ASCII letters/digits, or up to
    3 characters mixing Han and punctuation.
    """
    body = piece.removeprefix("▁")
    if len(body) <= 1:
        return True
    if all(is_han(c) for c in body):
        return len(body) <= MAX_COMMON_HAN
    if all(c.isascii() and c.isalnum() for c in body):
        return len(body) <= MAX_COMMON_ASCII
    if all(is_han(c) or _is_punct_or_symbol(c) for c in body):
        return len(body) <= 3
    return False


@dataclass
class TokenStats:
    """Pieces used and ``<unk>`` counts over a set of texts."""

    used: set[int]
    tokens: int = 0
    unk_tokens: int = 0
    texts: int = 0
    texts_with_unk: int = 0
    unk_chars: Counter[str] | None = None

    @property
    def unk_token_rate(self) -> float:
        return self.unk_tokens / max(self.tokens, 1)

    @property
    def unk_text_rate(self) -> float:
        return self.texts_with_unk / max(self.texts, 1)

    def summary(self) -> dict[str, float | int]:
        """JSON-friendly counts and rates."""
        return {"texts": self.texts, "tokens": self.tokens, "unk_tokens": self.unk_tokens,
                "unk_token_rate": round(self.unk_token_rate, 6),
                "texts_with_unk": self.texts_with_unk,
                "unk_text_rate": round(self.unk_text_rate, 6)}


def token_stats(tok: Tokenizer, texts: Sequence[str], unk_id: int,
                batch: int = 4096) -> TokenStats:
    """Encode ``texts``; collect used piece ids, ``<unk>`` rates and the characters that
    became ``<unk>`` (normalized, counted per occurrence)."""
    stats = TokenStats(used=set(), unk_chars=Counter())
    normalize = tok.normalizer.normalize_str if tok.normalizer else (lambda s: s)
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        for text, enc in zip(chunk, tok.encode_batch(list(chunk), add_special_tokens=False),
                             strict=True):
            ids = enc.ids
            stats.used.update(ids)
            stats.texts += 1
            stats.tokens += len(ids)
            n_unk = 0
            for tid, (a, b) in zip(ids, enc.offsets, strict=True):
                if tid == unk_id:
                    n_unk += 1
                    for ch in normalize(text[a:b]):
                        if not ch.isspace():
                            stats.unk_chars[ch] += 1
            stats.unk_tokens += n_unk
            stats.texts_with_unk += n_unk > 0
    return stats


def select_pieces(pieces: Sequence[str], scores: np.ndarray, used: Iterable[int],
                  specials: Iterable[int],
                  keep: Callable[[str], bool] = is_common_piece) -> list[int]:
    """Sorted original ids to keep: specials, ``used``, the lowest-scoring piece (it fixes
    the ``<unk>`` score) and every piece ``keep`` accepts."""
    chosen = set(used) | set(specials) | {int(np.argmin(scores))}
    chosen.update(i for i, p in enumerate(pieces) if keep(p))
    return sorted(chosen)


@dataclass(frozen=True)
class NewChar:
    """A character added to the vocabulary and where its embedding came from."""

    char: str
    count: int
    init_from: str  # the variant character used, or "" for the mean of Han characters


def plan_new_chars(unk_chars: Counter[str], index: dict[str, int],
                   variants: Sequence[Callable[[str], str]],
                   min_count: int = 1) -> list[NewChar]:
    """Characters to add (most frequent first) and the in-vocabulary variant to copy, if any."""
    out: list[NewChar] = []
    for ch, count in sorted(unk_chars.items(), key=lambda kv: (-kv[1], kv[0])):
        if count < min_count or ch in index:
            continue
        source = ""
        for convert in variants:
            alt = convert(ch)
            if alt != ch and len(alt) == 1 and alt in index:
                source = alt
                break
        out.append(NewChar(ch, count, source))
    return out


def han_mean(pieces: Sequence[str], emb: np.ndarray) -> np.ndarray:
    """Mean embedding of the single-Han-character pieces."""
    rows = [i for i, p in enumerate(pieces) if len(p) == 1 and is_han(p)]
    return emb[rows].mean(axis=0)


def build_embeddings(full_emb: np.ndarray, full_pieces: Sequence[str], kept: Sequence[int],
                     new_chars: Sequence[NewChar]) -> np.ndarray:
    """Embedding matrix for ``kept`` ids followed by ``new_chars`` (variant or Han mean)."""
    index = {p: i for i, p in enumerate(full_pieces)}
    mean = han_mean(full_pieces, full_emb)
    extra = [full_emb[index[c.init_from]] if c.init_from else mean for c in new_chars]
    rows = [full_emb[np.asarray(kept)]] + ([np.stack(extra)] if extra else [])
    return np.concatenate(rows).astype(np.float32)


def new_char_score(pieces: Sequence[str], scores: np.ndarray) -> float:
    """Score for an added character: the lowest score of an existing single Han character."""
    han = [float(scores[i]) for i, p in enumerate(pieces) if len(p) == 1 and is_han(p)]
    return min(han) if han else float(np.min(scores))
