"""Encode throughput of an exported ONNX encoder on corpus couplets, through the encoder the
product uses (:class:`poemrag.encoders.OnnxEncoder`: fastembed, batches in length order).

``python -m training.bench_encoder ONNX_DIR [--corpus PATH] [--n 2048] [--batch 64]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from poemrag.encoders import OnnxEncoder
from poemrag.errors import PoemragError


def couplets_per_second(onnx_dir: Path, texts: Sequence[str], batch_size: int = 64,
                        threads: int | None = None) -> tuple[float, float]:
    """Documents (with the document prompt) encoded per wall-clock second and per CPU
    second of this process, after one warm-up batch."""
    model = OnnxEncoder(Path(onnx_dir), threads=threads)
    docs = [model.document_prompt + t for t in texts]
    model.encode(docs[:batch_size], batch_size)
    start, cpu = time.perf_counter(), time.process_time()
    n = len(model.encode(docs, batch_size))
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.bench_encoder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="exported ONNX directory")
    p.add_argument("--corpus", type=Path, help="chinese-poetry tarball or dir (default: pinned)")
    p.add_argument("--n", type=int, default=2048, help="couplets to encode")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    args = p.parse_args(argv)
    try:
        from poemrag.corpus import load_corpus

        texts = [c.text for c in load_corpus(args.corpus, limit=args.n).couplets()]
        rate, per_cpu = couplets_per_second(args.model, texts, args.batch, args.threads)
    except (PoemragError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    print(f"{rate:.1f} couplets/s, {per_cpu:.1f} per CPU-second ({len(texts)} couplets, "
          f"batch {args.batch}, {os.cpu_count()} CPUs, load average {load:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
