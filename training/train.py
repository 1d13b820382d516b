"""Fine-tune the encoder on chat triplets and CCPM with MultipleNegativesRankingLoss.

    python -m training.train --data training/data/chat_*.jsonl --ccpm-dir CCPM_DIR \\
        --output-dir artifacts/trained/run1

Anchors get the model's query prompt, positives and negatives its document prompt. The fixed
dev split (see :func:`training.data.is_dev`) of every JSONL file is held out from training and
used for the retrieval evaluator.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.base.evaluation import SequentialEvaluator
from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.util import cos_sim
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from poemrag.errors import ModelError, PoemragError
from training.data import (
    DEFAULT_DATA_GLOB,
    Triplet,
    ccpm_triplets,
    data_files,
    load_ccpm_split,
    read_triplet_files,
    resolve_ccpm_dir,
    shared_chars,
    split_dev,
)
from training.evaluators import CcpmEvaluator, chat_ir_evaluator
from training.model_card import CardInfo, write_model_card

DEFAULT_BASE = "artifacts/base/poemrag-e5-small-zh-1792"
CCPM_EVAL_ROWS = 500


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    p.add_argument("--base", default=DEFAULT_BASE, help="ST model directory or hub id")
    p.add_argument("--data", type=Path, nargs="*", default=None,
                   help=f"triplet JSONL files (default: {DEFAULT_DATA_GLOB})")
    p.add_argument("--ccpm-dir", type=Path, default=None,
                   help="train on CCPM train.jsonl from this folder (valid.jsonl for evaluation)")
    p.add_argument("--ccpm-max-shared", type=int, default=None, metavar="N",
                   help="train only on CCPM rows whose translation shares at most N distinct "
                        "characters with the answer (default: all rows)")
    p.add_argument("--max-negatives", type=int, default=None, metavar="N",
                   help="use at most the first N negatives of each chat row (cheaper steps)")
    p.add_argument("--freeze-embeddings", action="store_true",
                   help="keep the word embeddings fixed (about a third faster CPU steps)")
    p.add_argument("--output-dir", type=Path, default=Path("artifacts/trained/run"))
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps")
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop after this much training time, then evaluate and save as usual")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--eval-steps", type=float, default=0.25,
                   help="evaluate every N steps (< 1: share of the run); 0 = only at the end")
    p.add_argument("--no-eval", action="store_true", help="no evaluation at all")
    p.add_argument("--no-checkpoints", action="store_true", help="do not save checkpoints")
    p.add_argument("--save-steps", type=float, default=0.25,
                   help="save a checkpoint every N steps (< 1: share of the run)")
    p.add_argument("--strict", action="store_true", help="a malformed JSONL row is fatal")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in OUTPUT_DIR/checkpoints")
    return p


def load_base(base: str, max_seq_length: int | None = None) -> SentenceTransformer:
    """Load the base SentenceTransformer; a missing or unloadable model is a one-line error."""
    looks_like_hub_id = base.count("/") == 1 and not base.startswith((".", "/", "~"))
    if not Path(base).exists() and not looks_like_hub_id:
        raise ModelError(f"base model not found: {base} (neither a directory nor a hub id)")
    try:
        model = SentenceTransformer(base)
    except Exception as exc:  # noqa: BLE001 - any load failure becomes one line
        detail = str(exc).strip().splitlines()
        raise ModelError(f"cannot load base model {base}: {detail[0] if detail else exc!r}") from None
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def model_prompts(model: Any) -> tuple[str, str]:
    """(query prompt, document prompt) from the model's saved prompts ('' when absent)."""
    prompts: dict[str, str] = dict(getattr(model, "prompts", None) or {})
    query = prompts.get("query", "")
    document = prompts.get("document", prompts.get("passage", ""))
    return query, document


def negative_columns(count: int) -> list[str]:
    """Column names for ``count`` hard negatives: ``negative`` or ``negative_1..n``."""
    return ["negative"] if count == 1 else [f"negative_{i}" for i in range(1, count + 1)]


