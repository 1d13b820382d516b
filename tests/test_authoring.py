"""training.authoring: dealing candidate couplets, checking writers' rows, building triplets."""

from __future__ import annotations

import json
from pathlib import Path

from training.authoring import (
    IndexedCouplet,
    RawRow,
    build_rows,
    check_rows,
    deal_candidates,
    main,
    near_duplicates,
    read_raw,
)
from training.data import Triplet, lint_authored, read_triplets, shared_chars

COUPLETS = [
    IndexedCouplet(1000, "归来饱饭黄昏后，不脱蓑衣卧月明。", "牧童", "吕岩", 1, False),
    IndexedCouplet(1001, "草铺横野六七里，笛弄晚风三四声。", "牧童", "吕岩", 1, False),
    IndexedCouplet(1002, "牧童归去横牛背，短笛无腔信口吹。", "牧童", "吕岩", 1, False),
    IndexedCouplet(2000, "山中相送罢，日暮掩柴扉。", "送别", "王维", 2, True),
    IndexedCouplet(3000, "故人具鸡黍，邀我至田家。", "过故人庄", "孟浩然", 3, False),
    IndexedCouplet(4000, "火锅沸腾夜，三更人未眠。", "夜宴", "无名", 4, False),
    IndexedCouplet(5000, "大明宫里奏韶乐，享祀千秋万岁声。", "郊庙歌辞 享太庙乐章", "无名", 5, False),
    IndexedCouplet(6000, "江上往来人，但爱鲈鱼美。", "江上渔者", "范仲淹", 6, False),
    IndexedCouplet(7000, "烽火连三月，家书抵万金。", "春望", "杜甫", 7, False),
]
INDEX = {c.id: c for c in COUPLETS}


def row(pid: int, anchor: str, line: int, negative_id: int | None = None) -> RawRow:
    return RawRow(pid, anchor, negative_id, f"raw.jsonl:{line}")


def test_candidates_are_disjoint_one_per_poem_and_skip_famous_used_and_ritual_poems() -> None:
    slices = deal_candidates(INDEX, slices=2, per_slice=10, used_couplets={6000}, seed=0)
    picked = [c for part in slices for c in part]
    poems = [c.poem_index for c in picked]
    assert len(poems) == len(set(poems)) == 4  # poems 1, 3, 4, 7
    assert set(poems) == {1, 3, 4, 7}
    assert not {c.id for c in slices[0]} & {c.id for c in slices[1]}
    assert deal_candidates(INDEX, 2, 10, {6000}, seed=0) == slices
    first = deal_candidates(INDEX, 1, 2, {6000}, seed=0)[0]
    later = deal_candidates(INDEX, 1, 2, {6000}, seed=0, start=2)[0]
    assert {c.poem_index for c in first} | {c.poem_index for c in later} == {1, 3, 4, 7}


def test_second_round_deals_another_couplet_of_poems_with_one_row() -> None:
    for seed in range(5):
        [second] = deal_candidates(INDEX, 1, 10, {1000, 3000, 6000}, seed=seed, poem_rows=1)
        assert {c.poem_index for c in second} == {1}  # 3 and 6 have no other quotable couplet
        assert second[0].id in {1001, 1002}
    assert deal_candidates(INDEX, 1, 10, {1000, 1001}, seed=0, poem_rows=1) == [[]]  # 1002 only
    twin = {**INDEX, 8000: IndexedCouplet(8000, INDEX[3000].text, "过故人庄（一作）", "无名", 8, False)}
    assert 8 not in {c.poem_index for c in deal_candidates(twin, 1, 10, {3000}, seed=0)[0]}


def test_shared_characters_count_distinct_chinese_characters_only() -> None:
    assert shared_chars("月明！月明！今晚的月亮", "不脱蓑衣卧月明。") == {"月", "明"}
    t = Triplet("放学后在田埂上吹着笛子，晚风里慢慢走回家", COUPLETS[1].text, (), "f:1", 1001)
    assert lint_authored(t) == [("f:1: message shares 4 characters with its couplet "
                                "(晚笛里风; at most 3)")]
    # Three distinct characters, but one repeated: a copied run all the same.
    t = Triplet("离家那天，我一步一回头。", "一步一回首，迟迟向近关。", (), "f:2", 1)
    assert lint_authored(t) == ["f:2: anchor copies '一步一回' from its positive"]


