"""Assemble a sentence-transformers model: Transformer -> mean Pooling -> Dense -> Normalize.

The Dense layer widens the embedding without changing any cosine similarity: its weight has
orthonormal columns (``W^T W = I``), its bias is zero and its activation is the identity,
so ``<Wx, Wy> = <x, y>`` and ``|Wx| = |x|``. Training can then use the extra width.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

PROMPTS = {"query": "query: ", "document": "passage: "}
MAX_SEQ_LENGTH = 128


def orthonormal_matrix(out_dim: int, in_dim: int, seed: int = 0) -> np.ndarray:
    """An ``[out_dim, in_dim]`` float32 matrix with orthonormal columns (QR of a seeded
    Gaussian; ``out_dim >= in_dim``)."""
    if out_dim < in_dim:
        raise ValueError(f"cannot keep cosines when narrowing {in_dim} -> {out_dim}")
    gauss = np.random.default_rng(seed).standard_normal((out_dim, in_dim))
    q, r = np.linalg.qr(gauss)
    q *= np.sign(np.diag(r))  # unique QR: deterministic across LAPACK builds
    return q.astype(np.float32)


def build_st_model(transformer_dir: Path, out_dim: int, *, seed: int = 0,
                   max_seq_length: int = MAX_SEQ_LENGTH,
                   prompts: dict[str, str] | None = None):  # -> SentenceTransformer
    """Load ``transformer_dir`` (a Hugging Face model + tokenizer) and add mean pooling, a
    cosine-preserving ``Dense(hidden -> out_dim)`` and ``Normalize``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    transformer = Transformer(str(transformer_dir), max_seq_length=max_seq_length)
    hidden = transformer.get_embedding_dimension()
    weight = torch.from_numpy(orthonormal_matrix(out_dim, hidden, seed))
    dense = Dense(hidden, out_dim, bias=True, activation_function=torch.nn.Identity(),
                  init_weight=weight, init_bias=torch.zeros(out_dim))
    return SentenceTransformer(
        modules=[transformer, Pooling(hidden, "mean"), dense, Normalize()],
        prompts=dict(PROMPTS if prompts is None else prompts), device="cpu")


def save_st_model(model, out_dir: Path, tokenizer_dir: Path | None = None,
                  model_card: bool = True) -> None:
    """Save ``model`` to ``out_dir``; if ``tokenizer_dir`` is given, its tokenizer files
    replace the ones the save wrote (keeps ``PreTrainedTokenizerFast`` and our JSON)."""
    model.save(str(out_dir), safe_serialization=True, create_model_card=model_card)
    if tokenizer_dir is not None:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            src = tokenizer_dir / name
            if src.is_file():
                (out_dir / name).write_bytes(src.read_bytes())


def read_prompts(model_dir: Path) -> dict[str, str]:
    """The prompts stored in ``config_sentence_transformers.json`` (empty if none)."""
    path = model_dir / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")).get("prompts", {}))
