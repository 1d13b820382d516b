"""Export a sentence-transformers ``CrossEncoder`` (one label) to ONNX for poemrag's reranker.

``python -m training.rerank_export MODEL_DIR --out DIR [--int8]``

The graph takes ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer
makes them) and returns ``logits``, ``[batch, 1]``: the raw score that
``CrossEncoder.predict(..., activation_fn=Identity())`` gives. The output directory holds
``model.onnx``, the tokenizer and configs, the model card and ``poemrag_model.json`` (``"kind":
"cross-encoder"``, the max length and the padding token), which
:class:`poemrag.reranker.PoemReranker` loads. int8 is the encoder's recipe
(:func:`training.export.quantize_int8`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poemrag.errors import ModelError, PoemragError
from poemrag.reranker import FEEDS, INFO_FILE, KIND, ONNX_FILE, PoemReranker
from training.export import OPSET, _write_info, quantize_int8

COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "config.json", "README.md")
CHECK_PAIRS = (("一个人在外地过中秋，特别想家", "举头望明月，低头思故乡。"),
               ("一个人在外地过中秋，特别想家", "白日依山尽，黄河入海流。"),
               ("下班后和同事去吃火锅", "绿蚁新醅酒，红泥小火炉。"),
               ("毕业了，和室友在站台上告别", "海内存知己，天涯若比邻。"),
               ("hello 世界 123", "床前明月光，疑是地上霜。"),
               ("好累", "春眠不觉晓，处处闻啼鸟。"))


def load_cross_encoder(model_dir: Path) -> Any:
    """A saved one-label ``CrossEncoder``; anything else is a one-line :class:`ModelError`."""
    from sentence_transformers.cross_encoder import CrossEncoder

    if not (Path(model_dir) / "config.json").is_file():
        raise ModelError(f"not a cross-encoder directory (no config.json): {model_dir}")
    try:
        ce = CrossEncoder(str(model_dir), device="cpu")
    except Exception as exc:  # noqa: BLE001 - any load failure becomes one line
        detail = str(exc).strip().splitlines()
        raise ModelError(f"cannot load cross-encoder {model_dir}: "
                         f"{detail[0] if detail else type(exc).__name__}") from None
    if ce.num_labels != 1:
        raise ModelError(f"{model_dir} has {ce.num_labels} labels; a reranker has one")
    return ce


def _export_fp32(ce: Any, path: Path, opset: int) -> list[str]:
    """Write the logits graph to ``path``; returns its input names."""
    import torch

    enc = ce.tokenizer([["床前明月光", "今天好累啊，想家了"], ["春眠", "周末睡到自然醒"]],
                       padding=True, return_tensors="pt")
    names = [name for name in FEEDS if name in enc]
    model = ce.model

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(names, tensors, strict=True))).logits

    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(Logits().eval(), tuple(enc[n] for n in names), str(path),
                          dynamo=False, opset_version=opset, input_names=names,
                          output_names=["logits"],
                          dynamic_axes={**{n: axes for n in names}, "logits": {0: "batch"}},
                          do_constant_folding=True)
    return names


def export_reranker(model_dir: Path, out_dir: Path, *, int8: bool = False,
                    opset: int = OPSET) -> Path:
    """Export the cross-encoder in ``model_dir`` to ``out_dir`` (fp32, or int8); returns it."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    ce = load_cross_encoder(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="poemrag-rerank-export-") as tmp:
        fp32 = Path(tmp) / ONNX_FILE
        inputs = _export_fp32(ce, fp32, opset)
        if int8:
            quantize_int8(fp32, out_dir / ONNX_FILE)
        else:
            shutil.copyfile(fp32, out_dir / ONNX_FILE)
    for name in COPIED_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out_dir / name)
    if not (out_dir / "tokenizer.json").is_file():
        ce.tokenizer.save_pretrained(str(out_dir))  # a fast tokenizer writes tokenizer.json
    tok = ce.tokenizer
    _write_info(out_dir, {
        "kind": KIND, "score": "logit", "max_length": int(ce.max_seq_length),
        "pad_token": tok.pad_token, "pad_token_id": int(tok.pad_token_id), "inputs": inputs,
        "source": str(model_dir), "quantization": "int8" if int8 else "none",
        "onnx_opset": opset,
    })
    return out_dir


def compare_with_ce(model_dir: Path, onnx_dir: Path,
                    pairs: Sequence[tuple[str, str]] = CHECK_PAIRS) -> dict[str, float]:
    """Largest difference of the export's scores from the ``CrossEncoder``'s, and whether both
    order every query's candidates the same way."""
    import torch

    ref = np.asarray(load_cross_encoder(model_dir).predict(
        [list(p) for p in pairs], activation_fn=torch.nn.Identity(), convert_to_numpy=True),
        np.float32).reshape(-1)
    got = PoemReranker(model=str(onnx_dir)).score_pairs(list(pairs))
    same_order = all(
        np.array_equal(np.argsort(-ref[rows], kind="stable"), np.argsort(-got[rows], kind="stable"))
        for q in dict.fromkeys(p[0] for p in pairs)
        for rows in [[i for i, p in enumerate(pairs) if p[0] == q]])
    return {"max_abs_diff": float(np.abs(ref - got).max()), "same_order": float(same_order)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.rerank_export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="CrossEncoder directory (python -m training.rerank)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--int8", action="store_true", help="dynamic int8 quantization")
    p.add_argument("--opset", type=int, default=OPSET)
    args = p.parse_args(argv)
    t0 = time.time()
    try:
        out = export_reranker(args.model, args.out, int8=args.int8, opset=args.opset)
        stats = compare_with_ce(args.model, out)
    except (PoemragError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = json.loads((out / INFO_FILE).read_text(encoding="utf-8"))
    info["parity_vs_cross_encoder"] = {k: round(v, 8) for k, v in stats.items()}
    _write_info(out, info)
    size = (out / ONNX_FILE).stat().st_size / 2**20
    print(f"exported {out / ONNX_FILE} ({size:.1f} MiB, {'int8' if args.int8 else 'fp32'}) "
          f"in {time.time() - t0:.0f}s")
    print(f"vs CrossEncoder: max abs diff {stats['max_abs_diff']:.2e}, "
          f"same order {'yes' if stats['same_order'] else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
