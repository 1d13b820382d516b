"""A short identity of an encoder's weights, recorded with every collection.

Vectors from different weights do not mix: a collection embedded by one model returns noise
for queries embedded by another, even when both make 1792-d vectors. The fingerprint lets
ingest and the retriever refuse such a pair with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from poemrag.settings import resolve_model

FINGERPRINT_FILES = frozenset(
    {
        # weights
        "model.onnx", "model.safetensors", "pytorch_model.bin",
        # tokenizer
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
        "sentencepiece.bpe.model",
        # architecture, pooling (module folders' config.json), prompts, module list
        "config.json", "config_sentence_transformers.json", "sentence_bert_config.json",
        "modules.json",
        # poemrag's export record: dimension, pooling, normalisation, maximum length
        "poemrag_model.json",
    }
)
"""Files whose bytes decide the vectors: weights, tokenizer, configs, prompts, pooling."""


def _model_files(root: Path) -> list[Path]:
    """Fingerprinted files of ``root`` and of its sentence-transformers module folders."""
    folders = [root]
    modules = root / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
            folders += [root / e["path"] for e in entries if e.get("path")]
        except (ValueError, TypeError, KeyError):
            pass  # an unreadable modules.json changes nothing here; loading the model reports it
    return sorted(
        p for folder in folders if folder.is_dir()
        for p in folder.iterdir() if p.is_file() and p.name in FINGERPRINT_FILES
    )


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.digest()


def model_fingerprint(model: str) -> str:
    """16 hex digits over a local model directory's weight and tokenizer files; for a hub id
    (nothing local to read), ``hub:<id>``. Packaged model names resolve to their directory."""
    root = Path(os.path.expanduser(resolve_model(model)))
    if not root.is_dir():
        return f"hub:{model}"
    h = hashlib.sha256()
    for path in _model_files(root):
        stat = path.stat()
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(_file_digest(str(path), stat.st_size, stat.st_mtime_ns))
    return h.hexdigest()[:16]