def to_dataset(triplets: Sequence[Triplet]) -> Dataset:
    """A ``datasets.Dataset`` (anchor, positive, negatives...) of rows with equal negative counts."""
    count = len(triplets[0].negatives)
    columns: dict[str, list[str]] = {"anchor": [], "positive": []}
    names = negative_columns(count) if count else []
    for name in names:
        columns[name] = []
    for t in triplets:
        columns["anchor"].append(t.anchor)
        columns["positive"].append(t.positive)
        for name, negative in zip(names, t.negatives, strict=True):
            columns[name].append(negative)
    return Dataset.from_dict(columns)


def group_by_negatives(name: str, triplets: Sequence[Triplet]) -> dict[str, list[Triplet]]:
    """Split rows into datasets with one negative count each (``name``, ``name_3neg``...)."""
    counts = Counter(len(t.negatives) for t in triplets)
    main = counts.most_common(1)[0][0] if counts else 0
    groups: dict[str, list[Triplet]] = {}
    for t in triplets:
        n = len(t.negatives)
        groups.setdefault(name if n == main else f"{name}_{n}neg", []).append(t)
    return groups


def column_prompts(columns: set[str], query: str, document: str) -> dict[str, str] | None:
    """Prompt per dataset column: query prompt on ``anchor``, document prompt on the rest."""
    if not query and not document:
        return None
    return {c: (query if c == "anchor" else document) for c in sorted(columns)}


def dev_pool(triplets: Sequence[Triplet]) -> list[str]:
    """Small retrieval pool for the dev evaluator: every positive and negative in the data."""
    return list(dict.fromkeys(x for t in triplets for x in (t.positive, *t.negatives)))


