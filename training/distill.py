"""Distil a teacher encoder into a shallower student by matching the teacher's vectors.

    python -m training.prune artifacts/trained/gpu-run2-best --layers 4 --out artifacts/student/p4
    python -m training.distill --student artifacts/student/p4 --ccpm-dir CCPM_DIR \\
        --output-dir artifacts/trained/student4

The student (usually made by :mod:`training.prune` from the teacher's own weights) learns to
reproduce the teacher's normalised vectors with EmbedDistillLoss (cosine distance) on the texts
the product embeds: queries (chat anchors of the training split, CCPM train translations) with
the query prompt and documents (chat positives and negatives, every CCPM train line and a seeded
sample of corpus couplets) with the document prompt. No labels are needed, so the student also
learns the teacher's ranking of wrong candidates. The teacher defaults to the packaged model.

Teacher vectors are computed once into ``OUTPUT_DIR/teacher/teacher.npy`` (float16), keyed by the
texts and the teacher's weights fingerprint; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from poemrag.errors import ModelError, PoemragError
from training.ccpm import CcpmRow
from training.data import (
    DEFAULT_DATA_GLOB,
    Triplet,
    data_files,
    load_ccpm_split,
    read_triplet_files,
    resolve_ccpm_dir,
    split_dev,
)

TEACHER_CHUNK = 4096
"""Texts embedded by the teacher between two cache checkpoints."""


def distill_texts(
    chat: Sequence[Triplet], ccpm: Sequence[CcpmRow], couplets: Sequence[str],
    query_prompt: str, document_prompt: str,
) -> list[str]:
    """The prompted training texts, each once: queries first, then documents."""
    queries = [t.anchor for t in chat] + [r.translation for r in ccpm]
    documents = [x for t in chat for x in (t.positive, *t.negatives)]
    documents += [c for r in ccpm for c in r.choices] + list(couplets)
    prompted = [query_prompt + q for q in queries] + [document_prompt + d for d in documents]
    return list(dict.fromkeys(prompted))


def cache_key(texts: Sequence[str], fingerprint: str) -> str:
    """Identifies a teacher-vector cache: the texts in order and the teacher's weights."""
    digest = hashlib.sha256(fingerprint.encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()[:32]


def teacher_vectors(
    encode: Any, texts: Sequence[str], dim: int, cache_dir: Path, key: str,
    batch_size: int = 64, progress: bool = True,
) -> np.ndarray:
    """``encode(texts, batch_size)`` for every text, checkpointed in ``cache_dir`` so that a
    rerun with the same key continues after the last finished chunk."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    array_path, state_path = cache_dir / "teacher.npy", cache_dir / "teacher.json"
    state = json.loads(state_path.read_text("utf-8")) if state_path.exists() else {}
    shape = (len(texts), dim)
    resumable = state.get("key") == key and array_path.exists()
    vectors = np.lib.format.open_memmap(
        array_path, mode="r+" if resumable else "w+", dtype=np.float16, shape=shape)
    if vectors.shape != shape:
        raise PoemragError(f"teacher cache {array_path} has shape {vectors.shape}, not {shape}")
    done = int(state.get("done", 0)) if resumable else 0
    with tqdm(total=len(texts), initial=done, unit="text", desc="teacher",
              disable=not progress) as bar:
        while done < len(texts):
            chunk = list(texts[done:done + TEACHER_CHUNK])
            vectors[done:done + len(chunk)] = encode(chunk, batch_size)
            vectors.flush()
            done += len(chunk)
            state_path.write_text(json.dumps({"key": key, "done": done}), "utf-8")
            bar.update(len(chunk))
    return np.asarray(vectors, dtype=np.float32)


def sample_couplets(count: int, seed: int, corpus: Path | None = None) -> list[str]:
    """A seeded sample of ``count`` corpus couplets (all of them when there are fewer)."""
    if count <= 0:
        return []
    from poemrag.corpus import load_corpus

    texts = [c.text for c in load_corpus(corpus).couplets()]
    return random.Random(seed).sample(texts, min(count, len(texts)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", required=True, help="student ST model directory (training.prune)")
    p.add_argument("--teacher", default="poemrag-zh-1792",
                   help="teacher: model directory (ONNX or ST), packaged model name or hub id")
    p.add_argument("--data", type=Path, nargs="*", default=None,
                   help=f"chat triplet files (default: {DEFAULT_DATA_GLOB})")
    p.add_argument("--ccpm-dir", type=Path, default=None,
                   help="CCPM folder: train lines are distilled, valid is evaluated "
                        "(POEMRAG_CCPM_DIR also selects the valid split, not training data)")
    p.add_argument("--couplets", type=int, default=20000, help="corpus couplets to distil")
    p.add_argument("--corpus", type=Path, default=None, help="corpus tarball/dir (default: pinned)")
    p.add_argument("--output-dir", type=Path, default=Path("artifacts/trained/student"))
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop after this much training time, then evaluate and save as usual")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--shuffle-seed", type=int, default=None,
                   help="seed of the batch order only (default --seed): a second run over "
                        "the same texts, and so the same cached teacher vectors, in a new order")
    p.add_argument("--eval-steps", type=float, default=0.5,
                   help="evaluate every N steps (< 1: share of the run); 0 = only at the end")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--no-checkpoints", action="store_true")
    p.add_argument("--save-steps", type=float, default=0.25,
                   help="save a checkpoint every N steps (< 1: share of the run)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in OUTPUT_DIR/checkpoints (the "
                        "teacher's vectors are cached there too)")
    p.add_argument("--train-embeddings", action="store_true",
                   help="also train the word embeddings (frozen by default: they are the "
                        "teacher's, hold most of the parameters and slow every CPU step)")
    return p


def distill(args: argparse.Namespace) -> Path:
    """Run one distillation; returns the output directory holding the student and its card."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.base.evaluation import SequentialEvaluator
    from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss
    from transformers.trainer_callback import PrinterCallback

    from poemrag.encoders import load_encoder
    from poemrag.fingerprint import model_fingerprint
    from training.model_card import CardInfo, write_model_card
    from training.train import (
        ProgressLog,
        TimeLimit,
        TrainingData,
        build_evaluators,
        card_info_hyper,
        final_evaluation,
        load_base,
        model_prompts,
        training_arguments,
    )

    student = load_base(args.student, args.max_seq_length)
    teacher = load_encoder(args.teacher)
    prompts = model_prompts(student)
    if prompts != (teacher.query_prompt, teacher.document_prompt):
        raise ModelError(f"the student's prompts {prompts} differ from the teacher's "
                         f"{(teacher.query_prompt, teacher.document_prompt)}")
    dim = int(student.get_embedding_dimension())
    if dim != teacher.dimension:
        raise ModelError(f"the student makes {dim}-d vectors, the teacher {teacher.dimension}-d")

    files = data_files(args.data)
    chat = read_triplet_files(files)
    chat_train, chat_dev = split_dev(chat)
    # Train lines only from an explicit --ccpm-dir (as training.train); POEMRAG_CCPM_DIR also
    # selects the valid split for evaluation.
    ccpm = load_ccpm_split(args.ccpm_dir, "train") if args.ccpm_dir is not None else []
    ccpm_dir = resolve_ccpm_dir(args.ccpm_dir)
    couplets = sample_couplets(args.couplets, args.seed, args.corpus)
    texts = distill_texts(chat_train, ccpm, couplets, *prompts)
    if not texts:
        raise PoemragError("nothing to distil: pass --data, --ccpm-dir or --couplets")
    fingerprint = model_fingerprint(args.teacher)
    print(f"distilling {args.teacher} (fingerprint {fingerprint}) into {args.student}: "
          f"{len(texts)} texts", flush=True)
    targets = teacher_vectors(teacher.encode, texts, dim, args.output_dir / "teacher",
                              cache_key(texts, fingerprint))

    if not args.train_embeddings:
        student[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    dataset = Dataset.from_dict({"text": texts, "label": targets})
    data = TrainingData({"distill": dataset}, chat_dev, chat, list(files))
    evaluators = [] if args.no_eval else build_evaluators(data, ccpm_dir, args.seed)
    evaluator = SequentialEvaluator(evaluators) if evaluators else None
    targs = training_arguments(args, None, evaluator is not None)
    if args.shuffle_seed is not None:
        targs.seed = targs.data_seed = args.shuffle_seed  # the batch sampler reads .seed
    trainer = SentenceTransformerTrainer(
        model=student,
        args=targs,
        train_dataset=dataset,
        loss=EmbedDistillLoss(student, distance_metric="cosine"),
        evaluator=evaluator,
        callbacks=[ProgressLog()] + ([TimeLimit(args.time_limit)] if args.time_limit else []),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=True if args.resume else None)

    final_metrics = final_evaluation(trainer, evaluator)
    student.save(str(args.output_dir), create_model_card=False)
    hyper = card_info_hyper(args, trainer, student)
    hyper.update({
        "loss": "EmbedDistillLoss(cosine) to the teacher's vectors",
        "teacher": f"{args.teacher} (fingerprint {fingerprint})",
        "layers": student[0].auto_model.config.num_hidden_layers,
        "word embeddings": "trained" if args.train_embeddings else "frozen",
    })
    rows = {"queries and documents (distinct texts)": len(texts), "of which corpus couplets":
            len(couplets)}
    if chat_dev:
        rows["chat dev (held out, evaluation only)"] = len(chat_dev)
    write_model_card(args.output_dir, CardInfo(
        args.student, rows, hyper, {"query": prompts[0], "document": prompts[1]},
        trainer.state.log_history, final_metrics, bool(ccpm) or ccpm_dir is not None,
        method="embedding distillation from a teacher encoder"))
    print(f"saved {args.output_dir}", flush=True)
    return args.output_dir


def main(argv: Sequence[str] | None = None) -> int:
    from training.train import run_job

    return run_job(build_parser(), distill, argv)


if __name__ == "__main__":
    raise SystemExit(main())
