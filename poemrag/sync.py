"""``python -m poemrag.sync``: copy the embedded Edge collection to a Qdrant server.

Nothing is re-embedded: ids, vectors and payloads are read back from the Edge shard and upserted
in batches. Resumable: points already on the server are skipped, so a rerun after an
interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

from poemrag.batching import batched
from poemrag.cli import run_cli
from poemrag.edge_store import EdgeStore
from poemrag.errors import StoreError
from poemrag.server_store import ServerStore
from poemrag.settings import Settings
from poemrag.store import DISTANCE


@dataclass
class SyncSummary:
    """What a sync run did."""

    source_points: int = 0
    already_there: int = 0
    copied: int = 0
    points_on_server: int = 0
    seconds: float = 0.0

    def line(self, where: str) -> str:
        return (
            f"synced {self.source_points} points to {where}: {self.copied} copied, "
            f"{self.already_there} already there, {self.points_on_server} on the server "
            f"({self.seconds:.1f} s)"
        )


def check_target(edge: EdgeStore, server: ServerStore, recreate: bool) -> int:
    """The vector size to copy; refuses a server collection made for other vectors."""
    size = edge.vector_size()
    if size is None:
        raise StoreError(f"no collection at {edge.path}: run `python -m poemrag.ingest` first")
    if recreate:
        return size
    existing = server.vector_size()
    if existing is not None and existing != size:
        raise StoreError(
            f"collection {server.collection!r} on {server.where} holds {existing}-d vectors but "
            f"the embedded store holds {size}-d vectors; rerun with --recreate to replace it"
        )
    return size


def sync(
    edge: EdgeStore,
    server: ServerStore,
    *,
    recreate: bool = False,
    batch_size: int = 512,
    progress: bool = True,
) -> SyncSummary:
    """Copy every point of ``edge`` that ``server`` does not hold yet."""
    started = time.perf_counter()
    size = check_target(edge, server, recreate)
    server.ensure_collection(size, model=edge.model, recreate=recreate,
                             fingerprint=edge.model_fingerprint() or "")
    summary = SyncSummary(source_points=edge.count())
    with tqdm(
        total=summary.source_points, unit="point", desc="syncing", disable=not progress
    ) as bar:
        for chunk in batched(edge.scroll_points(batch=batch_size), batch_size):
            there = server.existing_ids([pid for pid, _, _ in chunk])
            todo = [p for p in chunk if p[0] not in there]
            if todo:
                server.upsert(
                    [pid for pid, _, _ in todo],
                    [vector for _, vector, _ in todo],
                    [payload for _, _, payload in todo],
                )
            summary.already_there += len(chunk) - len(todo)
            summary.copied += len(todo)
            bar.update(len(chunk))
    server.finish()
    summary.points_on_server = server.count()
    summary.seconds = time.perf_counter() - started
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m poemrag.sync",
        description=(
            "Copy the embedded collection to the Qdrant server at POEMRAG_QDRANT_URL "
            f"(vectors and payloads as stored, {DISTANCE}; nothing is re-embedded)."
        ),
    )
    parser.add_argument(
        "--recreate", action="store_true", help="delete and rebuild the server collection first"
    )
    parser.add_argument("--batch-size", type=int, help="points per upsert request")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    if not settings.qdrant_url:
        raise StoreError("set POEMRAG_QDRANT_URL to the Qdrant server to copy the collection to")
    batch = args.batch_size or settings.upsert_batch_size
    if batch < 1:
        raise StoreError("--batch-size must be at least 1")
    edge = EdgeStore(settings.store_path)
    try:
        if not edge.exists():
            raise StoreError(f"no collection at {edge.path}: run `python -m poemrag.ingest` first")
        server = ServerStore.connect(settings)
        server.batch_size = batch
        try:
            summary = sync(
                edge, server, recreate=args.recreate, batch_size=batch, progress=not args.quiet
            )
        finally:
            server.close()
    finally:
        edge.close()
    print(summary.line(server.where))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
