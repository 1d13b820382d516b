"""Encode throughput of an exported ONNX encoder on corpus couplets, through the encoder the
product uses (:class:`poemrag.encoders.OnnxEncoder`: fastembed, batches in length order).

``python -m training.bench_encoder ONNX_DIR [--corpus PATH] [--n 2048] [--batch 64] [--flops]
[--profile]``

``--flops`` also says where the time goes: the arithmetic one couplet costs (from the model's
config and the tokens the encoder actually runs, padding included), the rate achieved, and
onnxruntime's own fp32 and dynamic-int8 rates on one matrix product of the encoder's shape;
every FLOP at the int8 rate bounds what this export can reach on this machine.
``--profile`` runs the same batches through onnxruntime's profiler and prints the share of
kernel time per operator type (int8 and float matrix products, GELU, layer norms...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poemrag.batching import batched
from poemrag.encoders import MODEL_INFO_FILE, OnnxEncoder, read_prompts
from poemrag.errors import ModelError, PoemragError


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


@dataclass(frozen=True)
class Shape:
    """What sets an encoder's arithmetic: BERT sizes and the output Dense."""

    hidden: int
    layers: int
    intermediate: int
    out_dim: int

    @classmethod
    def of(cls, model_dir: Path) -> Shape:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        info_path = model_dir / MODEL_INFO_FILE
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
        try:
            hidden = int(config["hidden_size"])
            return cls(hidden, int(config["num_hidden_layers"]),
                       int(config["intermediate_size"]), int(info.get("dim") or hidden))
        except KeyError as exc:
            raise ModelError(f"{model_dir / 'config.json'} has no {exc} (not a BERT config)") \
                from None

    def flops(self, tokens: int) -> float:
        """Multiply-adds x 2 for one text of ``tokens`` tokens (a lower bound for exports that
        apply the Dense at every token): per layer the Q/K/V/output
        projections and the two FFN matrices on every token, attention scores and weighted
        sums (tokens x tokens x hidden, twice), then the Dense once on the pooled vector."""
        h, ff = self.hidden, self.intermediate
        per_layer = 2 * tokens * (4 * h * h + 2 * h * ff) + 4 * tokens * tokens * h
        return float(self.layers * per_layer + 2 * h * self.out_dim)


def length_batches(texts: Sequence[str], batch_size: int) -> list[list[str]]:
    """``texts`` in the batches :class:`OnnxEncoder` runs them in: ordered by length."""
    return list(batched(sorted(texts, key=len), batch_size))


def padded_lengths(model_dir: Path, texts: Sequence[str], batch_size: int) -> list[int]:
    """Tokens each text is run with, batch by batch (:func:`length_batches`): every text is
    padded to the longest of its batch."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()  # some tokenizer.json files pad every batch themselves
    padded: list[int] = []
    for batch in length_batches(texts, batch_size):
        longest = max(len(e.ids) for e in tokenizer.encode_batch(batch))
        padded += [longest] * len(batch)
    return padded


def matmul_gflops(rows: int, inner: int, cols: int, int8: bool = False,
                  seconds: float = 2.0) -> float:
    """onnxruntime's rate, all cores, on one ``[rows, inner] @ [inner, cols]`` product with a
    constant weight: fp32, or quantized the way :func:`training.export.quantize_int8` does
    (dynamic int8, u8 weights per channel). Best of repeated runs."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from training.export import quantize_int8

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((inner, cols), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, inner])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, cols])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((rows, inner), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="poemrag-matmul-") as tmp:
        path = Path(tmp) / "matmul.onnx"
        onnx.save(model, str(path))
        if int8:
            quiet = logging.root.manager.disable
            logging.disable(logging.WARNING)  # the quantizer's advice to pre-process the graph
            try:
                quantize_int8(path, Path(tmp) / "int8.onnx")
            finally:
                logging.disable(quiet)
            path = Path(tmp) / "int8.onnx"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, {"x": x})
        best = min(best, time.perf_counter() - start)
    return 2 * rows * inner * cols / best / 1e9


def flops_report(model_dir: Path, texts: Sequence[str], batch_size: int, rate: float) -> str:
    shape = Shape.of(model_dir)
    prompt = read_prompts(model_dir)[1]
    lengths = padded_lengths(model_dir, [prompt + t for t in texts], batch_size)
    per_text = sum(shape.flops(n) for n in lengths) / len(lengths)
    mean_tokens = sum(lengths) / len(lengths)
    # The FFN's first product, for a batch of batch_size texts of the mean length.
    dims = (round(batch_size * mean_tokens), shape.hidden, shape.intermediate)
    fp32, int8 = matmul_gflops(*dims), matmul_gflops(*dims, int8=True)
    achieved = rate * per_text / 1e9
    return (f"{shape.layers} layers x {shape.hidden} (FFN {shape.intermediate}), "
            f"{mean_tokens:.1f} tokens per couplet as run (padding included): "
            f"{per_text / 1e6:.0f} MFLOP per couplet, achieved {achieved:.0f} GFLOP/s\n"
            f"onnxruntime on a [{dims[0]}x{dims[1]}] @ [{dims[1]}x{dims[2]}] product: fp32 "
            f"{fp32:.0f} GFLOP/s, dynamic int8 {int8:.0f} GFLOP/s; every FLOP at the int8 "
            f"rate would give {int8 * 1e9 / per_text:.0f} couplets/s")


def profile_ops(model_dir: Path, texts: Sequence[str], batch_size: int) -> list[tuple[str, float]]:
    """(operator type, share of kernel time) for encoding ``texts`` (document prompt, length
    order, batches padded to their longest text), largest first."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    prompt = read_prompts(model_dir)[1]
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))
    options = ort.SessionOptions()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="poemrag-profile-") as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(model_dir / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        for batch in length_batches([prompt + t for t in texts], batch_size):
            encoded = tokenizer.encode_batch(batch)
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            session.run(None, {"input_ids": ids, "attention_mask": mask,
                               "token_type_ids": np.zeros_like(ids)})
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    by_op: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            by_op[op] = by_op.get(op, 0.0) + float(event["dur"])
    total = sum(by_op.values()) or 1.0
    return sorted(((op, us / total) for op, us in by_op.items()), key=lambda x: -x[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.bench_encoder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="exported ONNX directory")
    p.add_argument("--corpus", type=Path, help="chinese-poetry tarball or dir (default: pinned)")
    p.add_argument("--n", type=int, default=2048, help="couplets to encode")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    p.add_argument("--flops", action="store_true",
                   help="also report the arithmetic per couplet and this machine's matmul rate")
    p.add_argument("--profile", action="store_true",
                   help="also report the share of kernel time per onnxruntime operator type")
    args = p.parse_args(argv)
    try:
        from poemrag.corpus import load_corpus

        texts = [c.text for c in load_corpus(args.corpus, limit=args.n).couplets()]
        rate, per_cpu = couplets_per_second(args.model, texts, args.batch, args.threads)
        report = flops_report(args.model, texts, args.batch, rate) if args.flops else ""
        ops = profile_ops(args.model, texts, args.batch) if args.profile else []
    except (PoemragError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    print(f"{rate:.1f} couplets/s, {per_cpu:.1f} per CPU-second ({len(texts)} couplets, "
          f"batch {args.batch}, {os.cpu_count()} CPUs, load average {load:.1f})")
    if report:
        print(report)
    if ops:
        print("kernel time by operator: " + ", ".join(
            f"{op} {share:.1%}" for op, share in ops if share >= 0.005))
    return 0


if __name__ == "__main__":
    sys.exit(main())
