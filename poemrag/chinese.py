"""Chinese text: the Han character class, and traditional → simplified conversion (OpenCC ``t2s``)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
"""Character-class body of the Chinese characters (CJK unified ideographs, extensions A-G,
compatibility ideographs)."""

HAN_RE = re.compile(f"[{HAN}]")


@lru_cache(maxsize=1)
def _converter() -> Any:  # opencc.OpenCC, imported on first use: HAN_RE users need no OpenCC
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Convert traditional Chinese to simplified Chinese with OpenCC's ``t2s`` profile."""
    return _converter().convert(text)
