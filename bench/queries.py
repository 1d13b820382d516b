"""Chat-style benchmark queries: the anchors of the authored chat data, in a fixed order."""

from __future__ import annotations

import json

from training.data import DEFAULT_DATA_GLOB, data_files


def chat_queries(n: int) -> list[str]:
    """The first ``n`` anchors of the chat data files, interleaving the files."""
    per_file = [
        [json.loads(line)["anchor"] for line in path.read_text(encoding="utf-8").splitlines() if line]
        for path in data_files()
    ]
    mixed = [q for group in zip(*per_file) for q in group] if per_file else []
    if len(mixed) < n:
        raise SystemExit(f"only {len(mixed)} chat queries in {DEFAULT_DATA_GLOB}, {n} requested")
    return mixed[:n]
