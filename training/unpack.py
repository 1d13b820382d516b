"""Rebuild a sentence-transformers model from an exported poemrag ONNX directory.

    python -m training.unpack poemrag/models/poemrag-zh-1792 --out artifacts/unpacked/default

``training.export`` turns ``Transformer -> mean Pooling -> Dense -> Normalize`` into one ONNX
graph (int8 or fp32). This reads the weights back out of that graph: int8 MatMul weights are
dequantized with their per-channel scales and zero points, int8 embedding tables with their
per-tensor ones, fp16 weights widened. The module each weight belongs to is named by its
node (``/encoder/encoder/layer.0/attention/self/query/MatMul_quant``) or initializer
(``encoder.encoder.layer.0.attention.self.query.bias``). The result is a sentence-transformers
directory with the tokenizer, config and prompts of the export, so a packaged model can be
fine-tuned further, or served by sentence-transformers as a same-weights baseline, without
the training run's output. Its vectors match the ONNX model's within the int8 tolerance
(cosine printed and checked against ``--min-cosine``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poemrag.encoders import MODEL_INFO_FILE, ONNX_FILE
from poemrag.errors import ModelError, PoemragError
from training.export import CHECK_TEXTS, st_and_onnx_vectors
from training.st_model import read_prompts

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
MIN_COSINE = 0.98
"""Parity floor against the ONNX model (int8 activations alone cost about 0.005)."""


def _module_of(node_name: str) -> str | None:
    """``encoder.layer.0.attention.self.query`` or ``dense`` for a MatMul node's name."""
    parts = node_name.strip("/").split("/")
    if len(parts) < 2 or not parts[-1].startswith("MatMul"):
        return None
    path = parts[:-1]
    if path[0] == "encoder":
        path = path[1:]
    return ".".join(path)


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """The float32 weights of an exported graph, by ``torch`` parameter name (the BERT's own
    names, and ``dense.weight`` / ``dense.bias`` for the Dense layer)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # The exporter may store a parameter as a Constant node, or as an Identity of another
    # parameter with equal values (e.g. zero biases), under the parameter's name.
    for n in model.graph.node:
        if not n.output[0].startswith(("encoder.", "dense.")):
            continue
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            inits[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type == "Identity" and n.input[0] in inits:
            inits[n.output[0]] = inits[n.input[0]]
    produced_by = {out: n for n in model.graph.node for out in n.output}
    weights: dict[str, np.ndarray] = {}

    def stored(name: str) -> np.ndarray | None:
        """A stored tensor, or one cast from a stored one (fp16 weights); None for activations."""
        if name in inits:
            return inits[name]
        node = produced_by.get(name)
        if node is not None and node.op_type == "Cast" and node.input[0] in inits:
            return inits[node.input[0]]
        return None

    for node in model.graph.node:
        module = _module_of(node.name)
        if node.op_type == "MatMulInteger" and module is not None:
            base = node.input[1].removesuffix("_quantized")
            q, zero = inits[node.input[1]], inits[node.input[3]]
            w = (q.astype(np.float32) - zero.astype(np.float32)) * inits[base + "_scale"]
            weights[f"{module}.weight"] = w.T
        elif node.op_type == "MatMul" and module is not None:
            w = stored(node.input[1])
            if w is not None and w.ndim == 2:
                weights[f"{module}.weight"] = w.astype(np.float32).T
    for name, array in inits.items():
        if name.endswith("_quantized") and f"{name[:-10]}_scale" in inits:
            base = name.removesuffix("_quantized")
            zero = inits[f"{base}_zero_point"].astype(np.float32)
            array = (array.astype(np.float32) - zero) * inits[f"{base}_scale"]
            name = base
        elif name.endswith(("_scale", "_zero_point", "_fp16")) or name.startswith("onnx::"):
            continue
        if name.endswith("_Transposed"):  # a Gemm's [out, in] weight, quantized as [in, out]
            array, name = array.T, name.removesuffix("_Transposed")
        if name.startswith("encoder."):
            weights[name.removeprefix("encoder.")] = array.astype(np.float32)
        elif name.startswith("dense."):
            weights[name] = array.astype(np.float32)
    return weights


def unpack(onnx_dir: Path, out_dir: Path) -> Any:
    """Write the sentence-transformers form of ``onnx_dir`` to ``out_dir``; returns the model."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )
    from transformers import BertConfig, BertModel

    onnx_dir, out_dir = Path(onnx_dir), Path(out_dir)
    if not (onnx_dir / ONNX_FILE).is_file() or not (onnx_dir / "config.json").is_file():
        raise ModelError(f"not an exported poemrag model directory: {onnx_dir}")
    weights = onnx_weights(onnx_dir / ONNX_FILE)
    dense_w, dense_b = weights.pop("dense.weight", None), weights.pop("dense.bias", None)
    config = BertConfig.from_pretrained(str(onnx_dir))
    bert = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
    missing, unexpected = bert.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(f"{onnx_dir}: the graph's weights do not fit a BERT of its config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    with_tokenizer = out_dir / "transformer"
    bert.save_pretrained(str(with_tokenizer))
    for name in TOKENIZER_FILES:
        if (onnx_dir / name).is_file():
            shutil.copyfile(onnx_dir / name, with_tokenizer / name)
    info = json.loads((onnx_dir / MODEL_INFO_FILE).read_text(encoding="utf-8")) \
        if (onnx_dir / MODEL_INFO_FILE).is_file() else {}
    transformer = Transformer(str(with_tokenizer), max_seq_length=int(info.get("max_length", 128)))
    hidden = transformer.get_embedding_dimension()
    modules: list[Any] = [transformer, Pooling(hidden, "mean")]
    if dense_w is not None:
        out_dim = dense_w.shape[0]
        modules.append(Dense(hidden, out_dim, bias=dense_b is not None,
                             activation_function=torch.nn.Identity(),
                             init_weight=torch.from_numpy(np.ascontiguousarray(dense_w)),
                             init_bias=None if dense_b is None else torch.from_numpy(dense_b)))
    modules.append(Normalize())
    st = SentenceTransformer(modules=modules, prompts=read_prompts(onnx_dir), device="cpu")
    st.save(str(out_dir), safe_serialization=True, create_model_card=False)
    shutil.rmtree(with_tokenizer)
    return SentenceTransformer(str(out_dir), device="cpu")


def parity(st: Any, onnx_dir: Path, texts: Sequence[str] = CHECK_TEXTS) -> float:
    """Lowest cosine between the rebuilt model's and the ONNX model's vectors (queries and
    documents, with their prompts)."""
    ref, got = st_and_onnx_vectors(st, onnx_dir, texts)
    return float(np.min(np.sum(ref * got, axis=1)))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.unpack", description=__doc__.split("\n")[0])
    p.add_argument("model", type=Path, help="exported ONNX model directory (e.g. a packaged one)")
    p.add_argument("--out", type=Path, required=True, help="sentence-transformers output directory")
    p.add_argument("--min-cosine", type=float, default=MIN_COSINE)
    args = p.parse_args(argv)
    try:
        from poemrag.settings import resolve_model

        source = Path(resolve_model(str(args.model)))
        st = unpack(source, args.out)
        cosine = parity(st, source)
    except (PoemragError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}; min cosine to {source}: {cosine:.6f}")
    if cosine < args.min_cosine:
        print(f"error: min cosine {cosine:.6f} is below {args.min_cosine}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
