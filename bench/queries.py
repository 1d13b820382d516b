"""Chat-style benchmark queries: the anchors of the authored chat data, in a fixed order."""

from __future__ import annotations

import json
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "training" / "data"


def chat_queries(n: int) -> list[str]:
    """The first ``n`` anchors of training/data/chat_*.jsonl, interleaving the files."""
    per_file = [
        [json.loads(line)["anchor"] for line in path.read_text(encoding="utf-8").splitlines() if line]
        for path in sorted(DATA_DIR.glob("chat_*.jsonl"))
    ]
    mixed = [q for group in zip(*per_file) for q in group] if per_file else []
    if len(mixed) < n:
        raise SystemExit(f"only {len(mixed)} chat queries in {DATA_DIR}, {n} requested")
    return mixed[:n]
