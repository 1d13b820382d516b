"""Train a cross-encoder reranker (one score per message/couplet pair) on chat triplets and CCPM.

    python -m training.rerank --base DIR --data training/data/chat_*.jsonl --ccpm-dir CCPM_DIR \\
        --output-dir artifacts/rerank/run1

``--base`` is a sentence-transformers encoder (its Transformer module is used, e.g.
``artifacts/unpacked/default`` or a ``training.prune`` student), a Hugging Face BERT directory,
or a saved ``CrossEncoder`` (to train further). The data are :func:`training.train.
load_training_data`'s: the train split of every chat JSONL file with all its negatives
(``negative``, ``negative_1..n``) and CCPM train (the answer against its three distractors).
The loss is the cross-encoder ``MultipleNegativesRankingLoss``: a softmax over each message's
positive, its hard negatives and ``--in-batch-negatives`` other rows' couplets. Export the
result with ``python -m training.rerank_export`` and evaluate it with ``python -m
training.rerank_eval``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.evaluation import SentenceEvaluator, SequentialEvaluator
from sentence_transformers.cross_encoder import (
    CrossEncoder,
    CrossEncoderTrainer,
    CrossEncoderTrainingArguments,
)
from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss
from transformers.trainer_callback import PrinterCallback

from poemrag.errors import ModelError, PoemragError
from training.data import DEFAULT_DATA_GLOB, load_ccpm_split, resolve_ccpm_dir
from training.model_card import CardInfo, render_model_card
from training.rerank_eval import Choice, ccpm_choices, choice_accuracy, triplet_choices
from training.train import (
    CCPM_EVAL_ROWS,
    ProgressLog,
    TimeLimit,
    TrainingData,
    card_info_hyper,
    common_training_kwargs,
    final_evaluation,
    load_training_data,
    run_job,
)

DEFAULT_OUTPUT = Path("artifacts/rerank/run")
MAX_LENGTH = 128
"""Tokens per (message, couplet) pair: messages run to 80 characters, couplets to about 30."""
ST_ONLY_FILES = {"modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "README.md"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.rerank",
                                description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True,
                   help="sentence-transformers encoder, BERT or CrossEncoder directory")
    p.add_argument("--data", type=Path, nargs="*", default=None,
                   help=f"triplet JSONL files (default: {DEFAULT_DATA_GLOB})")
    p.add_argument("--ccpm-dir", type=Path, default=None,
                   help="train on CCPM train.jsonl from this folder (valid.jsonl for evaluation)")
    p.add_argument("--max-negatives", type=int, default=None, metavar="N",
                   help="use at most the first N negatives of each chat row (default: all)")
    p.add_argument("--in-batch-negatives", type=int, default=4, metavar="N",
                   help="other rows' couplets scored against each message (default 4)")
    p.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH, help="tokens per pair")
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


def transformer_dir(base: Path) -> Path:
    """The Hugging Face model inside ``base``: a sentence-transformers model's first
    (Transformer) module, else ``base`` itself."""
    modules = base / "modules.json"
    if modules.is_file():
        first = json.loads(modules.read_text(encoding="utf-8"))[0]
        if first.get("type", "").endswith("Transformer"):
            return base / first.get("path", "")
    return base


def is_cross_encoder(model_dir: Path) -> bool:
    """True for a saved sequence-classification model (a CrossEncoder to train further)."""
    config = model_dir / "config.json"
    if not config.is_file():
        return False
    archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    return any(a.endswith("ForSequenceClassification") for a in archs)


def load_base(base: str, max_length: int) -> CrossEncoder:
    """A one-label CrossEncoder from ``base``; the encoder's weights, a new scoring head."""
    path = Path(base)
    if not path.is_dir():
        raise ModelError(f"base model not found: {base} (a local directory is needed)")
    try:
        if is_cross_encoder(path):
            return CrossEncoder(str(path), num_labels=1, max_length=max_length)
        source = transformer_dir(path)
        with tempfile.TemporaryDirectory(prefix="poemrag-rerank-base-") as tmp:
            # Only the Transformer's files: loading the whole sentence-transformers dir would
            # bring its pooling and Dense modules along.
            for item in source.iterdir():
                if item.is_file() and item.name not in ST_ONLY_FILES:
                    shutil.copyfile(item, Path(tmp) / item.name)
            return CrossEncoder(tmp, num_labels=1, max_length=max_length)
    except Exception as exc:  # noqa: BLE001 - any load failure becomes one line
        detail = str(exc).strip().splitlines()
        raise ModelError(f"cannot load base model {base}: "
                         f"{detail[0] if detail else type(exc).__name__}") from None


