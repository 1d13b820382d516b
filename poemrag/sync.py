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

import numpy as np
from tqdm import tqdm

from poemrag.batching import batched
from poemrag.cli import run_cli
from poemrag.edge_store import EdgeStore
from poemrag.errors import StoreError
from poemrag.server_store import ServerStore
from poemrag.settings import Settings
from poemrag.store import DISTANCE, UPSERT_BATCH, CollectionState, PoemStore, check_collection


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


def check_target(src: PoemStore, dst: PoemStore, recreate: bool) -> CollectionState:
    """The source collection's state; refuses a target made for other vectors or weights."""
    state = src.state()
    check_collection(src.label, state, None, must_exist=True)
    assert state is not None and state.size is not None
    if not recreate:
        check_collection(dst.label, dst.state(), state.size, state.fingerprint,
                         fix="rerun with --recreate to replace it")
    return state


def sync(
    src: PoemStore,
    dst: PoemStore,
    *,
    recreate: bool = False,
    batch_size: int = UPSERT_BATCH,
    progress: bool = True,
) -> SyncSummary:
    """Copy every point of ``src`` that ``dst`` does not hold yet (any two stores: Edge to
    server, server to Edge, or server to server)."""
    started = time.perf_counter()
    state = check_target(src, dst, recreate)
    dst.ensure_collection(state.size or 0, model=state.model, recreate=recreate,
                          fingerprint=state.fingerprint)
    summary = SyncSummary(source_points=src.count())
    with tqdm(
        total=summary.source_points, unit="point", desc="syncing", disable=not progress
    ) as bar:
        for chunk in batched(src.scroll_points(batch=batch_size), batch_size):
            there = dst.existing_ids([pid for pid, _, _ in chunk])
            todo = [p for p in chunk if p[0] not in there]
            if todo:
                dst.upsert(
                    [pid for pid, _, _ in todo],
                    np.asarray([vector for _, vector, _ in todo], dtype=np.float32),
                    [payload for _, _, payload in todo],
                )
            summary.already_there += len(chunk) - len(todo)
            summary.copied += len(todo)
            bar.update(len(chunk))
    dst.finish()
    summary.points_on_server = dst.count()
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
        check_collection(edge.label, edge.state(), None, must_exist=True)
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
