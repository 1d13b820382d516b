"""ONNX export (Dense folded into the token outputs) loaded offline by fastembed, int8
quantization, the tiny test encoder, and (integration) pinned vectors of the packaged model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import tiny_fp32, tiny_int8, tiny_st

from poemrag.encoders import MODEL_INFO_FILE, OnnxEncoder
from poemrag.settings import MODELS_DIR
from training.export import main

__all__ = ["tiny_fp32", "tiny_int8", "tiny_st"]  # fixtures, imported for pytest

TEXTS = ["床前明月光，疑是地上霜。", "今天好累啊", "想家了", "hello 123", "春眠不觉晓，处处闻啼鸟。"]


def _st_vectors(st_dir: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(st_dir), device="cpu")
    return np.concatenate([st.encode(TEXTS, prompt_name=p, normalize_embeddings=True)
                           for p in ("query", "document")])


def _fastembed_vectors(onnx_dir: Path) -> np.ndarray:
    encoder = OnnxEncoder(onnx_dir)
    texts = [p + t for p in (encoder.query_prompt, encoder.document_prompt) for t in TEXTS]
    return encoder.encode(texts, batch_size=4)


def test_fp32_export_matches_sentence_transformers(tiny_st: Path, tiny_fp32: Path) -> None:
    ref, got = _st_vectors(tiny_st), _fastembed_vectors(tiny_fp32)
    assert got.shape == (2 * len(TEXTS), 48)
    assert np.abs(ref - got).max() <= 1e-5


def test_int8_export_stays_close(tiny_st: Path, tiny_int8: Path) -> None:
    ref, got = _st_vectors(tiny_st), _fastembed_vectors(tiny_int8)
    assert np.min(np.sum(ref * got, axis=1)) >= 0.99


def test_graph_interface_and_quantized_ops(tiny_fp32: Path, tiny_int8: Path) -> None:
    import onnx

    for path, int8 in ((tiny_fp32, False), (tiny_int8, True)):
        model = onnx.load(str(path / "model.onnx"))
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 14
        inputs = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim]
                  for i in model.graph.input}
        assert inputs == {n: ["batch", "sequence"] for n in
                          ("input_ids", "attention_mask", "token_type_ids")}
        (out,) = model.graph.output
        dims = out.type.tensor_type.shape.dim
        assert out.name == "last_hidden_state"
        assert [dims[0].dim_param, dims[1].dim_param, dims[2].dim_value] == \
            ["batch", "sequence", 48]
        ops = {n.op_type for n in model.graph.node}
        assert ("MatMulInteger" in ops) == int8
        if int8:  # FFN output projections keep fp16 weights, cast back to fp32
            fp16 = [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
            assert len(fp16) == 2


def test_export_dir_files_and_info(tiny_st: Path, tiny_int8: Path) -> None:
    for name in ("model.onnx", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "config.json", "config_sentence_transformers.json"):
        assert (tiny_int8 / name).is_file(), name
    info = json.loads((tiny_int8 / MODEL_INFO_FILE).read_text())
    assert info | {"base": None} == {
        "dim": 48, "pooling": "mean", "normalize": True, "max_length": 64,
        "prompts": {"query": "query: ", "document": "passage: "}, "base": None,
        "source": str(tiny_st), "quantization": "int8", "onnx_opset": 17}


def test_tiny_model_is_deterministic(tiny_st: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from training.tiny_model import build_tiny_st_model

    again = build_tiny_st_model(tmp_path / "again", dim=48)
    for rel in ("model.safetensors", "2_Dense/model.safetensors"):
        a, b = load_file(str(tiny_st / rel)), load_file(str(again / rel))
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), rel


def test_export_refuses_a_non_linear_dense(tiny_st: Path, tmp_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from poemrag.errors import ModelError
    from training.export import _folded_module

    st = SentenceTransformer(str(tiny_st), device="cpu")
    st[2].activation_function = torch.nn.Tanh()
    with pytest.raises(ModelError, match="activation is not the identity"):
        _folded_module(st)


def test_export_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: not a sentence-transformers model directory") and "\n" not in err


# Pinned outputs of the packaged models: a change means a shipped encoder changed.
CANONICAL_TEXTS = ("query: 今天加班到很晚，好累", "passage: 床前明月光，疑是地上霜。")
CANONICAL = {
    "poemrag-zh-1792": (
        [-0.004896, 0.008176, 0.026586, -0.00381, -0.009593, -0.010832, 0.015225, -0.007282],
        [-0.012895, 0.027046, 0.005765, 0.018777, -0.00308, -0.018778, 0.010644, -0.04145],
        0.00773,
    ),
    "poemrag-zh-1792-fast": (
        [0.013137, 0.008097, 0.038762, 0.001737, -0.008238, -0.01679, 0.017734, -0.015276],
        [-0.015519, 0.027109, 0.008821, 0.023613, -0.012404, -0.023246, -0.003027, -0.047884],
        0.00571,
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_packaged_model_canonical_vectors(name: str) -> None:
    model_dir = MODELS_DIR / name
    if not (model_dir / "model.onnx").is_file():
        pytest.skip(f"packaged model {name} not present")
    query, document, cosine = CANONICAL[name]
    vectors = OnnxEncoder(model_dir).encode(list(CANONICAL_TEXTS), batch_size=2)
    assert vectors.shape == (2, 1792)
    np.testing.assert_allclose(vectors[0][:8], query, atol=1e-4)
    np.testing.assert_allclose(vectors[1][:8], document, atol=1e-4)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(cosine, abs=1e-4)
