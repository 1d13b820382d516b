"""Evaluators run during training: CCPM 4-way accuracy and chat dev-set retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sentence_transformers.sentence_transformer.evaluation import (
    InformationRetrievalEvaluator,
    SentenceEvaluator,
)

from training.ccpm import CcpmRow, ccpm_accuracy
from training.data import Triplet


class CcpmEvaluator(SentenceEvaluator):
    """CCPM accuracy with the model's query prompt on translations, document prompt on lines."""

    def __init__(self, rows: Sequence[CcpmRow], name: str = "ccpm", batch_size: int = 64) -> None:
        super().__init__()
        self.rows = list(rows)
        self.name = name
        self.batch_size = batch_size
        self.primary_metric = "accuracy"

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        accuracy = ccpm_accuracy(
            lambda texts: model.encode_query(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True),
            lambda texts: model.encode_document(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True),
            self.rows,
        )
        metrics = self.prefix_name_to_metrics({"accuracy": accuracy}, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics


def chat_ir_evaluator(
    dev: Sequence[Triplet], pool: Sequence[str], name: str = "chat_dev", batch_size: int = 64
) -> InformationRetrievalEvaluator:
    """Retrieval of each dev anchor's positive from ``pool`` (dev positives are added to it)."""
    texts = list(dict.fromkeys([*(t.positive for t in dev), *pool]))
    doc_id = {text: f"d{i}" for i, text in enumerate(texts)}
    queries = {f"q{i}": t.anchor for i, t in enumerate(dev)}
    relevant = {f"q{i}": {doc_id[t.positive]} for i, t in enumerate(dev)}
    return InformationRetrievalEvaluator(
        queries=queries,
        corpus={doc_id[t]: t for t in texts},
        relevant_docs=relevant,
        name=name,
        batch_size=batch_size,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1, 10],
        precision_recall_at_k=[1, 10],
        map_at_k=[10],
        write_csv=False,
    )
