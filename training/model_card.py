"""A model card (``README.md``) for a fine-tuned encoder, written without any network access."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CCPM_CITATION = (
    "CCPM: Li, Qi, Sun, Yi, Zhang. *CCPM: A Chinese Classical Poetry Matching Dataset*, "
    "arXiv:2106.01979 (2021)."
)


@dataclass
class CardInfo:
    """Everything the card reports; ``log_history`` is the trainer's ``state.log_history``."""

    base: str
    datasets: Mapping[str, int]
    hyperparameters: Mapping[str, Any]
    prompts: Mapping[str, str]
    log_history: Sequence[Mapping[str, Any]] = field(default_factory=list)
    final_metrics: Mapping[str, float] = field(default_factory=dict)
    uses_ccpm: bool = False
    method: str = "MultipleNegativesRankingLoss"
    """How the weights were trained, as the card's first paragraph names it."""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def loss_rows(log_history: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """(step, epoch, loss, learning rate) for every training-loss log entry."""
    return [
        (e.get("step", ""), round(float(e.get("epoch", 0.0)), 3), e["loss"], e.get("learning_rate", ""))
        for e in log_history
        if "loss" in e
    ]


def eval_rows(log_history: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Evaluation metrics per step: (metric names, rows of step + values)."""
    entries = [e for e in log_history if any(k.startswith("eval_") for k in e)]
    names = sorted(
        {k for e in entries for k in e if k.startswith("eval_") and not k.endswith(
            ("_runtime", "_samples_per_second", "_steps_per_second"))}
    )
    rows = [[e.get("step", "")] + [e.get(n, "") for n in names] for e in entries]
    return names, rows


def render_model_card(info: CardInfo) -> str:
    """The card as Markdown."""
    out = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "language: [zh]",
        "tags: [sentence-transformers, poemrag, tang-poetry]",
        "---",
        "",
        "# poemrag encoder (fine-tuned)",
        "",
        (
            "Retrieves a fitting Tang-poetry couplet for a modern Chinese chat message. "
            f"Fine-tuned from `{info.base}` with {info.method}."
        ),
        "",
        "Prompts: " + ", ".join(f"{k} = `{v!r}`" for k, v in info.prompts.items()) + ".",
        "",
        "## Training data",
        "",
        *_table(["dataset", "rows"], [(k, v) for k, v in info.datasets.items()]),
        "",
        "## Hyperparameters",
        "",
        *_table(["name", "value"], [(k, v) for k, v in info.hyperparameters.items()]),
        "",
        "## Training loss",
        "",
        *_table(["step", "epoch", "loss", "learning rate"], loss_rows(info.log_history)),
        "",
    ]
    names, rows = eval_rows(info.log_history)
    if names:
        out += ["## Evaluation during training", "", *_table(["step", *names], rows), ""]
    if info.final_metrics:
        out += ["## Final evaluation", ""]
        out += _table(["metric", "value"], sorted(info.final_metrics.items()))
        out.append("")
    if info.uses_ccpm:
        out += ["## Citation", "", CCPM_CITATION, ""]
    return "\n".join(out)


def write_model_card(output_dir: Path, info: CardInfo) -> Path:
    """Write ``README.md`` into ``output_dir`` and return its path."""
    path = output_dir / "README.md"
    path.write_text(render_model_card(info), encoding="utf-8")
    return path
