"""Export a sentence-transformers encoder to ONNX for fastembed, optionally int8.

``python -m training.export MODEL_DIR --out DIR [--int8]``

The model must be ``Transformer -> Pooling(mean) -> [Dense(identity)] -> Normalize``.
fastembed mean-pools the graph's token outputs and normalises, so the graph mean-pools the
hidden states itself, applies the Dense once per text and returns that vector at every
unpadded token position (``last_hidden_state``, ``[batch, seq, dim]``, zero at padding): its
masked mean is the vector itself, and fastembed gives exactly what sentence-transformers
gives. (Applying the identity-activation Dense to every token before pooling, as the default
model's export does, is equivalent, with a 384x1792 product per token instead of per text.)
The output directory holds ``model.onnx``, the tokenizer and configs, the model card and
``poemrag_model.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poemrag.encoders import MODEL_INFO_FILE, ONNX_FILE
from poemrag.errors import ModelError, PoemragError

OPSET = 17
COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "config.json", "config_sentence_transformers.json", "README.md")
INT8_OP_TYPES = ("MatMul", "Gather")
"""Dynamic int8: the MatMuls (encoder and folded Dense) and the embedding Gathers."""
FP16_NODES = re.compile(r"layer\.\d+/output/dense/MatMul$")
"""FFN output projections: their GELU inputs have outliers that per-tensor dynamic int8
handles badly (mean cosine 0.9965 -> 0.9990 when they are kept). Their weights are stored
as fp16 (cast to fp32 when the session loads), which keeps the file under 50 MB."""
CHECK_TEXTS = ("床前明月光，疑是地上霜。", "今天加班到很晚，好累啊", "举头望明月，低头思故乡。",
               "下雨了，想家", "hello 世界 123", "春眠不觉晓")


def _folded_module(st: Any) -> Any:
    """``torch.nn.Module``: (ids, mask, types) -> Dense(mean of the token hidden states),
    repeated over the sequence."""
    import torch
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    mods = list(st)
    if not mods or not isinstance(mods[0], Transformer):
        raise ModelError("unknown model layout: the first module is not a Transformer")
    if len(mods) < 2 or not isinstance(mods[1], Pooling) or \
            mods[1].get_config_dict().get("pooling_mode") not in ("mean", ["mean"], ("mean",)):
        raise ModelError("unknown model layout: the second module is not mean Pooling")
    rest = mods[2:]
    dense = rest.pop(0) if rest and isinstance(rest[0], Dense) else None
    if len(rest) != 1 or not isinstance(rest[0], Normalize):
        raise ModelError("unknown model layout: expected [Dense] then Normalize after Pooling")
    if dense is not None and not isinstance(dense.activation_function, torch.nn.Identity):
        raise ModelError("cannot fold a Dense layer whose activation is not the identity")

    class Folded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = mods[0].model
            self.dense = dense.linear if dense is not None else torch.nn.Identity()

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return self.dense(pooled).unsqueeze(1) * mask  # zero at padding, like the mask

    return Folded().eval()


def _export_fp32(st: Any, path: Path, opset: int) -> None:
    import torch

    folded = _folded_module(st)
    enc = st.tokenizer(["床前明月光", "今天好累啊，想家了"], padding=True, return_tensors="pt")
    args = tuple(enc[k] if k in enc else torch.zeros_like(enc["input_ids"])
                 for k in ("input_ids", "attention_mask", "token_type_ids"))
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(folded, args, str(path), dynamo=False, opset_version=opset,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                        "token_type_ids": axes, "last_hidden_state": axes},
                          do_constant_folding=True)


def quantize_int8(src: Path, dst: Path, op_types: Sequence[str] = INT8_OP_TYPES,
                  fp16_nodes: re.Pattern[str] = FP16_NODES) -> None:
    """Dynamic int8 quantization of ``op_types``, 8-bit weights per output channel; MatMuls
    whose name matches ``fp16_nodes`` keep float weights, stored as fp16.

    Unsigned 8-bit weights: on AVX2 CPUs without VNNI, onnxruntime's u8 x s8 kernel can
    saturate and loses accuracy (mean cosine 0.9949 vs 0.9965 for u8 x u8)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    keep = [n.name for n in model.graph.node if n.op_type == "MatMul" and fp16_nodes.search(n.name)]
    quantize_dynamic(src, dst, op_types_to_quantize=list(op_types), nodes_to_exclude=keep,
                     weight_type=QuantType.QUInt8, per_channel=True)
    quantized = onnx.load(str(dst))
    _weights_to_fp16(quantized, set(keep))
    onnx.save(quantized, str(dst))


