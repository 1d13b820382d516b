"""``python -m poemrag.ingest``: load the Tang corpus into the vector store.

Idempotent and resumable: points have stable ids, couplets already stored are skipped, so a
rerun after an interruption continues where it stopped and ends with one point per couplet.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from poemrag.batching import batched
from poemrag.cli import run_cli
from poemrag.corpus import Corpus, Couplet, load_corpus
from poemrag.embeddings import PoemEmbeddings
from poemrag.settings import UPSERT_BATCH, Settings
from poemrag.store import PoemStore, check_same_model, open_store

ID_CHECK_BATCH = 2048


@dataclass
class IngestSummary:
    """What an ingest run did."""

    paragraphs_read: int = 0
    dropped_by_rule: dict[str, int] = field(default_factory=dict)
    couplets: int = 0
    already_stored: int = 0
    embedded: int = 0
    written: int = 0
    points_in_store: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped_by_rule.items())) or "none"
        rate = self.embedded / self.seconds if self.seconds else 0.0
        return [
            f"read        {self.paragraphs_read} paragraphs",
            f"dropped     {sum(self.dropped_by_rule.values())} ({dropped})",
            f"couplets    {self.couplets} ({self.already_stored} already stored)",
            f"embedded    {self.embedded}",
            f"written     {self.written}",
            f"in store    {self.points_in_store}",
            f"seconds     {self.seconds:.1f} ({rate:.0f} couplets/s)",
        ]


def pending_couplets(store: PoemStore, couplets: list[Couplet]) -> list[Couplet]:
    """The couplets whose ids are not in the store yet."""
    stored: set[int] = set()
    for chunk in batched(couplets, ID_CHECK_BATCH):
        stored |= store.existing_ids([c.id for c in chunk])
    return [c for c in couplets if c.id not in stored]


def ingest(
    corpus: Corpus,
    embeddings: PoemEmbeddings,
    store: PoemStore,
    *,
    recreate: bool = False,
    write_batch: int = UPSERT_BATCH,
    progress: bool = True,
) -> IngestSummary:
    """Embed and write every couplet of ``corpus`` not yet in ``store``."""
    started = time.perf_counter()
    summary = IngestSummary(
        paragraphs_read=corpus.report.read,
        dropped_by_rule=dict(corpus.report.dropped),
    )
    couplets = list(corpus.couplets())
    summary.couplets = len(couplets)
    # A store that writes through mmap (Edge) dies with SIGBUS on a full disk: check first.
    new_collection = store.vector_size() is None
    if new_collection:
        store.check_free_space(len(couplets), embeddings.dimension)
    store.ensure_collection(embeddings.dimension, model=embeddings.model, recreate=recreate,
                            fingerprint=embeddings.fingerprint)
    todo = pending_couplets(store, couplets)
    summary.already_stored = len(couplets) - len(todo)
    if todo and not new_collection:
        store.check_free_space(len(todo), embeddings.dimension)
    with tqdm(
        total=len(couplets),
        initial=summary.already_stored,
        unit="couplet",
        desc="embedding",
        disable=not progress,
        smoothing=0.05,
    ) as bar:
        for chunk in batched(todo, write_batch):
            vectors = embeddings.encode_documents([c.text for c in chunk])
            summary.embedded += len(chunk)
            store.upsert([c.id for c in chunk], vectors, [c.payload() for c in chunk])
            summary.written += len(chunk)
            bar.update(len(chunk))
    if progress:
        print("building the HNSW index…", file=sys.stderr)
    store.finish()
    summary.points_in_store = store.count()
    summary.seconds = time.perf_counter() - started
    return summary


def check_compatible(store: PoemStore, embeddings: PoemEmbeddings, recreate: bool) -> None:
    """Refuse, before any work, a collection embedded by another model (vector size or
    weights fingerprint)."""
    if not recreate:
        check_same_model(store, embeddings.dimension, embeddings.fingerprint, "the collection")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m poemrag.ingest",
        description="Load the Tang poetry corpus into the poemrag vector store.",
    )
    parser.add_argument("--source", type=Path, help="chinese-poetry tarball or unpacked directory")
    parser.add_argument("--sample", action="store_true", help="only 唐诗三百首 (a quick try)")
    parser.add_argument("--limit", type=int, help="stop after N couplets")
    parser.add_argument("--recreate", action="store_true", help="delete and rebuild the collection")
    parser.add_argument("--batch-size", type=int, help="texts per embedding batch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {"batch_size": args.batch_size} if args.batch_size else {}
    settings = Settings(**overrides)
    started = time.perf_counter()
    store = open_store(settings)  # first: an unreachable server fails before the model loads
    try:
        embeddings = PoemEmbeddings.from_settings(settings)
        check_compatible(store, embeddings, args.recreate)
        if not args.quiet:
            print("reading the corpus…", file=sys.stderr)
        corpus = load_corpus(
            args.source, sample=args.sample, limit=args.limit, cache_dir=settings.corpus_dir
        )
        summary = ingest(
            corpus,
            embeddings,
            store,
            recreate=args.recreate,
            write_batch=settings.upsert_batch_size,
            progress=not args.quiet,
        )
    finally:
        store.close()
    summary.seconds = time.perf_counter() - started
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
