"""The cleaning rules on real paragraphs of the corpus (traditional characters, as stored)."""

import pytest

from poemrag.cleaning import DROP_RULES, EDITS, CleaningReport, clean_paragraph, drop_reason

KEPT = [
    ("秦川雄帝宅，函谷壯皇居。", "秦川雄帝宅，函谷壯皇居。"),
    ("床前看月光，疑是地上霜。", "床前看月光，疑是地上霜。"),
    ("  白日依山盡，黃河入海流。 ", "白日依山盡，黃河入海流。"),
    ("終日愧無政，與君聊散（《剡錄》作「放」）襟。", "終日愧無政，與君聊散襟。"),
    ("聲喧高疊（疑）外，曲韻楚琴中。", "聲喧高疊外，曲韻楚琴中。"),
    ("無聊燃[蜜]炬，誰復勸金舠。", "無聊燃蜜炬，誰復勸金舠。"),
    ("處[滿]（蒲）常憚溢，居高本慮傾。", "處滿常憚溢，居高本慮傾。"),
    ("曉渭度簷帆的的，晚原含雨樹重重。", "曉渭度簷帆的的，晚原含雨樹重重。"),
    ("可能有事關心後，得似無人識面時。", "可能有事關心後，得似無人識面時。"),
]

DROPPED = [
    ("", "empty"),
    ("   ", "empty"),
    ("。", "no_chinese"),
    ("）。", "no_chinese"),
    ("（見影印天一閣藏《正德汝州志》卷七）", "bracketed_note"),
    ("（《梅花字字香後集》）。", "bracketed_note"),
    ("）恰似黃金在鑛中，鍊去金砂金體淨。", "bracketed_note"),
    ("日本汉学家丰田穰氏所撰《全唐诗纠谬》，颇多发明。", "book_citation"),
    ("又見百卷本《法苑珠林》卷五四。", "book_citation"),
    ("第七句作「還取同心契」。", "quotation"),
    ("教里閭勃興遠是効敦□崇德心因，慕之慎□。", "lacuna"),
    ("見伯3724卷。", "latin_or_digits"),
    ("空持一竿餌，有意\ue85a鯨魚。", "private_use_char"),
    ("他的思想和節操似比前一佚名落蕃人高一等。", "prose"),
    ("今收入先宋詩，以俟考定。", "commentary"),
    ("此首承陶敏先生錄示。", "commentary"),
]


@pytest.mark.parametrize(("paragraph", "expected"), KEPT)
def test_verse_is_kept(paragraph: str, expected: str) -> None:
    assert clean_paragraph(paragraph) == expected


@pytest.mark.parametrize(("paragraph", "rule"), DROPPED)
def test_non_verse_is_dropped_by_rule(paragraph: str, rule: str) -> None:
    assert clean_paragraph(paragraph) is None
    assert drop_reason(paragraph.strip()) == rule


def test_every_rule_is_exercised_and_documented() -> None:
    used = {rule for _, rule in DROPPED}
    assert used == {r.name for r in DROP_RULES}
    assert all(r.reason for r in DROP_RULES) and all(e.reason for e in EDITS)


def test_report_counts_reads_keeps_drops_and_edits() -> None:
    report = CleaningReport()
    for paragraph, _ in KEPT + DROPPED:
        clean_paragraph(paragraph, report)
    assert report.read == len(KEPT) + len(DROPPED)
    assert report.kept == len(KEPT)
    assert report.dropped_total == len(DROPPED)
    assert report.edited["inline_note"] == 3
    assert report.edited["restoration_brackets"] == 2
