"""poemrag: cite a fitting line of classical Tang poetry for a modern Chinese chat message.

The public API, imported on first use (``import poemrag`` itself loads nothing heavy)::

    from poemrag import PoemRetriever, PoemEmbeddings, PoemVectorStore, Settings
    from poemrag import PoemReranker  # the optional second stage (cross-encoder)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "PoemRetriever": "poemrag.retriever",
    "PoemReranker": "poemrag.reranker",
    "EmptyQueryError": "poemrag.errors",
    "SearchOptionError": "poemrag.errors",
    "PoemEmbeddings": "poemrag.embeddings",
    "PoemVectorStore": "poemrag.vectorstore",
    "Settings": "poemrag.settings",
    "PoemragError": "poemrag.errors",
    "CorpusError": "poemrag.errors",
    "ModelError": "poemrag.errors",
    "StoreError": "poemrag.errors",
    "RerankerError": "poemrag.errors",
}

__all__ = [
    "CorpusError",
    "EmptyQueryError",
    "ModelError",
    "PoemEmbeddings",
    "PoemReranker",
    "PoemRetriever",
    "PoemVectorStore",
    "PoemragError",
    "RerankerError",
    "SearchOptionError",
    "Settings",
    "StoreError",
    "__version__",
]

if TYPE_CHECKING:
    from poemrag.embeddings import PoemEmbeddings
    from poemrag.errors import (
        CorpusError,
        EmptyQueryError,
        ModelError,
        PoemragError,
        RerankerError,
        SearchOptionError,
        StoreError,
    )
    from poemrag.reranker import PoemReranker
    from poemrag.retriever import PoemRetriever
    from poemrag.settings import Settings
    from poemrag.vectorstore import PoemVectorStore


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'poemrag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
