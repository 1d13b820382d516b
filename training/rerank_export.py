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

import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poemrag.encoders import ONNX_FILE
from poemrag.errors import ModelError
from poemrag.reranker import FEEDS, KIND, PoemReranker
from training.export import OPSET, _write_info, quantize_int8, run_export_cli

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
    return run_export_cli(
        argv, prog="python -m training.rerank_export", doc=__doc__,
        model_help="CrossEncoder directory (python -m training.rerank)", export=export_reranker,
        compare=compare_with_ce, reference="cross-encoder")


if __name__ == "__main__":
    sys.exit(main())
