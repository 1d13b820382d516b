"""The package as a user installs it: build the wheel, install it into a fresh venv away from
the repository, then `--sample` ingest and a search with the model and manifest it carries.

The fresh venv borrows the test venv's third-party packages (a ``.pth`` line, so no network is
needed in CI) but not poemrag, which comes only from the wheel; torch, transformers and
sentence-transformers are blocked there, so ingest and search must run without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_CORPUS = Path(__file__).parent / "fixtures" / "corpus"
BLOCKED = ("torch", "transformers", "sentence_transformers")
"""The training stack: ingest and search must not import it."""


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600,
                          check=False, **kwargs)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (nothing written into the repository)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "poemrag", src / "poemrag",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "-q", "-w", dist, src, cwd=src)
    (built,) = dist.glob("poemrag-*.whl")
    return built


def test_wheel_carries_models_and_manifest(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "poemrag/data/sources.toml" in names
    for model in ("poemrag-zh-1792", "poemrag-zh-1792-fast"):
        for file in ("model.onnx", "tokenizer.json", "config_sentence_transformers.json"):
            assert f"poemrag/models/{model}/{file}" in names
    assert not any(n.startswith(("training/", "bench/", "tests/")) for n in names)


@pytest.fixture(scope="module")
def fresh_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the wheel; third-party packages borrowed, the training stack blocked."""
    venv = tmp_path_factory.mktemp("venv") / "fresh"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "-q", wheel)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.strip())
    (site / "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for name in BLOCKED:
        (site / f"{name}.py").write_text(
            f"raise ImportError('{name} is blocked: ingest and search must not need it')\n"
        )
    return python


def test_installed_wheel_ingests_the_sample_and_searches(
    fresh_python: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("POEMRAG_", "PYTHON", "VIRTUAL_ENV"))}
    env["POEMRAG_DATA_DIR"] = str(tmp_path / "data")
    where = run(fresh_python, "-c", "import poemrag.settings as s; print(s.__file__)",
                cwd=tmp_path, env=env).stdout
    assert str(fresh_python.parent.parent) in where and str(ROOT) not in where
    ingest = run(fresh_python, "-m", "poemrag.ingest", "--sample", "--source", FIXTURE_CORPUS,
                 "--quiet", cwd=tmp_path, env=env)
    assert "in store    " in ingest.stdout
    stored = int(ingest.stdout.split("in store")[1].split()[0])
    assert stored > 0
    search = run(fresh_python, "-m", "poemrag.search", "春眠不觉晓，处处闻啼鸟。", "-k", "1",
                 "--json", cwd=tmp_path, env=env)
    top = json.loads(search.stdout.splitlines()[0])
    assert (top["text"], top["author"]) == ("春眠不觉晓，处处闻啼鸟。", "孟浩然")