def test_check_reports_every_rule_with_file_and_line() -> None:
    rows = [
        row(1000, "加完班扒拉两口外卖，衣服都懒得换就倒头睡了", 1),
        row(1001, "周末陪孩子去郊外放风筝，远处有人在吹口琴", 2),   # second couplet of a poem: fine
        row(3000, "老同学杀了只土鸡，喊我周末去他乡下住两天", 3),
        row(3000, "好短", 4),                                       # too short (and same couplet)
        row(9999, "不存在的编号写的一条消息", 5),
        row(7000, "打仗的时候一封信可比什么都贵重，战火连三个月", 6),  # shares 4 characters
        row(4000, "加完班扒拉两口外卖，衣服都懒得换就倒头睡了", 7),   # duplicate message
        row(6000, "周末在江边看人钓鱼，大家都馋那口鲜", 8, negative_id=6000),
    ]
    problems = check_rows(rows, INDEX)
    assert not [p for p in problems if p.startswith("raw.jsonl:2:")]
    assert "raw.jsonl:4: the couplet already has a row (raw.jsonl:3)" in problems
    assert "raw.jsonl:4: message has 2 characters (allowed 8-80)" in problems
    assert "raw.jsonl:5: 9999 is not a corpus point id" in problems
    assert any(p.startswith("raw.jsonl:6: message shares 4 characters") for p in problems)
    assert "raw.jsonl:7: duplicate message (first at raw.jsonl:1)" in problems
    assert "raw.jsonl:8: the negative comes from the positive's own poem" in problems
    assert not [p for p in problems if p.startswith("raw.jsonl:3:")]


def test_a_poem_gives_at_most_two_rows_counting_existing_ones() -> None:
    existing = [Triplet("傍晚骑着电动车回家，路边有人在吹笛子", COUPLETS[1].text, ("y",), "old.jsonl:3")]
    rows = [row(1000, "加完班扒拉两口外卖，衣服都懒得换就倒头睡了", 1),
            row(1002, "小侄子放学路上骑在他爸肩膀上，嘴里瞎哼着歌", 2)]
    assert check_rows(rows, INDEX, existing) == [
        "raw.jsonl:2: poem 《牧童》 already has 2 rows (old.jsonl:3, raw.jsonl:1)"]


def test_existing_rows_take_their_messages() -> None:
    existing = [Triplet("老同学杀了只土鸡，喊我周末去他乡下住两天", "x", ("y",), "old.jsonl:9")]
    problems = check_rows([row(3000, "老同学杀了只土鸡，喊我周末去他乡下住两天", 1)], INDEX, existing)
    assert problems == ["raw.jsonl:1: duplicate message (first at old.jsonl:9)"]


def test_near_duplicates_catch_one_template_with_other_nouns_only() -> None:
    anchors = [
        "今天和同事去吃火锅，热热闹闹的好开心",
        "今天和同学去吃烧烤，热热闹闹的好开心",
        "外婆打电话问我冷不冷，让我多穿点衣服",
        "加班到半夜，地铁都停了，只能打车回家",
    ]
    assert [(i, j) for i, j, _ in near_duplicates(anchors)] == [(0, 1)]


def test_build_uses_the_authored_negative_or_a_surface_match_outside_the_poem() -> None:
    rows = [
        row(1000, "加完班扒拉两口外卖，衣服都懒得换就倒头睡了", 1, negative_id=2000),
        row(3000, "老同学杀了只土鸡，喊我三更半夜去他家吃火锅", 2),
    ]
    built = build_rows(rows, INDEX)
    assert built[0]["negative_id"] == 2000 and built[0]["negative_kind"] == "authored"
    assert built[0]["positive"] == COUPLETS[0].text and built[0]["positive_id"] == 1000
    second = built[1]
    assert second["negative_kind"] == "lexical" and second["negative_id"] == 4000
    assert len(shared_chars(rows[1].anchor, str(second["negative"]))) >= 2


