"""training.distill: teacher-vector cache, text selection and a tiny end-to-end distillation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _training_helpers import build_tiny_model, made_up_triplets, write_jsonl

from training import distill as distill_module
from training.ccpm import CcpmRow
from training.data import Triplet
from training.distill import cache_key, distill_texts, main, teacher_vectors


def test_texts_are_prompted_queries_then_documents_each_once() -> None:
    chat = [Triplet("好想家", "举头望明月，低头思故乡。", ("春眠不觉晓，处处闻啼鸟。",))]
    ccpm = [CcpmRow("月光照在床前", ("床前明月光", "举头望明月，低头思故乡。", "c", "d"), 0, "x:1")]
    texts = distill_texts(chat, ccpm, ["春眠不觉晓，处处闻啼鸟。", "新句"], "Q:", "P:")
    assert texts[:2] == ["Q:好想家", "Q:月光照在床前"]
    assert texts[2:] == ["P:举头望明月，低头思故乡。", "P:春眠不觉晓，处处闻啼鸟。", "P:床前明月光",
                         "P:c", "P:d", "P:新句"]


def test_cache_key_depends_on_texts_order_and_teacher() -> None:
    key = cache_key(["a", "b"], "f1")
    assert key == cache_key(["a", "b"], "f1")
    assert len({key, cache_key(["b", "a"], "f1"), cache_key(["a", "b"], "f2"),
                cache_key(["ab"], "f1")}) == 4


class _Interrupt(Exception):
    pass


def _fake_encoder(fail_after: int | None = None) -> tuple[list[int], object]:
    calls: list[int] = []

    def encode(texts: list[str], batch_size: int) -> np.ndarray:
        if fail_after is not None and len(calls) >= fail_after:
            raise _Interrupt
        calls.append(len(texts))
        rows = [[len(t), ord(t[-1]) % 7, 1.0] for t in texts]
        return np.asarray(rows, dtype=np.float32)

    return calls, encode


def test_teacher_vectors_resume_after_an_interruption(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distill_module, "TEACHER_CHUNK", 3)
    texts = [f"text{i}" * (i % 3 + 1) for i in range(10)]
    _, full_encode = _fake_encoder()
    expected = teacher_vectors(full_encode, texts, 3, tmp_path / "full", "k", progress=False)

    _, failing = _fake_encoder(fail_after=2)
    with pytest.raises(_Interrupt):
        teacher_vectors(failing, texts, 3, tmp_path / "cache", "k", progress=False)
    assert json.loads((tmp_path / "cache" / "teacher.json").read_text())["done"] == 6
    calls, encode = _fake_encoder()
    resumed = teacher_vectors(encode, texts, 3, tmp_path / "cache", "k", progress=False)
    assert calls == [3, 1]  # only the texts after the last finished chunk
    np.testing.assert_array_equal(resumed, expected)

    calls, encode = _fake_encoder()
    teacher_vectors(encode, texts, 3, tmp_path / "cache", "other key", progress=False)
    assert sum(calls) == len(texts)  # another teacher or text list starts over


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_tiny_student_moves_towards_its_teacher(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers import SentenceTransformer

    from training.tiny_model import build_tiny_st_model

    monkeypatch.delenv("POEMRAG_CCPM_DIR", raising=False)  # chat rows only: tiny and fast
    teacher = build_tiny_model(tmp_path / "teacher")
    # Another seed: a pruned tiny random model would already match its teacher almost exactly.
    build_tiny_st_model(tmp_path / "student", seed=1)
    chat = write_jsonl(tmp_path / "chat.jsonl", made_up_triplets())
    out = tmp_path / "out"
    texts = ["query: " + r["anchor"] for r in made_up_triplets()]
    targets = SentenceTransformer(str(teacher), device="cpu").encode(texts)
    before = SentenceTransformer(str(tmp_path / "student"), device="cpu").encode(texts)

    assert main(["--student", str(tmp_path / "student"), "--teacher", str(teacher),
                 "--data", str(chat), "--couplets", "0", "--output-dir", str(out),
                 "--epochs", "10", "--batch-size", "8", "--lr", "2e-3", "--no-checkpoints",
                 "--eval-steps", "0"]) == 0

    after = SentenceTransformer(str(out), device="cpu").encode(texts)
    assert _cosines(after, targets).mean() > _cosines(before, targets).mean() + 0.05
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "distillation" in card and "EmbedDistillLoss" in card and "frozen" in card
    assert (out / "teacher" / "teacher.npy").is_file()


def _tiny_run_args(tmp_path: Path, out: Path) -> list[str]:
    """``training.distill`` arguments for a tiny teacher, a tiny student of another seed and
    the made-up chat rows, in batches of 4 without evaluation."""
    from training.tiny_model import build_tiny_st_model

    teacher = build_tiny_model(tmp_path / "teacher")
    build_tiny_st_model(tmp_path / "student", seed=1)
    chat = write_jsonl(tmp_path / "chat.jsonl", made_up_triplets())
    return ["--student", str(tmp_path / "student"), "--teacher", str(teacher), "--data",
            str(chat), "--couplets", "0", "--output-dir", str(out), "--batch-size", "4",
            "--no-eval"]


def test_resume_continues_from_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POEMRAG_CCPM_DIR", raising=False)
    out = tmp_path / "out"
    common = [*_tiny_run_args(tmp_path, out), "--save-steps", "2"]
    assert main([*common, "--max-steps", "2"]) == 0
    capsys.readouterr()
    assert main([*common, "--max-steps", "4", "--resume"]) == 0
    logged = capsys.readouterr().out
    # The second sitting trains steps 3 and 4 only; the history holds all four.
    assert "[step 3/4" in logged and "[step 4/4" in logged and "[step 1/4" not in logged
    state = json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]


def test_shuffle_seed_reorders_batches_and_keeps_the_teacher_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.delenv("POEMRAG_CCPM_DIR", raising=False)
    out = tmp_path / "out"
    common = [*_tiny_run_args(tmp_path, out), "--max-steps", "1", "--save-steps", "1"]
    assert main(common) == 0
    cache = out / "teacher" / "teacher.npy"
    stamp = cache.stat().st_mtime_ns
    assert main([*common, "--shuffle-seed", "7"]) == 0
    saved = torch.load(out / "checkpoints" / "checkpoint-1" / "training_args.bin",
                       weights_only=False)
    assert saved.seed == saved.data_seed == 7
    assert cache.stat().st_mtime_ns == stamp  # same texts: the teacher's vectors were reused


def test_prompt_mismatch_is_a_one_line_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from training.prune import prune

    teacher = build_tiny_model(tmp_path / "teacher")
    prune(teacher, tmp_path / "student", keep=[0])
    config = tmp_path / "student" / "config_sentence_transformers.json"
    settings = json.loads(config.read_text(encoding="utf-8"))
    settings["prompts"] = {"query": "问：", "document": "诗："}
    config.write_text(json.dumps(settings), encoding="utf-8")
    capsys.readouterr()
    assert main(["--student", str(tmp_path / "student"), "--teacher", str(teacher),
                 "--couplets", "0", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err  # may also hold model-loading progress bars
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "prompts" in errors[0] and "Traceback" not in err
