"""Second stage: a cross-encoder reads the message and each couplet together and re-scores them.

:class:`PoemReranker` is a LangChain ``BaseDocumentCompressor``: it plugs into
``ContextualCompressionRetriever`` like any LangChain reranker, and into
:class:`~poemrag.retriever.PoemRetriever` as its ``rerank`` option. The model is an ONNX export
of a sentence-transformers ``CrossEncoder`` (``python -m training.rerank_export``), run with
onnxruntime and the ``tokenizers`` library: no torch at query time. This module is imported only
when a reranker is used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr

from poemrag.encoders import MODEL_INFO_FILE, ONNX_FILE
from poemrag.errors import RerankerError
from poemrag.retriever import RERANK_SCORE, clean_query
from poemrag.settings import MODELS_DIR, Settings, resolve_model

TOKENIZER_FILE = "tokenizer.json"
KIND = "cross-encoder"
"""``kind`` in a reranker export's ``poemrag_model.json`` (encoders have none)."""
DEFAULT_MAX_LENGTH = 128
"""Tokens per (message, couplet) pair when the export does not say."""
FEEDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
"""ONNX input name -> ``tokenizers.Encoding`` attribute."""


def reranker_dir(model: str) -> Path:
    """The directory of ``model``: a path, or the name of a reranker packaged in
    ``poemrag/models/``."""
    path = Path(resolve_model(os.path.expanduser(model)))
    if not path.is_dir():
        raise RerankerError(
            f"reranker not found: {model!r} is neither a directory nor a packaged reranker in "
            f"{MODELS_DIR} (none ships yet: export one with python -m training.rerank_export)"
        )
    return path


class PoemReranker(BaseDocumentCompressor):
    """Orders documents by a cross-encoder's score of (query, ``page_content``).

    ``compress_documents`` returns the documents best first, each with ``rerank_score`` (the
    cross-encoder's logit: higher fits better) added to a copy of its metadata (``score`` and
    the rest are kept); at most ``top_n`` of them (``None``: all).

    Example:
        >>> reranker = PoemReranker(model="path/to/reranker", top_n=3)
        >>> best = reranker.compress_documents(docs, "毕业了，和室友在站台上告别")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    model: str = Field(description="exported reranker directory or packaged reranker name")
    top_n: int | None = Field(default=None, ge=1, description="documents kept (None = all)")
    batch_size: int = Field(default=32, ge=1, description="pairs per ONNX run")
    max_length: int | None = Field(
        default=None, ge=4, description="tokens per pair, longer pairs truncated (None = export's)"
    )
    threads: int | None = Field(default=None, ge=1, description="onnxruntime threads (None = all)")

    _session: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()
    _inputs: list[str] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = reranker_dir(self.model)
        info_path = path / MODEL_INFO_FILE
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        if info.get("kind") != KIND or not (path / ONNX_FILE).is_file() \
                or not (path / TOKENIZER_FILE).is_file():
            raise RerankerError(
                f"not a reranker export: {path} needs {ONNX_FILE}, {TOKENIZER_FILE} and "
                f'{MODEL_INFO_FILE} with "kind": "{KIND}" (python -m training.rerank_export)'
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or 0
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path / ONNX_FILE), options,
                                                 providers=["CPUExecutionProvider"])
            tokenizer = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        except Exception as exc:  # noqa: BLE001 - onnxruntime/tokenizers raise many types
            detail = str(exc).strip().splitlines()
            raise RerankerError(
                f"cannot load reranker {path}: {detail[0] if detail else type(exc).__name__}"
            ) from None
        self._inputs = [i.name for i in self._session.get_inputs()]
        if unknown := [name for name in self._inputs if name not in FEEDS]:
            raise RerankerError(f"reranker {path} takes ONNX input {unknown[0]!r}; "
                                f"poemrag feeds only {', '.join(FEEDS)}")
        tokenizer.enable_truncation(self.max_length or int(info.get("max_length")
                                                           or DEFAULT_MAX_LENGTH),
                                    strategy="longest_first")
        tokenizer.enable_padding(pad_id=int(info.get("pad_token_id", 0)),
                                 pad_token=str(info.get("pad_token", "[PAD]")))
        self._tokenizer = tokenizer

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> PoemReranker:
        """The reranker ``POEMRAG_RERANKER`` names."""
        settings = settings or Settings()
        if "model" not in overrides and not settings.reranker:
            raise RerankerError("no reranker configured: set POEMRAG_RERANKER to a packaged "
                                "reranker name or an exported reranker directory")
        return cls(**({"model": settings.reranker} | overrides))

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """The cross-encoder's logit for each (``query``, text) pair, float32, in input order."""
        query = clean_query(query)
        return self.score_pairs([(query, text) for text in texts])

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """The cross-encoder's logit for each (query, text) pair as given, float32, in order."""
        scores = np.empty(len(pairs), dtype=np.float32)
        # Each batch pads to its longest pair: scoring in length order wastes less on padding.
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            encodings = self._tokenizer.encode_batch([pairs[i] for i in rows])
            feed = {name: np.asarray([getattr(e, FEEDS[name]) for e in encodings], np.int64)
                    for name in self._inputs}
            logits = self._session.run(None, feed)[0]
            scores[rows] = np.asarray(logits, np.float32).reshape(len(rows), -1)[:, 0]
        return scores

    def rank(self, query: str, texts: Sequence[str]) -> list[tuple[int, float]]:
        """(index into ``texts``, score) of every text, best first; ties keep input order."""
        if not texts:
            return []
        scores = self.score(query, texts)
        return [(i, float(scores[i])) for i in sorted(range(len(texts)), key=lambda i: -scores[i])]

    def rerank(self, query: str, documents: Sequence[Document]) -> list[Document]:
        """Every document, best first, each a copy with ``rerank_score`` in its metadata."""
        return [
            Document(page_content=documents[i].page_content, id=documents[i].id,
                     metadata=documents[i].metadata | {RERANK_SCORE: score})
            for i, score in self.rank(query, [d.page_content for d in documents])
        ]

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """``documents`` reranked for ``query``, at most ``top_n`` of them."""
        ranked = self.rerank(query, documents)
        return ranked if self.top_n is None else ranked[: self.top_n]
