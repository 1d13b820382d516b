"""``python -m training.evaluate`` on a tiny model, plus the ranking metrics by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _training_helpers import ANCHORS, COUPLETS, build_tiny_model, made_up_triplets, write_jsonl

import training.evaluate as ev
from training.data import Triplet, is_dev


def test_pool_holds_targets_first_then_a_seeded_sample() -> None:
    corpus = [f"句{i}" for i in range(100)] + ["句3"]
    pool = ev.build_pool(["句7", "外来的句子", "句7"], corpus, size=20, seed=1)
    assert pool[:2] == ["句7", "外来的句子"] and len(pool) == len(set(pool)) == 20
    assert pool == ev.build_pool(["句7", "外来的句子"], corpus, size=20, seed=1)
    assert pool != ev.build_pool(["句7", "外来的句子"], corpus, size=20, seed=2)
    assert len(ev.build_pool(["句7"], corpus, size=10_000, seed=1)) == 100


def test_ranks_and_metrics() -> None:
    pool = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0.1, 0, 0], [0.9, 1, 0, 0], [1, 0.8, 0.9, 0]], dtype=np.float32)
    ranks = ev.target_ranks(queries, pool, [0, 0, 2])
    assert ranks.tolist() == [0, 1, 1]
    metrics = ev.retrieval_metrics(ranks)
    assert metrics["recall_at_1"] == pytest.approx(1 / 3)
    assert metrics["recall_at_10"] == 1.0
    assert metrics["mrr"] == pytest.approx((1 + 0.5 + 0.5) / 3)


def test_char_bm25_and_fused_ranks() -> None:
    lexical = ev.char_bm25(["今晚明月好圆", "无关"], ["床前明月光", "春眠不觉晓", "明日复明日"])
    assert lexical[0, 0] == 1.0 and lexical[0, 1] == 0.0 and 0 < lexical[0, 2] < 1
    assert not lexical[1].any()
    dense = np.array([[0.5, 0.6, 0.1]], dtype=np.float32)
    assert ev.fused_ranks(dense, lexical[:1], [0], 0.0).tolist() == [1]
    assert ev.fused_ranks(dense, lexical[:1], [0], 0.5).tolist() == [0]


def test_dev_subsets_split_v1_v2_and_the_shortcut_free_rows() -> None:
    dev = [
        Triplet("今晚月亮好圆", "举头望明月，低头思故乡。", ("n",)),              # v1, shares 月
        Triplet("抬头看明月想家", "举头望明月，低头思故乡。", ("n",), "", 5),   # v2, shares 4
        Triplet("加完班倒头就睡", "归来饱饭黄昏后，不脱蓑衣卧月明。", ("n",), "", 6),  # v2, free
    ]
    assert ev.dev_subsets(dev) == {
        "shortcut-free": [0, 2], "v1": [0], "v1 shortcut-free": [0], "v2": [1, 2],
        "v2 shortcut-free": [2],
    }


@pytest.mark.slow
def test_cli_on_a_tiny_model_prints_a_table_and_writes_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    data = write_jsonl(tmp_path / "chat.jsonl", made_up_triplets())
    ccpm = tmp_path / "ccpm"
    ccpm.mkdir()
    lines = [c.split("，")[0] for c in COUPLETS]
    write_jsonl(ccpm / "valid.jsonl", [
        {"translation": a, "choices": lines[i % 8: i % 8 + 4], "answer": i % 4}
        for i, a in enumerate(ANCHORS[:8])
    ])
    monkeypatch.setattr(ev, "corpus_couplet_texts", lambda source: COUPLETS * 2)
    out = tmp_path / "eval.json"
    code = ev.main([str(model), "--data", str(data), "--ccpm-dir", str(ccpm),
                    "--pool-size", "10", "--json", str(out), "--hybrid-weights", "0.1"])
    assert code == 0
    table = capsys.readouterr().out
    assert "CCPM valid accuracy (8 rows)" in table and "Recall@10" in table
    result = json.loads(out.read_text(encoding="utf-8"))
    dev = sum(is_dev(a) for a in ANCHORS)
    assert result["backend"] == "torch" and result["dev_pairs"] == dev == 2
    assert result["pool_size"] == 10
    assert result["recall_at_10"] == 1.0  # a pool of 10 puts every target in the top 10
    assert 0 <= result["ccpm_accuracy"] <= 1 and result["couplets_per_s"] > 0
    assert result["subsets"]["v1"]["rows"] == 2 and "v1 (2): R@1 / R@10 / MRR" in table
    assert set(result["hybrid"]) == {"0", "0.1"}
    assert result["hybrid"]["0"]["recall_at_1"] == result["recall_at_1"]


def test_missing_model_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ev, "corpus_couplet_texts", lambda source: COUPLETS)
    monkeypatch.delenv("POEMRAG_CCPM_DIR", raising=False)
    data = write_jsonl(tmp_path / "chat.jsonl", made_up_triplets())
    code = ev.main([str(tmp_path / "absent"), "--data", str(data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: model directory not found")
