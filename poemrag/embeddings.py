"""LangChain ``Embeddings`` for poemrag's encoder (or any compatible model)."""

from __future__ import annotations

from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from poemrag.encoders import Backend, Encoder, load_encoder
from poemrag.fingerprint import model_fingerprint
from poemrag.settings import Settings


class PoemEmbeddings(BaseModel, Embeddings):
    """Embeds chat messages (queries) and couplets (documents) into one cosine space.

    Defaults come from :class:`~poemrag.settings.Settings`: the packaged int8 ONNX encoder
    (1792-d) on the fastembed backend. ``model`` may be any local export directory or, with
    ``backend="torch"``, any sentence-transformers directory or hub id. Query and document
    prompts are the model's own; vectors are L2-normalised.

    Example:
        >>> emb = PoemEmbeddings()
        >>> vector = emb.embed_query("一个人在外地过中秋，特别想家")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    model: str = Field(description="model directory or hub id (default: settings' model)")
    backend: Backend | None = Field(
        default=None, description="onnx or torch; None = onnx if the directory has model.onnx"
    )
    batch_size: int = Field(ge=1, description="texts per batch (default: settings' batch_size)")
    threads: int | None = Field(default=None, description="onnxruntime threads (None = all)")
    device: str | None = Field(default=None, description="torch device (None = auto)")

    _encoder: Encoder = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _settings_defaults(cls, data: Any) -> Any:
        """Fill unset model/backend/batch_size from one read of the settings."""
        if not isinstance(data, dict) or {"model", "batch_size"} <= data.keys():
            return data
        settings = Settings()
        defaults = {"model": settings.model, "batch_size": settings.batch_size}
        if "model" not in data:
            defaults["backend"] = settings.backend
        return defaults | data

    def model_post_init(self, context: Any, /) -> None:
        self._encoder = load_encoder(
            self.model, self.backend, threads=self.threads, device=self.device
        )

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> PoemEmbeddings:
        """Build from settings (``POEMRAG_MODEL``, ``POEMRAG_BACKEND``, ``POEMRAG_BATCH_SIZE``)."""
        settings = settings or Settings()
        params: dict[str, Any] = {
            "model": settings.model,
            "backend": settings.backend,
            "batch_size": settings.batch_size,
        }
        return cls(**(params | overrides))

    @property
    def fingerprint(self) -> str:
        """Identity of the weights (see :func:`poemrag.fingerprint.model_fingerprint`),
        recorded with the collections this model embeds."""
        return model_fingerprint(self.model)

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        return self._encoder.dimension

    @property
    def query_prompt(self) -> str:
        return self._encoder.query_prompt

    @property
    def document_prompt(self) -> str:
        return self._encoder.document_prompt

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Query vectors as a float32 array of shape (len(texts), dimension)."""
        prompt = self._encoder.query_prompt
        return self._encoder.encode([prompt + t for t in texts], self.batch_size)

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """Document vectors as a float32 array of shape (len(texts), dimension)."""
        prompt = self._encoder.document_prompt
        return self._encoder.encode([prompt + t for t in texts], self.batch_size)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode_queries([text])[0].tolist()
