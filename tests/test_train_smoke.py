"""Smoke test of ``python -m training.train`` on a tiny random model and made-up data."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from _training_helpers import ANCHORS, COUPLETS, build_tiny_model, made_up_triplets, write_jsonl

from training.train import TimeLimit, main


def _made_up_ccpm(folder: Path) -> Path:
    """A CCPM-format folder of invented rows (not CCPM data)."""
    folder.mkdir()
    lines = [c.split("，")[0] for c in COUPLETS]
    rows = [
        {"translation": ANCHORS[i], "choices": [lines[(i + k) % len(lines)] for k in range(4)],
         "answer": i % 4}
        for i in range(12)
    ]
    for split in ("train", "valid"):
        write_jsonl(folder / f"{split}.jsonl", rows)
    return folder


def test_unknown_base_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "t.jsonl", made_up_triplets())
    code = main(["--base", str(tmp_path / "no" / "such-model"), "--data", str(data),
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("error: base model not found")


def test_time_limit_stops_training_after_the_budget_and_only_then() -> None:
    now = [100.0]
    limit = TimeLimit(minutes=1.0, clock=lambda: now[0])
    control, state = SimpleNamespace(should_training_stop=False, should_save=False), \
        SimpleNamespace(global_step=1, max_steps=10)
    targs = SimpleNamespace(save_strategy="steps")
    limit.on_train_begin(targs, state, control)
    now[0] += 59.0
    limit.on_step_end(targs, state, control)
    assert not control.should_training_stop and not control.should_save
    now[0] += 1.0
    state.global_step = 2
    limit.on_step_end(targs, state, control)
    # The stopping step is saved, so --resume continues from it.
    assert control.should_training_stop and control.should_save and limit.stopped_at == 2
    control.should_save = False
    limit.on_step_end(SimpleNamespace(save_strategy="no"), state, control)
    assert not control.should_save  # --no-checkpoints: nothing to resume from


@pytest.mark.parametrize("bad", [["--time-limit", "0"], ["--time-limit", "-5"], ["--lr", "0"]])
def test_bad_numbers_are_a_one_line_error(bad: list[str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*bad, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ")


@pytest.mark.slow
def test_two_steps_on_a_tiny_model_save_model_and_card(tmp_path: Path) -> None:
    base = build_tiny_model(tmp_path / "tiny")
    data = write_jsonl(tmp_path / "t.jsonl", made_up_triplets())
    mined = write_jsonl(tmp_path / "mined.jsonl", [
        {**{k: v for k, v in r.items() if k != "negative"}, "negative_1": r["negative"],
         "negative_2": COUPLETS[(i + 7) % len(COUPLETS)]}
        for i, r in enumerate(made_up_triplets())
    ])
    out = tmp_path / "out"
    code = main(["--base", str(base), "--data", str(data), str(mined),
                 "--ccpm-dir", str(_made_up_ccpm(tmp_path / "ccpm")), "--max-steps", "2",
                 "--batch-size", "4", "--max-seq-length", "32", "--eval-steps", "0",
                 "--output-dir", str(out), "--no-checkpoints"])
    assert code == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Training loss" in card and "| 2 |" in card
    assert "| ccpm | 12 |" in card and "| chat | 18 |" in card and "| chat_2neg | 18 |" in card
    assert "chat_dev_cosine_accuracy@1" in card and "ccpm_accuracy" in card
    assert "arXiv:2106.01979" in card
    config = json.loads((out / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert config["prompts"] == {"query": "query: ", "document": "passage: "}

    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(str(out)).max_seq_length == 32


@pytest.mark.slow
def test_time_limit_saves_the_model_and_says_so_in_the_card(tmp_path: Path) -> None:
    base = build_tiny_model(tmp_path / "tiny")
    data = write_jsonl(tmp_path / "t.jsonl", made_up_triplets())
    out = tmp_path / "out"
    code = main(["--base", str(base), "--data", str(data), "--max-steps", "5",
                 "--batch-size", "4", "--eval-steps", "0", "--time-limit", "1e-6",
                 "--output-dir", str(out), "--no-checkpoints"])
    assert code == 0 and (out / "model.safetensors").is_file()
    assert "1 of 5 (time limit)" in (out / "README.md").read_text(encoding="utf-8")


def test_ccpm_rows_can_be_limited_to_those_sharing_few_characters(tmp_path: Path) -> None:
    from training.data import ccpm_triplets, load_ccpm_split, shared_chars
    from training.train import load_training_data

    ccpm = _made_up_ccpm(tmp_path / "ccpm")
    rows = ccpm_triplets(load_ccpm_split(ccpm, "train"))
    for limit, expected in ((None, len(rows)),
                            (0, sum(not shared_chars(t.anchor, t.positive) for t in rows))):
        args = SimpleNamespace(data=[], strict=False, ccpm_dir=ccpm, ccpm_max_shared=limit)
        assert len(load_training_data(args).datasets["ccpm"]) == expected
    assert 0 < expected < len(rows)


def test_max_negatives_trims_chat_rows(tmp_path: Path) -> None:
    from training.train import load_training_data

    mined = write_jsonl(tmp_path / "mined.jsonl", [
        {**{k: v for k, v in r.items() if k != "negative"}, "negative_1": r["negative"],
         "negative_2": COUPLETS[(i + 7) % len(COUPLETS)]}
        for i, r in enumerate(made_up_triplets())
    ])
    for most, columns in ((None, ["anchor", "positive", "negative_1", "negative_2"]),
                          (1, ["anchor", "positive", "negative"])):
        args = SimpleNamespace(data=[mined], strict=False, ccpm_dir=None, max_negatives=most)
        assert load_training_data(args).datasets["chat"].column_names == columns


def test_frozen_embeddings_stay_fixed(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    base = build_tiny_model(tmp_path / "tiny")
    data = write_jsonl(tmp_path / "t.jsonl", made_up_triplets())
    out = tmp_path / "out"
    assert main(["--base", str(base), "--data", str(data), "--max-steps", "2", "--batch-size", "4",
                 "--eval-steps", "0", "--freeze-embeddings", "--lr", "1e-2",
                 "--output-dir", str(out), "--no-checkpoints"]) == 0
    before, after = load_file(str(base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    key = next(k for k in before if "word_embeddings" in k)
    moved = next(k for k in before if "layer.0.attention.self.query.weight" in k)
    assert (before[key] == after[key]).all() and not (before[moved] == after[moved]).all()
    assert "| word embeddings | frozen |" in (out / "README.md").read_text(encoding="utf-8")
