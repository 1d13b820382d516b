"""What `make ingest` installs: the runtime dependencies only, never the training stack."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAINING_STACK = ("torch", "sentence-transformers", "transformers", "accelerate", "datasets")


def test_runtime_dependencies_leave_out_the_training_stack() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert not names & set(TRAINING_STACK)


def recipes(makefile: str) -> dict[str, str]:
    """Each rule's target and the tab-indented recipe lines below it."""
    rules: dict[str, str] = {}
    target = None
    for line in makefile.splitlines():
        if line.startswith("\t") and target:
            rules[target] += line.strip() + "\n"
        elif ":" in line and not line.startswith(("#", "\t")) and "=" not in line:
            target = line.split(":")[0]
            rules[target] = line.split(":", 1)[1].strip() + "\n"
        else:
            target = None
    return rules


def test_make_ingest_installs_the_runtime_only() -> None:
    rules = recipes((ROOT / "Makefile").read_text(encoding="utf-8"))
    assert rules["ingest"].startswith("runtime\n") and rules["sample"].startswith("runtime\n")
    runtime = rules["$(VENV)/.runtime"]
    assert "pip install --quiet -e .\n" in runtime
    assert "torch" not in runtime and "[" not in runtime
    assert "torch==" in rules["$(VENV)/.installed"] and rules["test"].startswith("setup\n")
