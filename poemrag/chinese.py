"""Traditional → simplified Chinese conversion (OpenCC ``t2s``)."""

from __future__ import annotations

from functools import lru_cache

import opencc


@lru_cache(maxsize=1)
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Convert traditional Chinese to simplified Chinese with OpenCC's ``t2s`` profile."""
    return _converter().convert(text)