def _weights_to_fp16(model: Any, node_names: set[str]) -> None:
    """Store the constant weight of the named MatMuls as fp16, with a Cast back to fp32."""
    from onnx import TensorProto, helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes = list(model.graph.node)
    for node in nodes:
        if node.name not in node_names or node.input[1] not in inits:
            continue
        weight = inits[node.input[1]]
        half = numpy_helper.from_array(numpy_helper.to_array(weight).astype(np.float16),
                                       weight.name + "_fp16")
        model.graph.initializer.remove(weight)
        model.graph.initializer.append(half)
        cast = helper.make_node("Cast", [half.name], [weight.name], name=weight.name + "_cast",
                                to=TensorProto.FLOAT)
        model.graph.node.insert(list(model.graph.node).index(node), cast)


def _load_st(model_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    if not (model_dir / "modules.json").is_file():
        raise ModelError(f"not a sentence-transformers model directory: {model_dir}")
    return SentenceTransformer(str(model_dir), device="cpu")


def export_onnx(model_dir: Path, out_dir: Path, *, int8: bool = False, opset: int = OPSET,
                base: str | None = None) -> Path:
    """Export ``model_dir`` to ``out_dir`` (fp32, or int8 with ``int8=True``); returns it."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    st = _load_st(model_dir)
    dim = int(st.get_embedding_dimension())
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="poemrag-export-") as tmp:
        fp32 = Path(tmp) / ONNX_FILE
        _export_fp32(st, fp32, opset)
        if int8:
            quantize_int8(fp32, out_dir / ONNX_FILE)
        else:
            shutil.copyfile(fp32, out_dir / ONNX_FILE)
    for name in COPIED_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out_dir / name)
    info = {"dim": dim, "pooling": "mean", "normalize": True,
            "max_length": int(st.max_seq_length), "prompts": dict(st.prompts),
            "base": base or _base_name(model_dir), "source": str(model_dir),
            "quantization": "int8" if int8 else "none",
            "onnx_opset": opset}
    _write_info(out_dir, info)
    card = out_dir / "README.md"
    if card.is_file():
        card.write_text(card.read_text(encoding="utf-8").rstrip() + "\n\n" + _export_section(info),
                        encoding="utf-8")
    return out_dir


def _write_info(out_dir: Path, info: dict[str, Any]) -> None:
    text = json.dumps(info, ensure_ascii=False, indent=2) + "\n"
    (out_dir / MODEL_INFO_FILE).write_text(text, encoding="utf-8")


def _export_section(info: dict[str, Any]) -> str:
    if info["quantization"] == "int8":
        how = ("dynamic int8 (onnxruntime `quantize_dynamic`): MatMul weights 8-bit unsigned\n"
               "per output channel, embedding tables 8-bit per tensor, activations quantized\n"
               "per tensor at run time; the FFN output projections keep float weights (fp16)")
    else:
        how = "fp32, no quantization"
    q, d = info["prompts"].get("query", ""), info["prompts"].get("document", "")
    return f"""## ONNX export

`model.onnx` (opset {info["onnx_opset"]}) returns `last_hidden_state`, `[batch, seq,
{info["dim"]}]`: the Dense layer applied to the masked mean of the token hidden states, at every
unpadded token position (zero at padding). fastembed's mean pooling over the attention mask
gives that vector back, and L2 normalisation the sentence embedding (exactly what
sentence-transformers computes). Weights:
{how}.

```python
from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType

TextEmbedding.add_custom_model(model="poemrag/poemrag-zh-{info["dim"]}",
    pooling=PoolingType.MEAN, normalization=True,
    sources=ModelSource(hf="poemrag/poemrag-zh-{info["dim"]}"), dim={info["dim"]},
    model_file="model.onnx")
model = TextEmbedding(model_name="poemrag/poemrag-zh-{info["dim"]}",
                      specific_model_path="THIS_DIR", local_files_only=True)
vectors = list(model.embed(["{q}今天加班到很晚，好累", "{d}床前明月光，疑是地上霜。"]))
```

The prompts (`poemrag_model.json`) are not added by fastembed: prefix queries with
`{q}` and couplets with `{d}`.
"""


def _base_name(model_dir: Path) -> str:
    report = model_dir / "bootstrap_report.json"
    if report.is_file():
        return str(json.loads(report.read_text(encoding="utf-8")).get("base", model_dir.name))
    return model_dir.name


def compare_with_st(model_dir: Path, onnx_dir: Path,
                    texts: Sequence[str] = CHECK_TEXTS) -> dict[str, float]:
    """Max abs difference and min cosine of fastembed vs sentence-transformers embeddings
    (queries and documents, with their prompts)."""
    ref, got = st_and_onnx_vectors(_load_st(model_dir), onnx_dir, texts)
    return {"max_abs_diff": float(np.abs(ref - got).max()),
            "min_cosine": float(np.min(np.sum(ref * got, axis=1)))}


def st_and_onnx_vectors(st: Any, onnx_dir: Path,
                        texts: Sequence[str] = CHECK_TEXTS) -> tuple[np.ndarray, np.ndarray]:
    """The sentence-transformers model's and the ONNX export's vectors of ``texts`` as queries
    and as documents, each with its model's prompts."""
    from poemrag.encoders import OnnxEncoder

    fe = OnnxEncoder(Path(onnx_dir))
    ref = np.concatenate([st.encode(list(texts), prompt_name=p, normalize_embeddings=True)
                          for p in ("query", "document")])
    got = fe.encode([p + t for p in (fe.query_prompt, fe.document_prompt) for t in texts], 64)
    return ref, got


_PARITY_FORMATS: dict[str, Callable[[float], str]] = {
    "max_abs_diff": lambda v: f"max abs diff {v:.2e}",
    "min_cosine": lambda v: f"min cosine {v:.6f}",
    "same_order": lambda v: f"same order {'yes' if v else 'NO'}",
}


def run_export_cli(argv: list[str] | None, *, prog: str, doc: str | None, model_help: str,
                   export: Callable[..., Path], compare: Callable[[Path, Path], dict[str, float]],
                   reference: str) -> int:
    """The command line shared by the encoder's and the reranker's export: export, check the
    export against ``reference`` (the training framework's own scores), record the check as
    ``parity_vs_<reference>`` in the model info, print two lines."""
    p = argparse.ArgumentParser(prog=prog, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help=model_help)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--int8", action="store_true", help="dynamic int8 quantization")
    p.add_argument("--opset", type=int, default=OPSET)
    args = p.parse_args(argv)
    t0 = time.time()
    try:
        out = export(args.model, args.out, int8=args.int8, opset=args.opset)
        stats = compare(args.model, out)
        info = json.loads((out / MODEL_INFO_FILE).read_text(encoding="utf-8"))
        info["parity_vs_" + reference.replace("-", "_")] = {
            k: round(v, 8) for k, v in stats.items()}
        _write_info(out, info)
    except (PoemragError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = (out / ONNX_FILE).stat().st_size / 2**20
    print(f"exported {out / ONNX_FILE} ({size:.1f} MiB, {'int8' if args.int8 else 'fp32'}) "
          f"in {time.time() - t0:.0f}s")
    print(f"vs {reference}: " + ", ".join(_PARITY_FORMATS[k](v) for k, v in stats.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_export_cli(
        argv, prog="python -m training.export", doc=__doc__,
        model_help="sentence-transformers model directory", export=export_onnx,
        compare=compare_with_st, reference="sentence-transformers")


if __name__ == "__main__":
    sys.exit(main())
