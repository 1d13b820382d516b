"""Make a shallower student from a sentence-transformers encoder by keeping some of its layers.

    python -m training.prune MODEL --layers 6 --out DIR

Keeps ``--layers`` transformer layers spread evenly from the first to the last (or exactly
``--keep 0,3,7,11``), with the embeddings, pooling, Dense and prompts unchanged, so the student
makes vectors of the same size and starts close to its teacher. Encoding time is roughly
proportional to the layer count: a 4-layer student of the 12-layer packaged model is the route
to the ingest-throughput targets. Fine-tune the student as usual (``training.train --base DIR``)
and ship it only if it beats the packaged model on ``training.evaluate``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from poemrag.errors import ModelError, PoemragError


def spread(total: int, count: int) -> list[int]:
    """``count`` layer indexes spread evenly over ``range(total)``, first and last included."""
    if not 1 <= count <= total:
        raise ModelError(f"cannot keep {count} of {total} layers")
    if count == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def _encoder_layers(st: Any) -> Any:
    auto = st[0].auto_model
    layers = getattr(getattr(auto, "encoder", None), "layer", None)
    if layers is None:
        raise ModelError("unknown model layout: no encoder.layer list in the transformer")
    return auto, layers


def _choose(total: int, keep: Sequence[int] | None, layers: int | None) -> list[int]:
    chosen = sorted(set(keep)) if keep else spread(total, total if layers is None else layers)
    if not chosen or chosen[0] < 0 or chosen[-1] >= total:
        raise ModelError(f"layer indexes must lie in 0..{total - 1}: {chosen}")
    return chosen


def prune(model_dir: Path, out_dir: Path, keep: Sequence[int] | None = None,
          layers: int | None = None) -> list[int]:
    """Save a copy of ``model_dir`` with only the ``keep`` layers (or ``layers`` spread ones)."""
    import torch
    from sentence_transformers import SentenceTransformer

    if not (Path(model_dir) / "modules.json").is_file():
        raise ModelError(f"not a sentence-transformers model directory: {model_dir}")
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    chosen = _choose(int(config.get("num_hidden_layers", 0)), keep, layers)
    st = SentenceTransformer(str(model_dir), device="cpu")
    auto, current = _encoder_layers(st)
    if len(current) != int(config.get("num_hidden_layers", 0)):
        chosen = _choose(len(current), keep, layers)
    auto.encoder.layer = torch.nn.ModuleList([current[i] for i in chosen])
    auto.config.num_hidden_layers = len(chosen)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    st.save(str(out_dir), create_model_card=False)
    return chosen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.prune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="sentence-transformers model directory")
    p.add_argument("--out", type=Path, required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--layers", type=int, help="how many layers to keep, spread evenly")
    group.add_argument("--keep", help="comma-separated layer indexes to keep, e.g. 0,4,8,11")
    args = p.parse_args(argv)
    try:
        keep = [int(x) for x in args.keep.split(",")] if args.keep else None
    except ValueError:
        print("error: --keep takes comma-separated integers", file=sys.stderr)
        return 2
    try:
        chosen = prune(args.model, args.out, keep=keep, layers=args.layers)
    except PoemragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"kept layers {chosen} of {args.model} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