class ProgressLog(TrainerCallback):
    """Prints one flushed line per log entry: step, elapsed time, ETA and the logged values."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
        elapsed = time.monotonic() - self.start
        step, total = state.global_step, state.max_steps
        eta = elapsed / step * (total - step) if step else float("nan")
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in (logs or {}).items()}
        print(f"[step {step}/{total} | {elapsed / 60:.1f} min | eta {eta / 60:.1f} min] {shown}",
              flush=True)


class TimeLimit(TrainerCallback):
    """Stops training once ``minutes`` of wall-clock time have passed since the first step,
    saving a checkpoint of that step (when the run saves any) so ``--resume`` goes on from it."""

    def __init__(self, minutes: float, clock: Any = time.monotonic) -> None:
        self.seconds = minutes * 60
        self.clock = clock
        self.start: float | None = None
        self.stopped_at: int | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.start = self.clock()

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.start is not None and self.clock() - self.start >= self.seconds:
            control.should_training_stop = True
            if getattr(args, "save_strategy", "no") != "no":
                control.should_save = True
            if self.stopped_at is None:
                self.stopped_at = state.global_step
                print(f"time limit reached: stopping at step {state.global_step}/"
                      f"{state.max_steps}", flush=True)


@dataclass
class TrainingData:
    """Training datasets by name, the held-out chat dev rows and every chat row read."""

    datasets: dict[str, Dataset]
    chat_dev: list[Triplet]
    chat_all: list[Triplet]
    files: list[Path]


def load_training_data(args: argparse.Namespace) -> TrainingData:
    """Chat JSONL train splits grouped by negative count, plus CCPM train with ``--ccpm-dir``."""
    files = data_files(args.data)
    triplets = read_triplet_files(files, strict=args.strict)
    chat_train, chat_dev = split_dev(triplets)
    most = getattr(args, "max_negatives", None)
    if most is not None:
        chat_train = [replace(t, negatives=t.negatives[:most]) for t in chat_train]
    groups = group_by_negatives("chat", chat_train)
    if args.ccpm_dir is not None:
        ccpm = ccpm_triplets(load_ccpm_split(args.ccpm_dir, "train"))
        limit = getattr(args, "ccpm_max_shared", None)
        if limit is not None:
            ccpm = [t for t in ccpm if len(shared_chars(t.anchor, t.positive)) <= limit]
        groups["ccpm"] = ccpm
    datasets = {name: to_dataset(rows) for name, rows in groups.items() if rows}
    if not datasets:
        raise PoemragError("no training rows: pass --data FILE... and/or --ccpm-dir DIR")
    return TrainingData(datasets, chat_dev, triplets, list(files))


def build_evaluators(data: TrainingData, ccpm_dir: Path | None, seed: int) -> list[Any]:
    """Chat dev retrieval (small pool) and CCPM accuracy on a seeded 500-row valid subset."""
    evaluators: list[Any] = []
    if data.chat_dev:
        evaluators.append(chat_ir_evaluator(data.chat_dev, dev_pool(data.chat_all)))
    if ccpm_dir is not None and (ccpm_dir / "valid.jsonl").is_file():
        valid = load_ccpm_split(ccpm_dir, "valid")
        subset = random.Random(seed).sample(valid, min(CCPM_EVAL_ROWS, len(valid)))
        evaluators.append(CcpmEvaluator(subset))
    return evaluators


def common_training_kwargs(args: argparse.Namespace, evaluate: bool) -> dict[str, Any]:
    """Trainer settings shared by the encoder and the reranker: linear schedule with 10%
    warmup, no-duplicates batches, mixed precision only on CUDA."""
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    short = 0 < args.max_steps < 50
    return {
        "output_dir": str(args.output_dir / "checkpoints"),
        "num_train_epochs": args.epochs,
        "max_steps": args.max_steps,
        "per_device_train_batch_size": args.batch_size,
        "per_device_eval_batch_size": args.batch_size,
        "learning_rate": args.lr,
        "warmup_steps": 0.1,
        "lr_scheduler_type": "linear",
        "seed": args.seed,
        "data_seed": args.seed,
        "bf16": bf16,
        "fp16": cuda and not bf16,
        "batch_sampler": BatchSamplers.NO_DUPLICATES,
        "multi_dataset_batch_sampler": MultiDatasetBatchSamplers.PROPORTIONAL,
        "eval_strategy": "steps" if evaluate and args.eval_steps > 0 else "no",
        "eval_steps": args.eval_steps if args.eval_steps > 0 else None,
        "save_strategy": "no" if args.no_checkpoints else "steps",
        "save_steps": args.save_steps,
        "save_total_limit": 1,
        "logging_steps": 1 if short else 0.02,
        "logging_first_step": True,
        "disable_tqdm": True,
        "report_to": "none",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": cuda,
    }


def training_arguments(
    args: argparse.Namespace, prompts: dict[str, str] | None, evaluate: bool
) -> SentenceTransformerTrainingArguments:
    """The encoder's trainer settings (:func:`common_training_kwargs`) with its prompts."""
    return SentenceTransformerTrainingArguments(
        **common_training_kwargs(args, evaluate), prompts=prompts
    )


def card_info_hyper(
    args: argparse.Namespace, trainer: SentenceTransformerTrainer, model: SentenceTransformer
) -> dict[str, Any]:
    """The run settings every card reports (steps say where a time limit stopped the run)."""
    targs, state = trainer.args, trainer.state
    return {
        "epochs": args.epochs,
        "steps": (state.max_steps if state.global_step >= state.max_steps
                  else f"{state.global_step} of {state.max_steps} (time limit)"),
        "batch size": args.batch_size,
        "learning rate": args.lr,
        "schedule": "linear, 10% warmup",
        "max seq length": model.max_seq_length,
        "seed": args.seed,
        "precision": "bf16" if targs.bf16 else "fp16" if targs.fp16 else "fp32",
    }


