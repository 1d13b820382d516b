"""Fault injection and hostile input: kills, locks, full and read-only disks, bad corpora,
mismatched models, arbitrary queries, concurrent callers.

Faults are injected by ``tests/_fault_driver.py`` (``python -m poemrag.ingest`` with a hook at
a named point); the kill tests SIGKILL the ingest process when the driver reports it has
reached that point, then rerun it and compare the store with an uninterrupted run's.
Everything uses the tiny encoder and the fixture corpus, so the module runs in about a minute.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import select
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document

from poemrag import ingest, search
from poemrag.cli import run_cli
from poemrag.edge_store import EdgeStore, space_needed
from poemrag.errors import StoreError
from poemrag.retriever import EmptyQueryError, PoemRetriever
from poemrag.settings import Settings
from poemrag.sources import integrity_of

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "corpus"
DRIVER = Path(__file__).parent / "_fault_driver.py"
COUPLETS = 43  # the fixture corpus after cleaning
SMALL_BATCHES = {"POEMRAG_BATCH_SIZE": "4", "POEMRAG_UPSERT_BATCH_SIZE": "8"}  # 6 writes
DRIVER_TIMEOUT = 120
TINY_DIM = 48  # tests/conftest.py's tiny encoder


# -- helpers ----------------------------------------------------------------------------------


def make_tarball(dest: Path) -> Path:
    """The fixture corpus packed the way npm packs chinese-poetry (members under package/)."""
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(FIXTURE / "dist", arcname="package/dist")
    return dest


def driver_env(data: Path, model: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POEMRAG_", "FAULT_"))}
    return env | SMALL_BATCHES | {
        "PYTHONPATH": str(REPO),
        "POEMRAG_DATA_DIR": str(data),
        "POEMRAG_MODEL": str(model),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    } | extra


def run_ingest(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the driver to completion (no fault unless ``env`` sets FAULT_AT)."""
    return subprocess.run(
        [sys.executable, str(DRIVER), "--quiet", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=DRIVER_TIMEOUT, check=False)


def start_until_fault(env: dict[str, str], *args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start the driver and return once it prints ``FAULT <point>`` (it then waits)."""
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), "--quiet", *args],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + DRIVER_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("FAULT "):
                return proc
            if not line and proc.poll() is not None:
                break
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"the driver never reached {env.get('FAULT_AT')}: {err[-2000:]}")


def kill_at(env: dict[str, str], point: str, *args: str, cwd: Path) -> None:
    """SIGKILL an ingest run at ``point`` (``name[:nth]``)."""
    proc = start_until_fault(env | {"FAULT_AT": point, "FAULT_ACTION": "pause"}, *args, cwd=cwd)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


Snapshot = dict[int, tuple[np.ndarray, dict]]


SNAPSHOT_CODE = """
import json, sys
from poemrag.edge_store import EdgeStore
from poemrag.settings import Settings
with EdgeStore(Settings(data_dir=sys.argv[1]).store_path) as store:
    points = [[i, list(map(float, v)), p] for i, v, p in store.scroll_points()]
    print(json.dumps({"count": store.count(), "points": points}))
"""


def snapshot_in_subprocess(data: Path) -> Snapshot:
    """:func:`snapshot` in a child process: loading a shard on a nearly full tmpfs can kill
    the process that loads it (SIGBUS), which must not be pytest."""
    proc = subprocess.run([sys.executable, "-c", SNAPSHOT_CODE, str(data)], cwd=REPO,
                          capture_output=True, text=True, timeout=DRIVER_TIMEOUT,
                          env=os.environ | {"PYTHONPATH": str(REPO)}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    points = {}
    for i, vector, payload in result["points"]:
        assert i not in points, f"duplicate id {i}"
        points[i] = (np.asarray(vector, dtype=np.float32), payload)
    assert result["count"] == len(points)
    return points


def snapshot(data: Path) -> Snapshot:
    """Every stored point: id -> (vector, payload). Asserts the count matches the scroll."""
    with EdgeStore(Settings(data_dir=data).store_path) as store:
        points = {}
        for i, vector, payload in store.scroll_points():
            assert i not in points, f"duplicate id {i}"
            points[i] = (np.asarray(vector, dtype=np.float32), payload)
        assert store.count() == len(points)
    return points


def assert_same(actual: Snapshot, expected: Snapshot) -> None:
    assert sorted(actual) == sorted(expected), "lost or extra ids"
    for i, (vector, payload) in expected.items():
        got_vector, got_payload = actual[i]
        assert got_payload == payload, f"payload of {i} differs"
        np.testing.assert_allclose(got_vector, vector, atol=1e-5, err_msg=f"vector of {i}")


def one_line_error(stderr: str, *needles: str) -> str:
    """The single ``error: ...`` line of a CLI failure (no traceback)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tarball(tmp_path_factory.mktemp("tgz") / "chinese-poetry-2.0.1.tgz")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_onnx_dir: Path) -> Snapshot:
    """The store after one uninterrupted ingest of the fixture corpus."""
    work = tmp_path_factory.mktemp("reference")
    proc = run_ingest(driver_env(work / "data", tiny_onnx_dir), "--source", str(FIXTURE), cwd=work)
    assert proc.returncode == 0, proc.stderr
    points = snapshot(work / "data")
    assert len(points) == COUPLETS
    return points


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path


# -- kill -9 at every stage, then rerun -------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "source_kind", "kept"),
    [
        ("read:2", "tarball", 0),  # while parsing the corpus tarball's JSON members
        ("create:1", "dir", 0),  # shard created, its indexes and metadata file not yet
        ("embed:5", "dir", 32),  # mid-embedding: 4 write batches stored, the 5th being embedded
        ("upsert:3", "dir", 24),  # the 3rd write reached the store, not flushed (WAL replays it)
        ("index:1", "dir", COUPLETS),  # all points flushed, HNSW/optimizer not run
    ],
)
def test_kill_9_then_rerun_gives_the_uninterrupted_result(
    work: Path, tiny_onnx_dir: Path, reference: Snapshot, tarball: Path,
    point: str, source_kind: str, kept: int,
) -> None:
    source = str(tarball if source_kind == "tarball" else FIXTURE)
    env = driver_env(work / "data", tiny_onnx_dir)
    kill_at(env, point, "--source", source, cwd=work)
    proc = run_ingest(env, "--source", source, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert f"({kept} already stored)" in proc.stdout  # resumed where the kill left it
    assert f"in store    {COUPLETS}" in proc.stdout
    assert_same(snapshot(work / "data"), reference)


def test_kill_9_twice_in_a_row_still_converges(
    work: Path, tiny_onnx_dir: Path, reference: Snapshot
) -> None:
    env = driver_env(work / "data", tiny_onnx_dir)
    kill_at(env, "upsert:2", "--source", str(FIXTURE), cwd=work)
    kill_at(env, "upsert:2", "--source", str(FIXTURE), cwd=work)  # dies again while resuming
    proc = run_ingest(env, "--source", str(FIXTURE), cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "(32 already stored)" in proc.stdout  # 2 batches of 8, twice
    assert_same(snapshot(work / "data"), reference)


FAKE_NPM = """#!{python}
import os, sys
from pathlib import Path
dest = Path(sys.argv[sys.argv.index("--pack-destination") + 1])
data = Path(os.environ["FAKE_NPM_TARBALL"]).read_bytes()
if os.environ.get("FAKE_NPM_PARTIAL"):
    data = data[: len(data) // 2]
(dest / "chinese-poetry-2.0.1.tgz").write_bytes(data)
"""


def test_kill_9_during_the_corpus_fetch(
    work: Path, tiny_onnx_dir: Path, reference: Snapshot, tarball: Path
) -> None:
    """Killed while npm is downloading: no partial tarball is ever taken for the corpus."""
    bin_dir = work / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM.format(python=sys.executable))
    npm.chmod(0o755)
    env = driver_env(
        work / "data", tiny_onnx_dir,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_NPM_TARBALL=str(tarball),
        FAKE_INTEGRITY=integrity_of(tarball),
    )
    kill_at(env | {"FAKE_NPM_PARTIAL": "1"}, "fetch:1", cwd=work)
    cache = work / "data" / "corpus"
    assert not (cache / tarball.name).exists()  # the half download stayed in its temp dir
    assert [p.name for p in cache.glob(".fetch-*/*.tgz")] == [tarball.name]
    proc = run_ingest(env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert (cache / tarball.name).read_bytes() == tarball.read_bytes()
    assert not list(cache.glob(".fetch-*"))  # the dead fetch's temp dir was cleaned up
    assert_same(snapshot(work / "data"), reference)


# -- two processes, one store -----------------------------------------------------------------


def test_second_process_is_refused_while_the_first_keeps_writing(
    work: Path, tiny_onnx_dir: Path, reference: Snapshot
) -> None:
    go = work / "go"
    env = driver_env(work / "data", tiny_onnx_dir)
    first = start_until_fault(
        env | {"FAULT_AT": "upsert:2", "FAULT_GO": str(go)}, "--source", str(FIXTURE), cwd=work
    )
    try:
        for module, args in (("poemrag.search", ["想家"]),
                             ("poemrag.ingest", ["--source", str(FIXTURE), "--quiet"])):
            second = subprocess.run(
                [sys.executable, "-m", module, *args],
                env=env, cwd=work, capture_output=True, text=True, timeout=DRIVER_TIMEOUT,
                check=False,
            )
            assert second.returncode == 2
            one_line_error(second.stderr, "in use by another process", f"pid {first.pid}")
        with pytest.raises(StoreError, match="in use"):
            EdgeStore(Settings(data_dir=work / "data").store_path)
    finally:
        go.touch()
    out, err = first.communicate(timeout=DRIVER_TIMEOUT)
    assert first.returncode == 0, err
    assert f"in store    {COUPLETS}" in out
    assert_same(snapshot(work / "data"), reference)


# -- full and read-only disks -----------------------------------------------------------------


def test_enospc_on_write_is_one_line_and_keeps_what_was_stored(
    work: Path, tiny_onnx_dir: Path, reference: Snapshot
) -> None:
    env = driver_env(work / "data", tiny_onnx_dir)
    assert run_ingest(env, "--source", str(FIXTURE), "--limit", "10", cwd=work).returncode == 0
    before = snapshot(work / "data")
    full = env | {"FAULT_AT": "upsert-before:2", "FAULT_ACTION": "enospc"}
    proc = run_ingest(full, "--source", str(FIXTURE), cwd=work)
    assert proc.returncode == 2
    one_line_error(proc.stderr, "No space left on device")
    after = snapshot(work / "data")
    assert_same({i: after[i] for i in before}, before)  # existing points untouched
    proc = run_ingest(env, "--source", str(FIXTURE), cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert_same(snapshot(work / "data"), reference)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs (a genuinely small disk) with room for the space check of a 10-couplet ingest
    plus 32 MiB, so that after it (a loaded shard takes ~110 MiB on tmpfs) the rest of the
    corpus does not pass the check; skipped where mounting is not permitted."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    size_kib = (space_needed(10, TINY_DIM) + 32 * 2**20) // 1024
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def test_full_disk_is_refused_before_writing(
    small_tmpfs: Path, tmp_path: Path, tiny_onnx_dir: Path, reference: Snapshot
) -> None:
    """Too little free space: a one-line error before anything is written. (The engine
    writes through mmap, so running out of space mid-write would kill it with SIGBUS.)"""
    env = driver_env(small_tmpfs / "data", tiny_onnx_dir)
    proc = run_ingest(env, "--source", str(FIXTURE), "--limit", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    before = snapshot_in_subprocess(small_tmpfs / "data")
    proc = run_ingest(env, "--source", str(FIXTURE), cwd=tmp_path)
    assert proc.returncode == 2
    one_line_error(proc.stderr, "not enough free disk space", "POEMRAG_DATA_DIR")
    assert_same(snapshot_in_subprocess(small_tmpfs / "data"), before)
    subprocess.run(["mount", "-o", "remount,size=400m", str(small_tmpfs)], check=True)
    proc = run_ingest(env, "--source", str(FIXTURE), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same(snapshot_in_subprocess(small_tmpfs / "data"), reference)


def test_disk_filling_up_mid_write_loses_nothing_stored(
    small_tmpfs: Path, tmp_path: Path, tiny_onnx_dir: Path, reference: Snapshot
) -> None:
    """The space check passes, then the disk fills up during the writes (another process
    took it). The engine dies (SIGBUS on its mmap); after space is freed the rerun
    completes and what was stored before is intact."""
    env = driver_env(small_tmpfs / "data", tiny_onnx_dir)
    assert run_ingest(env, "--source", str(FIXTURE), "--limit", "10", cwd=tmp_path).returncode == 0
    before = snapshot_in_subprocess(small_tmpfs / "data")
    filler = small_tmpfs / "filler"
    with filler.open("wb") as fh:  # take every free byte
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    unchecked = env | {"SKIP_SPACE_CHECK": "1"}
    proc = run_ingest(unchecked, "--source", str(FIXTURE), cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    filler.unlink()
    after = snapshot_in_subprocess(small_tmpfs / "data")
    assert_same({i: after[i] for i in before}, before)
    subprocess.run(["mount", "-o", "remount,size=400m", str(small_tmpfs)], check=True)
    proc = run_ingest(env, "--source", str(FIXTURE), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same(snapshot_in_subprocess(small_tmpfs / "data"), reference)


@pytest.fixture
def read_only(work: Path, tiny_onnx_dir: Path) -> Iterator[Path]:
    """A data directory holding 10 points, then bind-mounted read-only (root-proof)."""
    data = work / "data"
    proc = run_ingest(driver_env(data, tiny_onnx_dir), "--source", str(FIXTURE), "--limit", "10",
                      cwd=work)
    assert proc.returncode == 0, proc.stderr
    bind = subprocess.run(["mount", "--bind", str(data), str(data)],
                          capture_output=True, text=True, check=False)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here (tests run as root, so chmod alone would not make "
                    f"the directory read-only): {bind.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(data)],
                            capture_output=True, text=True, check=False)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only: {ro.stderr.strip()}")
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True, check=False)


def test_read_only_data_directory(read_only: Path, work: Path, tiny_onnx_dir: Path) -> None:
    with pytest.raises(OSError):
        (read_only / "probe").touch()  # really read-only, even for root
    files = {p: p.read_bytes() for p in read_only.rglob("*") if p.is_file()}
    env = driver_env(read_only, tiny_onnx_dir)
    proc = run_ingest(env, "--source", str(FIXTURE), cwd=work)
    assert proc.returncode == 2
    one_line_error(proc.stderr, "Read-only file system")
    proc = subprocess.run([sys.executable, "-m", "poemrag.search", "想家"], env=env, cwd=work,
                          capture_output=True, text=True, timeout=DRIVER_TIMEOUT, check=False)
    assert proc.returncode == 2
    one_line_error(proc.stderr, "Read-only file system")
    assert {p: p.read_bytes() for p in read_only.rglob("*") if p.is_file()} == files


# -- bad corpora and mismatched models, against existing data (in-process CLI) -----------------


@pytest.fixture
def existing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_onnx_dir: Path) -> Settings:
    """Settings for a data directory that already holds the first 10 couplets."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POEMRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("POEMRAG_MODEL", str(tiny_onnx_dir))
    assert run_cli(ingest.main, ["--source", str(FIXTURE), "--limit", "10", "--quiet"]) == 0
    return Settings()


def corrupt_tarball(path: Path, member: str, raw: bytes) -> Path:
    """The fixture tarball with one member replaced by ``raw``."""
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted((FIXTURE / "dist" / "quantangshi").iterdir()):
            data = raw if file.name == member else file.read_bytes()
            info = tarfile.TarInfo(f"package/dist/quantangshi/{file.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("truncated", "cannot read tarball"),
        ("corrupt-json", "corrupt JSON"),
        ("not-utf8", "corrupt JSON"),
        ("not-a-list", "expected a list"),
        ("bad-record", "no paragraphs list"),
        ("bad-paragraph", "paragraph 1 is not a string"),
        ("empty-file", "neither a directory nor a tarball"),
    ],
)
def test_bad_corpus_is_one_line_and_leaves_the_store_alone(
    existing: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    kind: str, message: str,
) -> None:
    before = snapshot(existing.data_dir)
    bad = tmp_path / f"{kind}.tgz"
    member = "poet.tang.9000.json"
    if kind == "truncated":
        data = make_tarball(tmp_path / "good.tgz").read_bytes()
        bad.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "empty-file":
        bad.write_bytes(b"")
    else:
        raw = {
            "corrupt-json": b'[{"author": "x", "paragraphs": ["a',
            "not-utf8": b"[\xff\xfe]",
            "not-a-list": b'{"paragraphs": []}',
            "bad-record": b'[{"title": "x", "paragraphs": "not a list"}]',
            "bad-paragraph": json.dumps(
                [{"title": "x", "author": "y", "id": "z", "paragraphs": ["好。", 7]}]).encode(),
        }[kind]
        corrupt_tarball(bad, member, raw)
    capsys.readouterr()
    assert run_cli(ingest.main, ["--source", str(bad), "--quiet"]) == 2
    one_line_error(capsys.readouterr().err, message)
    assert_same(snapshot(existing.data_dir), before)


def test_collection_of_another_model_is_refused_by_ingest_and_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_onnx_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A populated 7-d collection (another model's) is never written to or searched."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POEMRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("POEMRAG_MODEL", str(tiny_onnx_dir))
    rng = np.random.default_rng(1)
    with EdgeStore(Settings().store_path) as store:
        store.ensure_collection(7, model="another-model")
        store.upsert([1, 2, 3], rng.normal(size=(3, 7)).astype(np.float32),
                     [{"page_content": f"句{i}", "metadata": {"poem_id": "p"}} for i in range(3)])
        store.finish()
    before = snapshot(tmp_path / "data")
    capsys.readouterr()
    assert run_cli(ingest.main, ["--source", str(FIXTURE), "--quiet"]) == 2
    one_line_error(capsys.readouterr().err, "7-d", "--recreate")
    assert run_cli(search.main, ["想家"]) == 2
    one_line_error(capsys.readouterr().err, "7-d")
    assert_same(snapshot(tmp_path / "data"), before)


def test_search_without_a_collection_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_onnx_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POEMRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("POEMRAG_MODEL", str(tiny_onnx_dir))
    assert run_cli(search.main, ["想家"]) == 2
    one_line_error(capsys.readouterr().err, "poemrag.ingest")


# -- hostile queries --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def retriever(onnx_embeddings, ingested_store) -> PoemRetriever:
    return PoemRetriever(embeddings=onnx_embeddings, store=ingested_store, k=4)


def check_documents(docs: list[Document], k: int = 4) -> None:
    assert isinstance(docs, list) and 0 < len(docs) <= k
    ids = [d.metadata["id"] for d in docs]
    assert len(set(ids)) == len(ids)
    for doc in docs:
        assert doc.page_content and doc.metadata["poem_id"] and doc.metadata["author"]
        assert -1.0001 <= doc.metadata["score"] <= 1.0001


QUERIES = {
    "10k-chars": "月" * 10_000,
    "10k-mixed": ("今晚月亮好圆 moon 🌕 " * 600)[:10_000],
    "emoji-only": "😀🎉🌕🍻😭",
    "flags-and-zwj": "🇨🇳👨‍👩‍👧‍👦🏳️‍🌈",
    "english": "I miss my hometown so much tonight",
    "traditional": "獨在異鄉為異客，每逢佳節倍思親",
    "mixed-scripts": "今晚moon好圆🌕，想家了 (｡•́︿•̀｡) ちょっと寂しい 외로워",
    "control-chars": "想\x00家\x07了\x1b[31m\r\n",
    "zero-width-and-bidi": "\u200b\u200d\u202e想家\u2066了\ufeff",
    "lone-surrogate": "\ud83d想家",
    "private-use": "\ue000\U000f0000想家",
    "sql": "'; DROP TABLE poems; -- OR 1=1",
    "json": '{"$where": "1==1", "filter": {"must": [{"key": "author"}]}, "limit": 1e9}',
    "prompt-markers": "query: passage: [CLS] [SEP] [PAD] [UNK] [MASK]",
    "single-char": "月",
    "digits": "1234567890",
    "punctuation-only": "。，！？；：……——",
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_hostile_queries_return_documents(retriever: PoemRetriever, name: str) -> None:
    check_documents(retriever.invoke(QUERIES[name]))


@pytest.mark.parametrize("query", ["", " ", "\t\n\r", "\x00\x01\x7f", "\u200b", "\ufeff\u2066"])
def test_queries_without_text_are_a_clear_error(retriever: PoemRetriever, query: str) -> None:
    with pytest.raises(EmptyQueryError, match="empty"):
        retriever.invoke(query)


@pytest.fixture(scope="module")
def search_env(tmp_path_factory: pytest.TempPathFactory, fixture_corpus, onnx_embeddings,
               tiny_onnx_dir: Path) -> Path:
    """A data directory with the fixture corpus ingested, for the search CLI."""
    from poemrag.ingest import ingest as run_ingest_fn

    data = tmp_path_factory.mktemp("search") / "data"
    with EdgeStore(Settings(data_dir=data).store_path) as store:
        run_ingest_fn(fixture_corpus, onnx_embeddings, store, progress=False)
    return data


@pytest.mark.parametrize("name", ["10k-chars", "emoji-only", "control-chars", "sql", "json",
                                  "lone-surrogate", "mixed-scripts"])
def test_search_cli_on_hostile_queries(
    search_env: Path, tiny_onnx_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], name: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POEMRAG_DATA_DIR", str(search_env))
    monkeypatch.setenv("POEMRAG_MODEL", str(tiny_onnx_dir))
    assert run_cli(search.main, [QUERIES[name], "-k", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and all(row["text"] and row["author"] for row in rows)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(query=st.text(st.characters(codec=None, exclude_categories=()), max_size=300))
def test_any_unicode_gives_documents_or_a_clear_error(retriever: PoemRetriever, query: str) -> None:
    try:
        docs = retriever.invoke(query)
    except EmptyQueryError:
        assert not "".join(ch for ch in query if ch.isprintable()).strip()
        return
    check_documents(docs)


# -- concurrency ------------------------------------------------------------------------------


CONCURRENT_QUERIES = ["一个人在外地过中秋，特别想家", "春天到了，花都开了", "和朋友喝酒",
                      "登高望远", "毕业了，和室友在站台上告别", "下雨了", "😭", "长城"]


def test_eight_threads_sync_and_async_match_serial(retriever: PoemRetriever) -> None:
    """8 threads start together (barrier); half call invoke, half run ainvoke in their own
    event loop, each over every query; then one loop gathers 8 ainvoke at once."""
    def key(docs: list[Document]) -> list[tuple[int, float]]:
        return [(d.metadata["id"], round(d.metadata["score"], 5)) for d in docs]

    serial = {q: key(retriever.invoke(q)) for q in CONCURRENT_QUERIES}
    serial_poems = {q: retriever.full_poem(retriever.invoke(q)[0]) for q in CONCURRENT_QUERIES}
    barrier = threading.Barrier(8)
    results: dict[int, list[tuple[str, list[tuple[int, float]]]]] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            order = CONCURRENT_QUERIES[n:] + CONCURRENT_QUERIES[:n]
            out = []
            for q in order * 3:
                if n % 2:
                    docs = asyncio.run(retriever.ainvoke(q))
                else:
                    docs = retriever.invoke(q)
                out.append((q, key(docs)))
                assert retriever.full_poem(docs[0]) == serial_poems[q]
            results[n] = out
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == 8
    for out in results.values():
        for q, got in out:
            assert got == serial[q], q

    async def gather() -> list[list[Document]]:
        return await asyncio.gather(*(retriever.ainvoke(q) for q in CONCURRENT_QUERIES))

    assert [key(d) for d in asyncio.run(gather())] == [serial[q] for q in CONCURRENT_QUERIES]


def test_concurrent_retrievers_with_different_filters_do_not_mix(
    retriever: PoemRetriever,
) -> None:
    """Filtered and unfiltered retrievers sharing one store and encoder, called at once."""
    variants = [retriever, retriever.model_copy(update={"authors": ["李白"]}),
                retriever.model_copy(update={"forms": ["七言"]}),
                retriever.model_copy(update={"one_per_poem": False, "k": 10})]
    query = "一个人在外地过中秋，特别想家"
    serial = [[d.metadata["id"] for d in v.invoke(query)] for v in variants]
    barrier = threading.Barrier(8)
    got: dict[int, list[list[int]]] = {}

    def worker(n: int) -> None:
        barrier.wait(timeout=30)
        v = variants[n % len(variants)]
        got[n] = [[d.metadata["id"] for d in v.invoke(query)] for _ in range(5)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(got) == 8
    for n, runs in got.items():
        assert all(r == serial[n % len(variants)] for r in runs)
