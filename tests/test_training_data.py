"""Training data: JSONL parsing with file:line errors, the stable dev split, CCPM triplets,
and (integration) checks of every committed chat triplet file against the real corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poemrag.errors import PoemragError
from training.data import (
    AUTHORED_PREFIX,
    TrainingDataError,
    Triplet,
    ccpm_triplets,
    char_postings,
    check_positives,
    data_group,
    dev_bucket,
    is_dev,
    is_shortcut_free,
    lint_authored,
    lint_triplets,
    load_ccpm_split,
    read_triplets,
    split_dev,
)

REPO = Path(__file__).resolve().parent.parent
CHAT_FILES = sorted((REPO / "training" / "data").glob("*.jsonl"))
MINED_FILES = sorted((REPO / "training" / "data" / "mined").glob("*.jsonl"))

GOOD = {"anchor": "今晚月亮好圆", "positive": "举头望明月，低头思故乡。", "negative": "春眠不觉晓，处处闻啼鸟。"}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_good_rows_and_reports_bad_ones_with_file_and_line(tmp_path: Path) -> None:
    good = json.dumps(GOOD, ensure_ascii=False)
    path = _write(tmp_path / "t.jsonl", [
        good,
        "{not json",
        json.dumps({"anchor": "缺正例", "negative": "x"}, ensure_ascii=False),
        "",
        json.dumps({**GOOD, "anchor": "   "}, ensure_ascii=False),
        json.dumps({**GOOD, "positive": 3}, ensure_ascii=False),
        json.dumps(["a", "b"]),
        json.dumps({"anchor": "没有负例", "positive": "p"}, ensure_ascii=False),
    ])
    rows, problems = read_triplets(path)
    assert rows == [Triplet(GOOD["anchor"], GOOD["positive"], (GOOD["negative"],), f"{path}:1")]
    assert problems == [
        f"{path}:2: bad JSON (Expecting property name enclosed in double quotes)",
        f"{path}:3: missing field 'positive'",
        f"{path}:5: field 'anchor' is empty",
        f"{path}:6: field 'positive' is not a string",
        f"{path}:7: expected a JSON object, got list",
        f"{path}:8: missing field 'negative'",
    ]


def test_strict_mode_stops_at_the_first_bad_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [json.dumps(GOOD, ensure_ascii=False), "[1", "{"])
    with pytest.raises(TrainingDataError, match=r"t\.jsonl:2: bad JSON"):
        read_triplets(path, strict=True)


def test_numbered_negatives_are_read_in_order(tmp_path: Path) -> None:
    row = {"anchor": "a", "positive": "p", "negative_2": "n2", "negative_10": "n10", "negative_1": "n1"}
    rows, problems = read_triplets(_write(tmp_path / "m.jsonl", [json.dumps(row)]))
    assert problems == [] and rows[0].negatives == ("n1", "n2", "n10")


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="cannot read"):
        read_triplets(tmp_path / "absent.jsonl")


def test_dev_split_is_stable_and_about_ten_percent() -> None:
    anchors = [f"第{i}条聊天消息" for i in range(5000)]
    share = sum(map(is_dev, anchors)) / len(anchors)
    assert 0.08 < share < 0.12
    # Pinned values: the split must never change between versions or as files grow.
    assert [dev_bucket(a) for a in ("今晚的月亮真圆", "花都谢了", "好想你啊")] == [1, 0, 23]
    assert is_dev("  今晚的月亮真圆\n") and not is_dev("好想你啊")
    rows = [Triplet(a, "p", ("n",)) for a in anchors]
    train, dev = split_dev(rows)
    train2, dev2 = split_dev(rows + [Triplet("新来的一条", "p", ("n",))])
    assert dev2[: len(dev)] == dev and len(train) + len(dev) == len(rows)
    assert {t.anchor for t in train} <= {t.anchor for t in train2}


def test_ccpm_rows_become_triplets_with_three_hard_negatives() -> None:
    # Made-up rows in CCPM's format (not taken from CCPM).
    fixture = Path(__file__).parent / "fixtures" / "ccpm_format"
    triplets = ccpm_triplets(load_ccpm_split(fixture, "valid"))
    assert len(triplets) == 2 and triplets[0].positive == "床前明月光"
    assert triplets[1].anchor == "抬头看月亮，低头想家乡。"
    assert triplets[1].positive == "低头思故乡"
    assert triplets[1].negatives == ("举杯邀明月", "抬头望远山", "回首望故园")


def test_missing_or_malformed_ccpm_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="CCPM train file not found"):
        load_ccpm_split(tmp_path, "train")
    row = dict(translation="x")  # noqa: C408 - no CCPM-shaped JSON literal in the tree
    _write(tmp_path / "train.jsonl", [json.dumps(row)])
    with pytest.raises(PoemragError, match=r"train\.jsonl:1: 'choices' must be"):
        load_ccpm_split(tmp_path, "train")


def test_check_positives_and_lint_report_file_and_line() -> None:
    rows = [
        Triplet("今晚月亮好圆", "举头望明月，低头思故乡。", ("n",), "f.jsonl:1"),
        Triplet("举头望明月呀", "举头望明月，低头思故乡。", ("n",), "f.jsonl:2"),
        Triplet("今晚月亮好圆", "不存在的诗句。", ("n",), "f.jsonl:3"),
    ]
    assert check_positives(rows, {"举头望明月，低头思故乡。"}) == [
        "f.jsonl:3: positive is not a corpus couplet: 不存在的诗句。"
    ]
    assert lint_triplets(rows) == [
        "f.jsonl:2: anchor copies '举头望明' from its positive",
        "f.jsonl:3: duplicate anchor (first at f.jsonl:1)",
    ]


@pytest.fixture(scope="module")
def committed_triplets() -> list[Triplet]:
    if not CHAT_FILES:
        pytest.skip("no training/data/*.jsonl files yet")
    rows: list[Triplet] = []
    for path in CHAT_FILES:
        found, problems = read_triplets(path)
        assert problems == [], "\n".join(problems)
        rows += found
    return rows


def test_committed_triplets_do_not_copy_positives_or_repeat_anchors(
    committed_triplets: list[Triplet],
) -> None:
    errors = lint_triplets(committed_triplets)
    assert errors == [], f"{len(errors)} problems:\n" + "\n".join(errors)


def test_authored_rows_follow_the_stricter_rules() -> None:
    ok = Triplet("加完班扒拉两口外卖，倒头就睡", "归来饱饭黄昏后，不脱蓑衣卧月明。", ("n",), "f:1", 7)
    assert lint_authored(ok) == [] and data_group(ok) == "v2"
    old = Triplet("今晚月亮好圆，想家了", "举头望明月，低头思故乡。", ("n",), "f:2")
    assert data_group(old) == "v1"
    assert lint_authored(old) == ["f:2: missing field 'positive_id'"]
    assert is_shortcut_free(old)  # shares only 月
    assert not is_shortcut_free(Triplet("抬头看明月", "举头望明月，低头思故乡。", ("n",)))
    long = Triplet("好" * 81, "举头望明月，低头思故乡。", ("n",), "f:3", 1)
    assert lint_authored(long) == ["f:3: message has 81 characters (allowed 8-80)"]


def test_authored_files_pass_the_authoring_rules(committed_triplets: list[Triplet]) -> None:
    authored = [t for t in committed_triplets if AUTHORED_PREFIX in t.where]
    if not authored:
        pytest.skip("no authored v2 files yet")
    errors = [e for t in authored for e in lint_authored(t)]
    assert errors == [], f"{len(errors)} problems:\n" + "\n".join(errors[:50])
    assert all(data_group(t) == "v2" for t in authored)
    # Held-out rows keep their one authored negative: nothing is mined for them.
    assert all(len(t.negatives) == 1 for t in authored if is_dev(t.anchor))


@pytest.mark.integration
@pytest.mark.slow
def test_committed_positives_and_negatives_are_corpus_couplets(
    committed_triplets: list[Triplet], pinned_corpus
) -> None:
    from poemrag.corpus import load_corpus

    by_id = {c.id: c.text for c in load_corpus(pinned_corpus).couplets()}
    texts = set(by_id.values())
    triplets = list(committed_triplets)
    for path in MINED_FILES:
        triplets += read_triplets(path)[0]
    errors = check_positives(triplets, texts)
    negatives = [Triplet(t.anchor, n, (), t.where) for t in triplets for n in t.negatives]
    errors += [e.replace("positive", "negative", 1) for e in check_positives(negatives, texts)]
    errors += [f"{t.where}: positive_id {t.positive_id} is not the positive's point"
               for t in triplets if t.positive_id is not None and by_id.get(t.positive_id) != t.positive]
    assert errors == [], f"{len(errors)} problems:\n" + "\n".join(errors)



@pytest.mark.skipif(not MINED_FILES, reason="no mined hard negatives committed")
def test_mined_rows_extend_training_rows_and_never_dev_rows(
    committed_triplets: list[Triplet],
) -> None:
    """Mined rows keep their source row (anchor, positive, authored negative) and add
    negatives; no held-out dev anchor is among them."""
    train, dev = split_dev(committed_triplets)
    by_anchor = {t.anchor: t for t in train}
    dev_anchors = {t.anchor for t in dev}
    for path in MINED_FILES:
        rows, problems = read_triplets(path)
        assert problems == [] and rows
        for row in rows:
            assert row.anchor not in dev_anchors
            source = by_anchor[row.anchor]
            assert row.positive == source.positive
            # The source row's own negative comes first; the negatives mined into the data
            # files since (``training.mine --write-back``) are another mining, not a prefix.
            assert row.negatives[0] == source.negatives[0]
            assert len(set(row.negatives)) == len(row.negatives) > 1
            assert row.positive not in row.negatives


def test_char_postings_rows_and_counts_of_chinese_characters_only():
    postings = char_postings(["明日复明日", "床前明月光", "hello 春"])
    rows, counts = postings["明"]
    assert rows.tolist() == [0, 1] and counts.tolist() == [2.0, 1.0]
    assert postings["春"][0].tolist() == [2]
    assert "h" not in postings and "，" not in postings