class ChoiceEvaluator(SentenceEvaluator):
    """Accuracy of picking each question's answer among its candidates (CCPM: 4-way)."""

    def __init__(self, choices: Sequence[Choice], name: str, batch_size: int = 64) -> None:
        super().__init__()
        self.choices = list(choices)
        self.name = name
        self.batch_size = batch_size
        self.primary_metric = "accuracy"

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1,
                 steps: int = -1) -> dict[str, float]:
        def score(pairs: Sequence[tuple[str, str]]) -> Any:
            return model.predict([list(p) for p in pairs], batch_size=self.batch_size,
                                 activation_fn=torch.nn.Identity(), convert_to_numpy=True)

        metrics = self.prefix_name_to_metrics(
            {"accuracy": choice_accuracy(score, self.choices)}, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics


def build_evaluators(data: TrainingData, ccpm_dir: Path | None, seed: int) -> list[Any]:
    """Chat dev (the positive among the row's own negatives) and CCPM valid on a seeded
    500-row subset."""
    evaluators: list[Any] = []
    if data.chat_dev:
        evaluators.append(ChoiceEvaluator(triplet_choices(data.chat_dev), "chat_dev"))
    if ccpm_dir is not None and (ccpm_dir / "valid.jsonl").is_file():
        valid = load_ccpm_split(ccpm_dir, "valid")
        subset = random.Random(seed).sample(valid, min(CCPM_EVAL_ROWS, len(valid)))
        evaluators.append(ChoiceEvaluator(ccpm_choices(subset), "ccpm"))
    return evaluators


def training_arguments(args: argparse.Namespace, evaluate: bool) -> CrossEncoderTrainingArguments:
    """The encoder's trainer settings (:func:`training.train.common_training_kwargs`)."""
    return CrossEncoderTrainingArguments(**common_training_kwargs(args, evaluate))


def write_card(args: argparse.Namespace, data: TrainingData, model: CrossEncoder,
               trainer: CrossEncoderTrainer, final_metrics: dict[str, float]) -> Path:
    """The encoder's card (:mod:`training.model_card`), titled as a reranker."""
    rows = {name: len(ds) for name, ds in data.datasets.items()}
    if data.chat_dev:
        rows["chat dev (held out, evaluation only)"] = len(data.chat_dev)
    hyper = {
        "loss": f"cross-encoder MultipleNegativesRankingLoss (in-batch negatives "
                f"{args.in_batch_negatives}, scale 10, sigmoid)",
        "batch sampler": "NO_DUPLICATES (multi-dataset: proportional)",
        **card_info_hyper(args, trainer, model),
        "max seq length": args.max_length,
        "negatives per chat row": ("all" if args.max_negatives is None
                                   else f"at most {args.max_negatives}"),
        "data files": ", ".join(str(p) for p in data.files) or "-",
    }
    info = CardInfo(args.base, rows, hyper, {"query": "", "document": ""},
                    trainer.state.log_history, final_metrics, "ccpm" in data.datasets,
                    method="the cross-encoder MultipleNegativesRankingLoss")
    card = render_model_card(info).replace(
        "pipeline_tag: sentence-similarity", "pipeline_tag: text-ranking").replace(
        "# poemrag encoder (fine-tuned)", "# poemrag reranker (cross-encoder, fine-tuned)").replace(
        "Prompts: query = `''`, document = `''`.",
        "Input: the (message, couplet) pair, no prompts; output: one logit (higher fits better).")
    path = args.output_dir / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


def train(args: argparse.Namespace) -> Path:
    """Run one training; returns the output directory holding the CrossEncoder and its card."""
    if args.in_batch_negatives < 1 or args.max_length < 8:
        raise PoemragError("--in-batch-negatives must be >= 1 and --max-length >= 8")
    data = load_training_data(args)
    model = load_base(args.base, args.max_length)
    evaluators = [] if args.no_eval else build_evaluators(
        data, resolve_ccpm_dir(args.ccpm_dir), args.seed)
    evaluator = SequentialEvaluator(evaluators) if evaluators else None
    trainer = CrossEncoderTrainer(
        model=model,
        args=training_arguments(args, evaluator is not None),
        train_dataset=data.datasets,
        loss=MultipleNegativesRankingLoss(model, num_negatives=args.in_batch_negatives),
        evaluator=evaluator,
        callbacks=[ProgressLog()] + ([TimeLimit(args.time_limit)] if args.time_limit else []),
    )
    trainer.remove_callback(PrinterCallback)
    sizes = ", ".join(f"{k}={len(v)}" for k, v in data.datasets.items())
    print(f"training a cross-encoder from {args.base} on {sizes} (chat dev held out: "
          f"{len(data.chat_dev)}), batch {args.batch_size}, lr {args.lr}", flush=True)
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    final_metrics = final_evaluation(trainer, evaluator)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(args.output_dir), create_model_card=False)
    write_card(args, data, model, trainer, final_metrics)
    print(f"saved {args.output_dir}", flush=True)
    return args.output_dir


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(build_parser(), train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
