"""Runs ``python -m poemrag.ingest`` with one fault injected (used by test_reliability.py).

    FAULT_AT=<point>[:<nth>] FAULT_ACTION=pause|enospc python tests/_fault_driver.py ARGS...

Points (the nth time the code gets there, default 1):

* ``fetch``    after ``npm pack`` wrote its (partial) tarball into the private temp directory
* ``read``     before parsing a JSON member of the corpus source
* ``create``   right after the Edge shard is created, before its indexes and metadata file
* ``embed``    before an embedding batch is computed
* ``upsert``   right after a write batch reached the store (written, not flushed)
* ``upsert-before``  before a write batch reaches the store
* ``index``    in ``finish()``: after the flush, before the optimizer builds the HNSW index

Actions: ``pause`` prints ``FAULT <point>`` on stdout and waits until the parent kills the
process (SIGKILL) or creates the file named by ``FAULT_GO``; ``enospc`` raises
``OSError(ENOSPC)`` there, like a full disk. ``FAKE_INTEGRITY`` replaces the pinned tarball
hash (to fetch a fixture tarball through a fake npm). ``SKIP_SPACE_CHECK=1`` turns off the
free-disk-space check (to let a write run into a full disk).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from poemrag import edge_store, encoders, ingest, sources
from poemrag.cli import run_cli

SPEC = os.environ.get("FAULT_AT", "")
POINT, _, NTH = SPEC.partition(":")
NTH_CALL = int(NTH or 1)
ACTION = os.environ.get("FAULT_ACTION", "pause")
_calls: dict[str, int] = {}


def fault(point: str, path: str = "") -> None:
    """Inject the fault if ``point`` is the configured one and this is its nth visit."""
    if point != POINT:
        return
    _calls[point] = _calls.get(point, 0) + 1
    if _calls[point] != NTH_CALL:
        return
    if ACTION == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path or None)
    print(f"FAULT {point}", flush=True)
    go = os.environ.get("FAULT_GO")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if go and Path(go).exists():
            return
        time.sleep(0.02)
    raise SystemExit(f"fault driver: nobody killed or released {point}")


def install() -> None:
    real_run = sources.subprocess.run

    class _Subprocess:
        def __getattr__(self, name: str):
            return getattr(__import__("subprocess"), name)

        @staticmethod
        def run(*args, **kwargs):
            proc = real_run(*args, **kwargs)
            fault("fetch")
            return proc

    sources.subprocess = _Subprocess()  # type: ignore[assignment]

    real_parse = sources._parse_json

    def parse(name, raw, source):
        fault("read", str(source))
        return real_parse(name, raw, source)

    sources._parse_json = parse

    real_qe = edge_store.qe

    class _Shard:
        @staticmethod
        def create(*args):
            shard = real_qe.EdgeShard.create(*args)
            fault("create")
            return shard

        load = staticmethod(real_qe.EdgeShard.load)

    class _Qe:
        EdgeShard = _Shard

        def __getattr__(self, name: str):
            return getattr(real_qe, name)

    edge_store.qe = _Qe()  # type: ignore[assignment]

    real_encode = encoders.OnnxEncoder.encode

    def encode(self, texts, batch_size):
        fault("embed")
        return real_encode(self, texts, batch_size)

    encoders.OnnxEncoder.encode = encode  # type: ignore[method-assign]

    real_upsert = edge_store.EdgeStore.upsert

    def upsert(self, ids, vectors, payloads):
        fault("upsert-before", str(self.path))
        real_upsert(self, ids, vectors, payloads)
        fault("upsert", str(self.path))

    edge_store.EdgeStore.upsert = upsert  # type: ignore[method-assign]

    real_finish = edge_store.EdgeStore.finish

    def finish(self):
        self.shard.flush()
        fault("index", str(self.path))
        real_finish(self)

    edge_store.EdgeStore.finish = finish  # type: ignore[method-assign]


def pin_integrity() -> None:
    integrity = os.environ.get("FAKE_INTEGRITY")
    if integrity:
        real_load = sources.CorpusManifest.load.__func__

        def load(cls, path=None):
            return replace(real_load(cls, path), integrity=integrity)

        sources.CorpusManifest.load = classmethod(load)  # type: ignore[method-assign]


if __name__ == "__main__":
    pin_integrity()
    if os.environ.get("SKIP_SPACE_CHECK"):
        edge_store.EdgeStore.check_free_space = lambda self, points, dim: None  # type: ignore
    if POINT:
        install()
    sys.exit(run_cli(ingest.main, sys.argv[1:]))