def card_info(
    args: argparse.Namespace, data: TrainingData, model: SentenceTransformer,
    trainer: SentenceTransformerTrainer, final_metrics: dict[str, float], uses_ccpm: bool,
) -> CardInfo:
    """What the model card reports about this run."""
    rows = {name: len(ds) for name, ds in data.datasets.items()}
    if data.chat_dev:
        rows["chat dev (held out, evaluation only)"] = len(data.chat_dev)
    query, document = model_prompts(model)
    hyper = {
        "loss": "MultipleNegativesRankingLoss(scale=20, cosine)",
        "batch sampler": "NO_DUPLICATES (multi-dataset: proportional)",
        **card_info_hyper(args, trainer, model),
        "CCPM rows": ("all" if getattr(args, "ccpm_max_shared", None) is None
                      else f"translation shares <= {args.ccpm_max_shared} characters with the answer"),
        "word embeddings": "frozen" if getattr(args, "freeze_embeddings", False) else "trained",
        "negatives per chat row": ("all" if getattr(args, "max_negatives", None) is None
                                   else f"at most {args.max_negatives}"),
        "data files": ", ".join(str(p) for p in data.files) or "-",
    }
    return CardInfo(args.base, rows, hyper, {"query": query, "document": document},
                    trainer.state.log_history, final_metrics, uses_ccpm)


def final_evaluation(trainer: SentenceTransformerTrainer, evaluator: Any) -> dict[str, float]:
    """Metrics of the final model: reused from the trainer's last evaluation if it ran at the
    last step, else computed now."""
    if evaluator is None:
        return {}
    state = trainer.state
    last = [e for e in state.log_history if any(k.startswith("eval_") for k in e)]
    if last and last[-1].get("step") == state.global_step:
        metrics = {k.removeprefix("eval_"): float(v) for k, v in last[-1].items()
                   if k.startswith("eval_") and not k.endswith(
                       ("_runtime", "_samples_per_second", "_steps_per_second"))}
    else:
        metrics = {k: float(v) for k, v in evaluator(trainer.model).items()}
    print(f"final evaluation: {metrics}", flush=True)
    return metrics


def train(args: argparse.Namespace) -> Path:
    """Run one training; returns the output directory holding the model and its card."""
    data = load_training_data(args)
    model = load_base(args.base, args.max_seq_length)
    if args.freeze_embeddings:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    query_prompt, doc_prompt = model_prompts(model)
    columns = {c for ds in data.datasets.values() for c in ds.column_names}
    evaluators = [] if args.no_eval else build_evaluators(
        data, resolve_ccpm_dir(args.ccpm_dir), args.seed)
    evaluator = SequentialEvaluator(evaluators) if evaluators else None
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_arguments(args, column_prompts(columns, query_prompt, doc_prompt),
                                evaluator is not None),
        train_dataset=data.datasets,
        loss=MultipleNegativesRankingLoss(model, scale=20.0, similarity_fct=cos_sim),
        evaluator=evaluator,
        callbacks=[ProgressLog()] + ([TimeLimit(args.time_limit)] if args.time_limit else []),
    )
    trainer.remove_callback(PrinterCallback)  # ProgressLog prints the same values
    sizes = ", ".join(f"{k}={len(v)}" for k, v in data.datasets.items())
    print(f"training {args.base} on {sizes} (chat dev held out: {len(data.chat_dev)}), "
          f"batch {args.batch_size}, lr {args.lr}, prompts {query_prompt!r}/{doc_prompt!r}",
          flush=True)
    trainer.train(resume_from_checkpoint=True if args.resume else None)

    final_metrics = final_evaluation(trainer, evaluator)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(args.output_dir), create_model_card=False)
    uses_ccpm = "ccpm" in data.datasets or any(isinstance(e, CcpmEvaluator) for e in evaluators)
    write_model_card(args.output_dir,
                     card_info(args, data, model, trainer, final_metrics, uses_ccpm))
    print(f"saved {args.output_dir}", flush=True)
    return args.output_dir


def run_args_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the batch size, learning rate or time limit, if anything."""
    if (args.batch_size < 1 or not math.isfinite(args.lr) or args.lr <= 0
            or (args.time_limit is not None and not args.time_limit > 0)):
        return "--batch-size must be >= 1, --lr > 0 and --time-limit > 0"
    return None


def run_job(parser: argparse.ArgumentParser, job: Any, argv: Sequence[str] | None) -> int:
    """Parse ``argv``, check the run settings and call ``job(args)``; problems are one-line
    errors with exit code 2."""
    args = parser.parse_args(argv)
    if problem := run_args_error(args):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        job(args)
    except PoemragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(build_parser(), train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
