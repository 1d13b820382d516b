"""training.prune: a shallower student with the same vector size and prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
from _training_helpers import build_tiny_model

from training.prune import main, spread


def test_spread_keeps_first_and_last_evenly() -> None:
    assert spread(12, 4) == [0, 4, 7, 11]
    assert spread(12, 6) == [0, 2, 4, 7, 9, 11]
    assert spread(12, 12) == list(range(12))
    assert spread(12, 1) == [11]


@pytest.mark.parametrize("args", [["--layers", "0"], ["--layers", "99"], ["--keep", "0,9"],
                                  ["--keep", "a,b"]])
def test_bad_layer_choices_are_one_line_errors(tmp_path: Path, args: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = build_tiny_model(tmp_path / "tiny")
    capsys.readouterr()
    assert main([str(base), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_pruned_student_loads_with_fewer_layers_and_same_outputs_shape(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    base = build_tiny_model(tmp_path / "tiny")
    teacher = SentenceTransformer(str(base), device="cpu")
    layers = len(teacher[0].auto_model.encoder.layer)
    assert main([str(base), "--out", str(tmp_path / "student"), "--keep", "1"]) == 0
    student = SentenceTransformer(str(tmp_path / "student"), device="cpu")
    assert len(student[0].auto_model.encoder.layer) == 1 < layers
    assert student[0].auto_model.config.num_hidden_layers == 1
    assert student.prompts == teacher.prompts
    texts = ["床前明月光", "今天好累"]
    a, b = teacher.encode(texts), student.encode(texts)
    assert a.shape == b.shape and not (abs(a - b) < 1e-6).all()