def write_index(tmp_path: Path) -> Path:
    index = tmp_path / "couplets.jsonl"
    index.write_text("".join(
        json.dumps({"id": c.id, "text": c.text, "title": c.title, "author": c.author,
                    "poem_index": c.poem_index, "famous": c.famous}, ensure_ascii=False) + "\n"
        for c in COUPLETS), "utf-8")
    return index


def test_candidates_command_leaves_out_the_poems_of_every_data_file(tmp_path: Path) -> None:
    v2 = tmp_path / "chat_v2_01.jsonl"
    v2.write_text(json.dumps({"anchor": "老同学杀了只土鸡，喊我去他家吃饭", "positive": INDEX[3000].text,
                              "negative": INDEX[4000].text, "positive_id": 3000},
                             ensure_ascii=False) + "\n", "utf-8")
    out = tmp_path / "slices"
    args = ["--index", str(write_index(tmp_path)), "candidates", "--slices", "1", "--per-slice", "10",
            "--out", str(out), "--existing", str(v2)]
    assert main(args) == 0
    dealt = [json.loads(line)["id"] for line in (out / "slice_1.jsonl").read_text("utf-8").splitlines()]
    assert {INDEX[i].poem_index for i in dealt} == {1, 4, 6, 7}  # poem 3 has a v2 row


def test_check_and_build_commands(tmp_path: Path) -> None:
    index = write_index(tmp_path)
    raw = tmp_path / "batch.jsonl"
    raw.write_text(
        json.dumps({"id": 1000, "anchor": "加完班扒拉两口外卖，衣服都懒得换就倒头睡了",
                    "negative_id": 2000},
                   ensure_ascii=False) + "\n"
        + json.dumps({"id": 3000, "anchor": "老同学杀了只土鸡，喊我三更半夜去他家吃火锅"},
                     ensure_ascii=False) + "\n"
        + '{"id": "x"}\n', "utf-8")
    out = tmp_path / "data"
    assert main(["--index", str(index), "check", str(raw), "--existing"]) == 1
    rows, problems = read_raw([raw])
    assert len(rows) == 2 and problems == [f"{raw}:3: expected {{\"id\": point id, \"anchor\": message}}"]
    assert main(["--index", str(index), "build", str(raw), "--out", str(out), "--existing"]) == 0
    built, problems = read_triplets(out / "chat_v2_01.jsonl")
    assert problems == [] and [t.positive_id for t in built] == [1000, 3000]
    assert all(lint_authored(t) == [] for t in built)

    # A later round goes to the next file; by default it is checked against every file of --out.
    later = tmp_path / "later.jsonl"
    later.write_text(
        json.dumps({"id": 1000, "anchor": "下班路上看见晚霞，突然不想回家了"}, ensure_ascii=False) + "\n"
        + json.dumps({"id": 4000, "anchor": "加班到深夜，出门一抬头月亮明晃晃的"},
                     ensure_ascii=False) + "\n", "utf-8")
    assert main(["--index", str(index), "build", str(later), "--out", str(out)]) == 0
    assert [t.positive_id for t in read_triplets(out / "chat_v2_01.jsonl")[0]] == [1000, 3000]
    assert [t.positive_id for t in read_triplets(out / "chat_v2_02.jsonl")[0]] == [4000]


def test_stats_describe_rows_poems_lengths_and_overlap() -> None:
    from training.authoring import stats

    rows = [Triplet("加完班扒拉两口外卖，衣服都懒得换就倒头睡了", COUPLETS[0].text, ("n",), "f:1", 1000),
            Triplet("送走老同学，一个人回到空荡荡的出租屋，把门一关？", COUPLETS[2].text, ("n", "m"),
                    "f:2", 2000)]
    text = stats(rows, INDEX)
    assert "rows 2" in text and "distinct poems 2, from 唐诗三百首 1 (50.0%)" in text
    assert "21-40: 2 (100%)" in text and "questions 50%" in text
    assert "rows with mined negatives 1" in text
