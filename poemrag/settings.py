"""All of poemrag's configuration, read from ``POEMRAG_*`` environment variables and ``.env``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MODELS_DIR = Path(__file__).parent / "models"
PACKAGED_MODEL_DIR = MODELS_DIR / "poemrag-zh-1792"
"""The default encoder shipped inside the package (int8 ONNX, 1792-d, cosine)."""


LINES_PER_POEM = 1000
"""Point ids are ``poem_index * LINES_PER_POEM + line`` (no Tang poem has 1000 paragraphs)."""
UPSERT_BATCH = 512
"""Default points per store write (``POEMRAG_UPSERT_BATCH_SIZE``)."""
HNSW_EF_SEARCH = 128
"""Default HNSW search breadth (``POEMRAG_HNSW_EF``)."""
RERANK_TOP_N = 30
"""Default candidates the reranker reads per query (``POEMRAG_RERANK_TOP_N``)."""
MAX_RERANK_TOP_N = 1000
"""Most candidates one query may send to the reranker."""


def resolve_model(model: str) -> str:
    """``model`` itself, or for the folder name of a packaged model (``poemrag-zh-1792``,
    ``poemrag-zh-1792-fast``) that is not also a local path, that model's directory."""
    packaged = MODELS_DIR / model
    if Path(model).name == model and not Path(model).exists() and packaged.is_dir():
        return str(packaged)
    return model


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/poemrag``, i.e. ``~/.local/share/poemrag`` by default."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "poemrag"


class Settings(BaseSettings):
    """poemrag settings. Every field can be set as ``POEMRAG_<FIELD>`` or in a ``.env`` file."""

    model_config = SettingsConfigDict(env_prefix="POEMRAG_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Corpus cache and the embedded Qdrant Edge store live here.",
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; unset = embedded Qdrant Edge store."
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="Qdrant server API key.")
    qdrant_timeout: float = Field(default=30.0, description="Server request timeout, seconds.")
    collection: str = Field(default="tang_poems", description="Collection name.")
    model: str = Field(
        default=str(PACKAGED_MODEL_DIR),
        description="Local model directory, hub id or packaged model name (poemrag-zh-1792, "
        "poemrag-zh-1792-fast); default: the packaged poemrag-zh-1792.",
    )
    backend: Literal["onnx", "torch"] | None = Field(
        default=None,
        description="onnx = fastembed/onnxruntime, torch = sentence-transformers; "
        "unset = onnx for a directory holding model.onnx, else torch.",
    )
    batch_size: int = Field(default=64, ge=1, description="Texts per embedding batch.")
    upsert_batch_size: int = Field(default=UPSERT_BATCH, ge=1, description="Points per store write.")
    hnsw_ef: int = Field(
        default=HNSW_EF_SEARCH,
        ge=1,
        description="HNSW search breadth: higher finds more of the exact top-k, more slowly.",
    )
    ccpm_dir: Path | None = Field(
        default=None, description="Directory with CCPM train.jsonl/valid.jsonl (training only)."
    )
    reranker: str | None = Field(
        default=None,
        description="Cross-encoder reranker: a packaged reranker name or an exported directory "
        "(python -m training.rerank_export); unset or empty = no reranking.",
    )
    rerank_top_n: int = Field(
        default=RERANK_TOP_N,
        ge=1,
        le=MAX_RERANK_TOP_N,
        description="Candidates fetched and reranked per query when a reranker is set.",
    )

    @field_validator("reranker", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def store_path(self) -> Path:
        """Directory of the embedded Edge shard for this collection."""
        return self.data_dir / "qdrant" / self.collection

    @property
    def corpus_dir(self) -> Path:
        """Where the pinned corpus tarball is cached."""
        return self.data_dir / "corpus"
