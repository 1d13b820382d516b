"""Peak resident memory of another process, split into anonymous and file-backed pages.

    python -m bench.rss_watch PID [--every 0.2]

Samples ``/proc/PID/status`` (``RssAnon``, ``RssFile``) until PID exits or, when stdin is a
pipe, a line arrives on it (or it closes), then prints one JSON object of peaks in MiB.
A separate process, because the engine's native calls (segment optimisation, HNSW build)
hold the GIL: a sampling thread inside the measured process does not run while they do, and
misses their peaks. File-backed pages are memory-mapped store files: the kernel can drop
them under memory pressure, anonymous pages it cannot.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import stat
import sys
import time
from pathlib import Path

FIELDS = ("RssAnon", "RssFile")


def read_status(pid: int | str, fields: tuple[str, ...] = FIELDS) -> dict[str, int] | None:
    """``fields`` of ``/proc/PID/status`` (PID may be ``"self"``) in MiB, or None once the
    process has exited (gone, or a zombie its parent has not reaped yet)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "State" and value.split()[0] in ("Z", "X"):
            return None
        if key in fields:
            out[key] = int(value.split()[0]) // 1024
    return out


def watch(pid: int, every_s: float) -> dict[str, int]:
    """Peaks until ``pid`` exits or a piped stdin has a line (or closes)."""
    piped = stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)
    peak = dict.fromkeys(FIELDS, 0)
    peak_sum = 0
    while (sample := read_status(pid)) is not None:
        for key, value in sample.items():
            peak[key] = max(peak[key], value)
        peak_sum = max(peak_sum, sum(sample.values()))
        if piped and select.select([sys.stdin], [], [], every_s)[0]:
            break
        if not piped:
            time.sleep(every_s)
    return {**{f"peak_{k}_mb": v for k, v in peak.items()}, "peak_sampled_total_mb": peak_sum}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rss_watch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pid", type=int)
    parser.add_argument("--every", type=float, default=0.2, help="seconds between samples")
    args = parser.parse_args(argv)
    print(json.dumps(watch(args.pid, args.every)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
