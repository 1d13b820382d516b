"""Corpus reading: sources, ids, metadata, bad input."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from poemrag.corpus import LINES_PER_POEM, load_corpus, poem_form, point_id
from poemrag.errors import CorpusError
from poemrag.sources import CorpusManifest, fetch_tarball, integrity_of, verify_tarball

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"


def make_tarball(src: Path, dest: Path) -> Path:
    """Pack a fixture directory the way npm packs chinese-poetry (members under package/)."""
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src / "dist", arcname="package/dist")
    return dest


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(FIXTURE)


def test_ids_are_stable_and_ordered_by_numeric_file_offset(corpus) -> None:
    # poet.tang.9000.json must come before poet.tang.10000.json (numeric, not lexical order)
    titles = [p.title for p in corpus.poems]
    assert titles[0] == "帝京篇十首 一" and titles[5] == "登鹳雀楼" and titles[-1] == "易言"
    assert [p.index for p in corpus.poems] == list(range(len(corpus.poems)))
    ids = [c.id for c in corpus.couplets()]
    assert len(ids) == len(set(ids))
    assert ids == [c.poem_index * LINES_PER_POEM + c.line for c in corpus.couplets()]
    assert [c.id for c in load_corpus(FIXTURE).couplets()] == ids


def test_point_id_rejects_out_of_range_lines() -> None:
    assert point_id(3, 7) == 3007
    with pytest.raises(ValueError):
        point_id(0, LINES_PER_POEM)


def test_couplet_metadata_and_payload(corpus) -> None:
    first = next(corpus.couplets())
    assert first.text == "秦川雄帝宅，函谷壮皇居。"
    assert first.text_traditional == "秦川雄帝宅，函谷壯皇居。"
    payload = first.payload()
    assert payload["page_content"] == first.text
    meta = payload["metadata"]
    assert meta["author"] == "太宗皇帝" and meta["dynasty"] == "唐"
    assert meta["poem_id"] == "3ad6d468-7ff1-4a7b-8b24-a27d70d00ed4"
    assert meta["line"] == 0 and meta["form"] == "五言" and meta["tags"] == []
    assert "全" not in meta  # the full poem is not copied into points


def test_tags_come_from_the_300_poems(corpus) -> None:
    quiet_night = next(p for p in corpus.poems if p.title == "静夜思")
    assert quiet_night.author == "李白"
    assert "思乡" in quiet_night.couplets[0].tags
    assert quiet_night.couplets[0].text == "床前看月光，疑是地上霜。"


def test_notes_are_dropped_and_counted(corpus) -> None:
    notes = next(p for p in corpus.poems if p.title == "易言")
    assert [c.line for c in notes.couplets] == [0, 1]
    assert corpus.report.read == 48
    assert corpus.report.kept == len(corpus) == 43
    assert corpus.report.dropped_total == 5


@pytest.mark.parametrize(
    ("lines", "form"),
    [
        (["白日依山尽，黄河入海流。", "欲穷千里目，更上一层楼。"], "五言"),
        (["独在异乡为异客，每逢佳节倍思亲。"], "七言"),
        (["君不见黄河之水天上来，奔流到海不复回。"], "杂言"),
    ],
)
def test_poem_form(lines: list[str], form: str) -> None:
    assert poem_form(lines) == form


def test_sample_keeps_only_the_300_poems_and_limit_caps_couplets() -> None:
    sample = load_corpus(FIXTURE, sample=True)
    assert len(sample.poems) == 7 and all(c.tags for c in sample.couplets())
    limited = load_corpus(FIXTURE, limit=6)
    assert len(limited) == 6 and [c.id for c in limited.couplets()][-1] == 1001


def test_reads_a_tarball_like_a_directory(tmp_path: Path, corpus) -> None:
    tgz = make_tarball(FIXTURE, tmp_path / "fixture.tgz")
    from_tar = load_corpus(tgz)
    assert [c.payload() for c in from_tar.couplets()] == [c.payload() for c in corpus.couplets()]


def test_pinned_tarball_is_verified(tmp_path: Path) -> None:
    tgz = make_tarball(FIXTURE, tmp_path / "chinese-poetry-2.0.1.tgz")
    manifest = CorpusManifest.load()
    with pytest.raises(CorpusError, match="does not match the pinned"):
        fetch_tarball(tmp_path, manifest)  # cached file with the wrong hash is refused
    good = replace(manifest, integrity=integrity_of(tgz))
    assert fetch_tarball(tmp_path, good) == tgz
    verify_tarball(tgz, good)


def test_missing_npm_points_to_source(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="--source"):
        fetch_tarball(tmp_path, CorpusManifest.load())


def test_truncated_tarball_is_a_corpus_error(tmp_path: Path) -> None:
    tgz = make_tarball(FIXTURE, tmp_path / "fixture.tgz")
    data = tgz.read_bytes()
    tgz.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusError):
        load_corpus(tgz)


def test_corrupt_json_inside_a_valid_tarball(tmp_path: Path) -> None:
    tgz = tmp_path / "corrupt.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        raw = b'[{"author": "x", "paragraphs": ["a'
        info = tarfile.TarInfo("package/dist/quantangshi/poet.tang.0.json")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    with pytest.raises(CorpusError, match="corrupt JSON .*poet.tang.0.json"):
        load_corpus(tgz)


def test_wrong_record_shape_is_a_corpus_error(tmp_path: Path) -> None:
    root = tmp_path / "dist" / "quantangshi"
    root.mkdir(parents=True)
    (root / "poet.tang.0.json").write_text(json.dumps([{"title": "x"}]), encoding="utf-8")
    with pytest.raises(CorpusError, match="no paragraphs"):
        load_corpus(tmp_path)


@pytest.mark.parametrize("name", ["missing-dir", "not-a-tarball.txt"])
def test_unknown_source(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("hello")
    with pytest.raises(CorpusError):
        load_corpus(path)
