"""Text encoders behind :class:`poemrag.embeddings.PoemEmbeddings`.

* :class:`OnnxEncoder` runs an exported model with fastembed/onnxruntime (no torch import).
* :class:`TorchEncoder` runs any sentence-transformers model (a local directory or a hub id).

Both take the model's own prompts (``config_sentence_transformers.json``: e5-style models use
``"query: "`` / ``"passage: "``) and return L2-normalised float32 arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from poemrag.errors import ModelError
from poemrag.settings import resolve_model

Backend = Literal["onnx", "torch"]
ONNX_FILE = "model.onnx"
PROMPTS_FILE = "config_sentence_transformers.json"
MODEL_INFO_FILE = "poemrag_model.json"


class Encoder(Protocol):
    """What PoemEmbeddings needs from a backend."""

    dimension: int
    query_prompt: str
    document_prompt: str

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray: ...


def read_prompts(model_dir: Path) -> tuple[str, str]:
    """(query prompt, document prompt) from the model's sentence-transformers config."""
    path = model_dir / PROMPTS_FILE
    if not path.exists():
        return "", ""
    prompts = json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    document = prompts.get("document", prompts.get("passage", ""))
    return prompts.get("query", ""), document


def detect_backend(model: str) -> Backend:
    """``onnx`` for a directory holding ``model.onnx`` (packaged names resolved), else
    ``torch``."""
    return "onnx" if (Path(resolve_model(model)) / ONNX_FILE).is_file() else "torch"


class OnnxEncoder:
    """fastembed over a local ONNX export (mean pooling + normalisation), fully offline."""

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        if not (model_dir / ONNX_FILE).is_file():
            raise ModelError(f"no {ONNX_FILE} in model directory {model_dir}")
        info_path = model_dir / MODEL_INFO_FILE
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
        self.query_prompt, self.document_prompt = read_prompts(model_dir)
        # fastembed keys custom models by name: one name per directory.
        digest = hashlib.sha1(str(model_dir.resolve()).encode()).hexdigest()[:12]
        name = f"poemrag-local/{model_dir.name}-{digest}"
        if not any(m["model"] == name for m in TextEmbedding.list_supported_models()):
            TextEmbedding.add_custom_model(
                model=name,
                pooling=PoolingType.MEAN,
                normalization=True,
                sources=ModelSource(hf=name),
                dim=int(info.get("dim", 0)) or 1,
                model_file=ONNX_FILE,
            )
        try:
            self._model = TextEmbedding(
                model_name=name,
                specific_model_path=str(model_dir),
                threads=threads,
                local_files_only=True,
            )
        except Exception as exc:  # noqa: BLE001 - fastembed/onnxruntime raise many types for a broken model
            raise ModelError(f"cannot load ONNX model {model_dir}: {_one_line(exc)}") from None
        self.dimension = int(info.get("dim") or self.encode(["维度"], 1).shape[1])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Batches pad to their longest text: encoding in length order wastes less on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.asarray(
            list(self._model.embed([texts[i] for i in order], batch_size=batch_size)),
            dtype=np.float32,
        )
        restored = np.empty_like(vectors)
        restored[order] = vectors
        return restored


class TorchEncoder:
    """sentence-transformers on the CPU (or CUDA when available)."""

    def __init__(self, model: str, device: str | None = None) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ModelError(
                "the torch backend needs the 'torch' extra: pip install 'poemrag[torch]'"
            ) from None
        try:
            self._model = SentenceTransformer(model, device=device)
        except Exception as exc:  # noqa: BLE001 - OSError for a missing hub id, ValueError for bad configs, …
            raise ModelError(f"cannot load model {model!r}: {_one_line(exc)}") from None
        prompts: dict[str, str] = self._model.prompts or {}
        self.query_prompt = prompts.get("query", "")
        self.document_prompt = prompts.get("document", prompts.get("passage", ""))
        get_dim = (  # renamed in sentence-transformers 6.2
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        self.dimension = int(dim) if dim else int(self.encode(["维度"], 1).shape[1])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def load_encoder(model: str, backend: Backend | None = None, **kwargs: Any) -> Encoder:
    """Open ``model`` (a local directory, packaged model name or hub id) with the given or
    detected backend."""
    model = resolve_model(model)
    backend = backend or detect_backend(model)
    path = Path(os.path.expanduser(model))
    if backend == "onnx":
        if not path.is_dir():
            raise ModelError(
                f"model directory not found: {model} (the onnx backend needs a local export)"
            )
        return OnnxEncoder(path, threads=kwargs.get("threads"))
    looks_local = path.is_absolute() or model.startswith(".") or path.exists()
    if looks_local and not path.exists():
        raise ModelError(f"model directory not found: {model}")
    return TorchEncoder(str(path) if path.exists() else model, device=kwargs.get("device"))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
