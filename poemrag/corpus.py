"""The Tang poetry corpus as poems and indexable couplets.

Point ids are stable: ``poem_index * 1000 + line`` where ``poem_index`` is the poem's position
in the pinned corpus (poem files in numeric order, records in file order) and ``line`` the
paragraph index within the poem (no Tang poem has 1000 paragraphs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poemrag.chinese import to_simplified
from poemrag.cleaning import CleaningReport, clauses, clean_paragraph
from poemrag.errors import CorpusError
from poemrag.settings import LINES_PER_POEM
from poemrag.sources import CorpusFiles, CorpusManifest, CorpusSource, fetch_tarball

DYNASTY = "唐"


def point_id(poem_index: int, line: int) -> int:
    """Stable integer point id of paragraph ``line`` of poem number ``poem_index``."""
    if not 0 <= line < LINES_PER_POEM:
        raise ValueError(f"paragraph index out of range: {line}")
    return poem_index * LINES_PER_POEM + line


def poem_form(lines: list[str]) -> str:
    """五言 or 七言 when every clause of the poem has 5 or 7 characters, else 杂言."""
    lengths = {len(c) for line in lines for c in clauses(line)}
    if lengths == {5}:
        return "五言"
    if lengths == {7}:
        return "七言"
    return "杂言"


@dataclass(frozen=True, slots=True)
class Couplet:
    """One indexable paragraph (normally a couplet) with its metadata."""

    id: int
    text: str
    text_traditional: str
    title: str
    author: str
    poem_id: str
    poem_index: int
    line: int
    form: str
    tags: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        """Qdrant payload in LangChain's convention: ``page_content`` + nested ``metadata``."""
        return {
            "page_content": self.text,
            "metadata": {
                "title": self.title,
                "author": self.author,
                "dynasty": DYNASTY,
                "poem_id": self.poem_id,
                "poem_index": self.poem_index,
                "line": self.line,
                "form": self.form,
                "tags": list(self.tags),
                "text_traditional": self.text_traditional,
            },
        }


@dataclass(frozen=True, slots=True)
class Poem:
    """A poem of the corpus with its cleaned, simplified couplets."""

    index: int
    poem_id: str
    title: str
    author: str
    couplets: tuple[Couplet, ...]

    @property
    def text(self) -> str:
        return "".join(c.text for c in self.couplets)


@dataclass
class Corpus:
    """Poems of the Tang collection in pinned order, plus the cleaning report."""

    poems: list[Poem]
    report: CleaningReport
    author_bios: dict[str, str] = field(default_factory=dict)

    def couplets(self) -> Iterator[Couplet]:
        for poem in self.poems:
            yield from poem.couplets

    def __len__(self) -> int:
        return sum(len(p.couplets) for p in self.poems)


def _tag_index(records: list[dict[str, Any]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Tags of 唐诗三百首 keyed by poem id and, as a fallback, by first paragraph."""
    by_id: dict[str, list[str]] = {}
    by_first: dict[str, list[str]] = {}
    for rec in records:
        tags = [to_simplified(t) for t in rec.get("tags") or []]
        if rec.get("id"):
            by_id[rec["id"]] = tags
        if rec.get("paragraphs"):
            by_first[rec["paragraphs"][0]] = tags
    return by_id, by_first


def _str_field(rec: dict[str, Any], key: str, where: str) -> str:
    value = rec.get(key, "")
    if not isinstance(value, str):
        raise CorpusError(f"corrupt corpus record {where}: field {key!r} is not a string")
    return value


def build_corpus(files: CorpusFiles, sample: bool = False, limit: int | None = None) -> Corpus:
    """Clean and convert parsed corpus files into poems and couplets.

    ``sample`` keeps only poems of 唐诗三百首; ``limit`` stops after that many couplets.
    """
    report = CleaningReport()
    tags_by_id, tags_by_first = _tag_index(files.tags)
    poems: list[Poem] = []
    kept = 0
    index = -1
    for file_no, records in enumerate(files.poem_files):
        for rec_no, rec in enumerate(records):
            index += 1
            where = f"file {file_no} record {rec_no}"
            if not isinstance(rec, dict) or not isinstance(rec.get("paragraphs"), list):
                raise CorpusError(f"corrupt corpus record {where}: no paragraphs list")
            paragraphs = rec["paragraphs"]
            first = paragraphs[0] if paragraphs else ""
            tags = tags_by_id.get(rec.get("id", "")) or tags_by_first.get(first)
            if sample and tags is None:
                continue
            own_tags = [to_simplified(t) for t in rec.get("tags") or [] if isinstance(t, str)]
            all_tags = tuple(dict.fromkeys([*(tags or []), *own_tags]))
            poem = _build_poem(index, rec, where, all_tags, report)
            if limit is not None and kept + len(poem.couplets) > limit:
                poem = Poem(
                    poem.index, poem.poem_id, poem.title, poem.author, poem.couplets[: limit - kept]
                )
            if poem.couplets:
                poems.append(poem)
                kept += len(poem.couplets)
            if limit is not None and kept >= limit:
                return Corpus(poems, report, _bios(files))
    return Corpus(poems, report, _bios(files))


def _build_poem(
    index: int, rec: dict[str, Any], where: str, tags: tuple[str, ...], report: CleaningReport
) -> Poem:
    poem_id = _str_field(rec, "id", where)
    title_t = _str_field(rec, "title", where)
    author_t = _str_field(rec, "author", where)
    verses: list[tuple[int, str]] = []
    for line, paragraph in enumerate(rec["paragraphs"]):
        if not isinstance(paragraph, str):
            raise CorpusError(f"corrupt corpus record {where}: paragraph {line} is not a string")
        cleaned = clean_paragraph(paragraph, report)
        if cleaned is not None:
            verses.append((line, cleaned))
    simplified = [to_simplified(text) for _, text in verses]
    form = poem_form(simplified)
    title, author = to_simplified(title_t), to_simplified(author_t)
    couplets = tuple(
        Couplet(
            id=point_id(index, line),
            text=simple,
            text_traditional=trad,
            title=title,
            author=author,
            poem_id=poem_id,
            poem_index=index,
            line=line,
            form=form,
            tags=tags,
        )
        for (line, trad), simple in zip(verses, simplified, strict=True)
    )
    return Poem(index, poem_id, title, author, couplets)


def _bios(files: CorpusFiles) -> dict[str, str]:
    return {
        to_simplified(a["name"]): to_simplified(a.get("desc", ""))
        for a in files.authors
        if isinstance(a, dict) and isinstance(a.get("name"), str)
    }


def resolve_source(source: Path | None, cache_dir: Path, manifest: CorpusManifest) -> Path:
    """The corpus path to read: ``source`` if given, else the pinned tarball (fetched once)."""
    if source is not None:
        return source
    return fetch_tarball(cache_dir, manifest)


def load_corpus(
    source: Path | None = None,
    *,
    sample: bool = False,
    limit: int | None = None,
    cache_dir: Path | None = None,
    manifest: CorpusManifest | None = None,
) -> Corpus:
    """Load the Tang corpus from ``source`` (tarball or directory) or the pinned npm tarball."""
    manifest = manifest or CorpusManifest.load()
    if cache_dir is None:
        from poemrag.settings import Settings

        cache_dir = Settings().corpus_dir
    path = resolve_source(source, cache_dir, manifest)
    return build_corpus(CorpusSource(path, manifest).read(), sample=sample, limit=limit)
