"""The arithmetic behind ``python -m training.bench_encoder --flops``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poemrag.errors import ModelError
from poemrag.settings import MODELS_DIR
from training.bench_encoder import Shape, main, matmul_gflops, padded_lengths, profile_ops

DEFAULT = MODELS_DIR / "poemrag-zh-1792"


def test_shape_of_the_packaged_model() -> None:
    assert Shape.of(DEFAULT) == Shape(hidden=384, layers=12, intermediate=1536, out_dim=1792)


def test_flops_count_projections_attention_and_dense() -> None:
    shape = Shape(hidden=4, layers=2, intermediate=8, out_dim=6)
    # per layer: 2 * 3 tokens * (4*16 + 2*32) + 4 * 9 * 4; Dense: 2 * 4 * 6
    assert shape.flops(3) == 2 * (2 * 3 * 128 + 144) + 48


def test_padded_lengths_pad_each_length_sorted_batch_to_its_longest() -> None:
    texts = ["春", "春眠不觉晓，处处闻啼鸟。", "床前", "举头望明月"]
    padded = padded_lengths(DEFAULT, texts, batch_size=2)
    assert len(padded) == 4 and padded == sorted(padded)
    assert padded[0] == padded[1] and padded[2] == padded[3] and padded[0] < padded[3]


def test_padded_lengths_ignore_padding_saved_in_the_tokenizer() -> None:
    texts = ["春", "春眠不觉晓，处处闻啼鸟。"]
    fast = MODELS_DIR / "poemrag-zh-1792-fast"  # its tokenizer.json pads every batch
    assert padded_lengths(fast, texts, 1) == padded_lengths(DEFAULT, texts, 1)
    assert padded_lengths(fast, texts, 1)[0] < padded_lengths(fast, texts, 1)[1]


@pytest.mark.parametrize("int8", [False, True])
def test_matmul_rate_is_measured(int8: bool) -> None:
    assert matmul_gflops(64, 32, 32, int8=int8, seconds=0.05) > 0


def test_a_config_without_bert_sizes_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}), encoding="utf-8")
    with pytest.raises(ModelError, match="hidden_size"):
        Shape.of(tmp_path)
    assert main([str(tmp_path / "missing"), "--n", "4"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_profile_shares_kernel_time_by_operator_type() -> None:
    ops = profile_ops(MODELS_DIR / "poemrag-zh-1792-fast", ["床前明月光，疑是地上霜。", "春眠不觉晓"], 2)
    assert abs(sum(share for _, share in ops) - 1) < 1e-6
    assert [s for _, s in ops] == sorted((s for _, s in ops), reverse=True)
    assert any("MatMul" in op for op, _ in ops[:3])  # matrix products dominate
