"""training.unpack: an exported ONNX model back to sentence-transformers, same vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_fixtures import tiny_fp32, tiny_int8, tiny_st

from training.unpack import main, parity, unpack

__all__ = ["tiny_fp32", "tiny_int8", "tiny_st"]  # fixtures, imported for pytest

TEXTS = ["床前明月光，疑是地上霜。", "今天好累啊", "想家了", "hello 123"]


def _vectors(st_dir: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(st_dir), device="cpu")
    return np.concatenate([st.encode(TEXTS, prompt_name=p, normalize_embeddings=True)
                           for p in ("query", "document")])


def test_fp32_export_unpacks_to_the_same_model(tiny_st: Path, tiny_fp32: Path, tmp_path: Path) -> None:
    st = unpack(tiny_fp32, tmp_path / "st")
    assert st.prompts["query"] and st.prompts == _prompts(tiny_st)
    assert np.abs(_vectors(tmp_path / "st") - _vectors(tiny_st)).max() <= 1e-5
    assert parity(st, tiny_fp32) >= 0.99999


def test_int8_export_unpacks_within_the_int8_tolerance(
    tiny_st: Path, tiny_int8: Path, tmp_path: Path
) -> None:
    st = unpack(tiny_int8, tmp_path / "st")
    got, ref = _vectors(tmp_path / "st"), _vectors(tiny_st)
    assert np.min(np.sum(got * ref, axis=1)) >= 0.99
    assert parity(st, tiny_int8) >= 0.99


def test_cli_checks_parity_and_reports_bad_input_in_one_line(
    tiny_int8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tiny_int8), "--out", str(tmp_path / "ok")]) == 0
    assert "min cosine" in capsys.readouterr().out
    assert main([str(tiny_int8), "--out", str(tmp_path / "strict"), "--min-cosine", "1.01"]) == 1
    assert main([str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: not an exported poemrag model directory")


def _prompts(st_dir: Path) -> dict[str, str]:
    from training.st_model import read_prompts

    return read_prompts(st_dir)
