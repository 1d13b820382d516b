"""Where an embedded-store ingest's memory goes: anonymous vs memory-mapped file pages.

    python -m bench.store_memory [--points 40000] [--dim 1792]

Writes ``--points`` random unit vectors (with couplet-sized payloads) through
:class:`poemrag.edge_store.EdgeStore` into a temporary directory, then runs ``finish()``
(segment optimisation + HNSW build), sampling this process's ``RssAnon`` and ``RssFile``
every 0.2 s from a :mod:`bench.rss_watch` child process, and the kernel's peak total RSS
(``VmHWM``, the max RSS ``/usr/bin/time`` reports) after each phase. No encoder is involved.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np

from bench.rss_watch import FIELDS, read_status
from poemrag.batching import batched
from poemrag.cli import run_cli
from poemrag.edge_store import EdgeStore

HWM = "VmHWM"
"""The kernel's own peak of total RSS: it catches spikes between samples."""


def rss_mb() -> dict[str, int]:
    """This process's resident anonymous and file-backed memory and its peak, MiB (Linux)."""
    return read_status("self", (*FIELDS, HWM)) or {}


class PeakSampler:
    """Peaks of this process's ``RssAnon``/``RssFile`` over a block, sampled by a
    :mod:`bench.rss_watch` child process (a thread here would be starved by the GIL)."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s = every_s
        self.peak = dict.fromkeys(FIELDS, 0)
        self._watch: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self._watch = subprocess.Popen(
            [sys.executable, "-m", "bench.rss_watch", str(os.getpid()),
             "--every", str(self.every_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watch is None:
            return
        out, _ = self._watch.communicate("stop\n", timeout=30)
        peaks = json.loads(out)
        self.peak = {key: int(peaks[f"peak_{key}_mb"]) for key in FIELDS}


def payload(i: int) -> dict:
    return {
        "page_content": "明月照高楼，流光正徘徊。",
        "metadata": {"title": "题", "author": "李白", "dynasty": "唐", "poem_id": f"p{i // 8}",
                     "line": i % 8, "form": "五言", "tags": [], "text_traditional": "明月照高樓"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_memory", description=__doc__)
    parser.add_argument("--points", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=1792)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    result: dict[str, object] = {"points": args.points, "dim": args.dim}
    with tempfile.TemporaryDirectory(prefix="poemrag-store-memory-") as tmp:
        store = EdgeStore(Path(tmp) / "poems")
        store.ensure_collection(args.dim, model="random")
        started = time.perf_counter()
        with PeakSampler() as writes:
            for ids in batched(list(range(args.points)), args.batch):
                vectors = rng.normal(size=(len(ids), args.dim)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                store.upsert(ids, vectors, [payload(i) for i in ids])
        result["upsert_s"] = round(time.perf_counter() - started, 1)
        result["upserts_peak_total_mb"] = rss_mb()[HWM]
        started = time.perf_counter()
        with PeakSampler() as finish:
            store.finish()
        result["finish_s"] = round(time.perf_counter() - started, 1)
        result["finish_peak_total_mb"] = rss_mb()[HWM]
        store.close()
    for phase, sampler in (("upserts", writes), ("finish", finish)):
        for key, value in sampler.peak.items():
            result[f"{phase}_peak_{key}_mb"] = value
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
