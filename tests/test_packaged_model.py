"""The real thing: `--sample` ingest of the pinned corpus with the packaged encoder, then search."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from poemrag.settings import PACKAGED_MODEL_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory, pinned_corpus: Path) -> dict[str, str]:
    if not (PACKAGED_MODEL_DIR / "model.onnx").is_file():
        pytest.skip("packaged model not present")
    data = tmp_path_factory.mktemp("sample")
    (data / "corpus").mkdir()
    shutil.copy(pinned_corpus, data / "corpus" / pinned_corpus.name)  # verified again on use
    env = {k: v for k, v in os.environ.items() if not k.startswith("POEMRAG_")}
    env["POEMRAG_DATA_DIR"] = str(data)
    proc = subprocess.run(
        [sys.executable, "-m", "poemrag.ingest", "--sample", "--quiet"],
        env=env, capture_output=True, text=True, timeout=1200, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "in store    1787" in proc.stdout
    return env


def search(env: dict[str, str], *args: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "poemrag.search", *args, "--json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_sample_ingest_then_search(sample_store: dict[str, str]) -> None:
    rows = search(sample_store, "一个人在外地过中秋，特别想家", "-k", "5")
    assert len(rows) == 5
    assert len({r["poem_id"] for r in rows}) == 5
    for row in rows:
        assert {"text", "title", "author", "poem_id", "line", "id", "score"} <= set(row)
        assert row["id"] == row["line"] + 1000 * (row["id"] // 1000)


def test_a_couplet_finds_itself(sample_store: dict[str, str]) -> None:
    top = search(sample_store, "春眠不觉晓，处处闻啼鸟。", "-k", "1")[0]
    assert (top["text"], top["author"], top["title"]) == ("春眠不觉晓，处处闻啼鸟。", "孟浩然", "春晓")


def test_author_filter_on_the_real_collection(sample_store: dict[str, str]) -> None:
    rows = search(sample_store, "喝酒", "-k", "3", "--author", "李白")
    assert rows and {r["author"] for r in rows} == {"李白"}
