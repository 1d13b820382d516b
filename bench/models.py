"""The sentence-transformers models the benchmark's torch sides load, built locally and cached.

* :func:`same_weights_model` (the ``baseline`` side): the packaged ONNX model unpacked back
  to BERT + mean Pooling + Dense (``training.unpack``: int8 weights dequantized), its vectors
  checked against poemrag's within the int8 tolerance. Built once per model file.
* :func:`seed_model` (the ``seed`` side): the reference model card's architecture
  (ritrieve_zh_v1: a 326M-parameter BERT-large, 24 layers, hidden 1024, 16 heads, FFN 4096,
  vocabulary 21,128, mean pooling, Dense 1024 -> 1792) with **random weights** and a
  character-level BERT tokenizer over the benchmark texts' characters. It is a speed-only
  stand-in: a model's speed does not depend on its weights, its answers do, so no quality
  figure is ever reported for it. Built once per vocabulary.

* :func:`standin_reranker` (``python -m bench.rerank`` when no trained reranker is given): a
  cross-encoder of the reranker's intended shape (the fast student's 4 layers, as the GPU job
  prunes them, with a new random scoring head), exported to int8 ONNX. Speed only, like the seed.

All land under ``artifacts/bench/`` (``--cache``); a rerun reuses them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from poemrag.errors import ModelError

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "artifacts" / "bench"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
UNPACK_RECORD = "bench_unpack.json"
SEED_RECORD = "bench_seed.json"
STANDIN_RECORD = "bench_standin.json"


@dataclass(frozen=True)
class SeedArch:
    """Shape of the seed encoder (a BERT with mean pooling and a Dense projection)."""

    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    dim: int
    max_seq_length: int = 512


SEED_ARCHS = {
    "reference": SeedArch("reference", layers=24, hidden=1024, heads=16, ffn=4096,
                          vocab=21_128, dim=1792),
    # For tests of the harness only: the same layout, tiny.
    "tiny": SeedArch("tiny", layers=2, hidden=32, heads=2, ffn=64, vocab=2_000, dim=48,
                     max_seq_length=64),
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cached_build(final: Path, record_name: str, build: Callable[[Path], dict[str, Any]]) -> Path:
    """``final`` as built once by ``build(tmp)`` (which returns the record written beside the
    model): built in a temporary folder of the cache, then moved into place."""
    if (final / record_name).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        record = build(tmp)
        (tmp / record_name).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        return _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, final: Path) -> Path:
    """Move a finished build into place (a concurrent build of the same key may have won)."""
    tmp.chmod(0o755)  # mkdtemp made it private
    try:
        tmp.rename(final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# -- the same-weights baseline ----------------------------------------------------------------


def same_weights_model(onnx_dir: Path, cache: Path = CACHE) -> Path:
    """The sentence-transformers form of the exported model ``onnx_dir`` (its dequantized
    weights), built once under ``cache`` and checked against the ONNX model's vectors."""
    from poemrag.fingerprint import model_fingerprint
    from training.unpack import MIN_COSINE, parity, unpack

    onnx_dir = Path(onnx_dir)
    if not (onnx_dir / "model.onnx").is_file():
        raise ModelError(f"no model.onnx in {onnx_dir}: not an exported poemrag model")
    fingerprint = model_fingerprint(str(onnx_dir))
    final = cache / f"unpacked-{onnx_dir.name}-{fingerprint[:12]}"

    def build(tmp: Path) -> dict[str, Any]:
        say(f"unpacking {onnx_dir} to sentence-transformers for the same-weights baseline "
            f"(once; cached in {final})")
        st = unpack(onnx_dir, tmp)
        cosine = parity(st, onnx_dir)
        if cosine < MIN_COSINE:
            raise ModelError(f"the unpacked {onnx_dir.name} differs from its ONNX model (min "
                             f"cosine {cosine:.5f} < {MIN_COSINE}): not a same-weights baseline")
        say(f"unpacked {onnx_dir.name}: min cosine to the ONNX model {cosine:.5f}")
        return {"source": str(onnx_dir), "fingerprint": fingerprint,
                "min_cosine_to_onnx": round(cosine, 6)}

    return _cached_build(final, UNPACK_RECORD, build)


# -- the seed stand-in ------------------------------------------------------------------------


def char_vocab(texts: Iterable[str], size: int) -> list[str]:
    """A character-level BERT vocabulary of exactly ``size`` entries: the special tokens,
    then the texts' characters (lower-cased, as BERT's tokenizer sees them) by falling
    frequency, then ``[unusedN]`` fillers."""
    counts = Counter(ch for text in texts for ch in text.lower() if not ch.isspace())
    room = size - len(SPECIALS)
    if room <= 0:
        raise ValueError(f"vocabulary size {size} leaves no room beside {len(SPECIALS)} specials")
    chars = [ch for ch, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:room]
    fillers = [f"[unused{i}]" for i in range(room - len(chars))]
    return SPECIALS + chars + fillers


def seed_model(texts: Iterable[str], arch: SeedArch = SEED_ARCHS["reference"],
               cache: Path = CACHE, seed: int = 0) -> Path:
    """The seed encoder for ``texts``' characters, built once per vocabulary under ``cache``:
    random BERT weights (seeded) + char-level BERT tokenizer + mean pooling + Dense."""
    vocab = char_vocab(texts, arch.vocab)
    key = hashlib.sha256(json.dumps([asdict(arch), seed, vocab]).encode()).hexdigest()[:12]
    final = cache / f"seed-{arch.name}-{key}"

    def build(tmp: Path) -> dict[str, Any]:
        say(f"building the seed stand-in ({arch.name}: {arch.layers} layers, hidden "
            f"{arch.hidden}, random weights; once, cached in {final})")
        params = _build_seed(tmp, vocab, arch, seed)
        say(f"built the seed stand-in: {params / 1e6:.0f}M parameters")
        return {"architecture": asdict(arch), "parameters": params, "seed": seed,
                "characters": sum(1 for t in vocab if not t.startswith("[")),
                "note": "random weights: a speed-only stand-in, never a quality reference"}

    return _cached_build(final, SEED_RECORD, build)


def _build_seed(out: Path, vocab: list[str], arch: SeedArch, seed: int) -> int:
    """Write the sentence-transformers model to ``out``; return its parameter count."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    hf = out / "_hf"
    hf.mkdir()
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True,
                                  tokenize_chinese_chars=True,
                                  model_max_length=arch.max_seq_length)
    tokenizer.save_pretrained(str(hf))
    config = BertConfig(vocab_size=arch.vocab, hidden_size=arch.hidden,
                        num_hidden_layers=arch.layers, num_attention_heads=arch.heads,
                        intermediate_size=arch.ffn, max_position_embeddings=arch.max_seq_length,
                        type_vocab_size=2, pad_token_id=0)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(hf))
    transformer = Transformer(str(hf), max_seq_length=arch.max_seq_length)
    modules: list[Any] = [transformer, Pooling(arch.hidden, "mean"),
                          Dense(arch.hidden, arch.dim, activation_function=torch.nn.Identity())]
    st = SentenceTransformer(modules=modules, device="cpu")
    params = sum(p.numel() for p in st.parameters())
    st.save(str(out), safe_serialization=True, create_model_card=False)
    shutil.rmtree(hf)
    return params


# -- the reranker stand-in --------------------------------------------------------------------


def standin_reranker(encoder_dir: Path, cache: Path = CACHE) -> Path:
    """An int8 ONNX cross-encoder made of ``encoder_dir``'s transformer (an exported poemrag
    encoder, unpacked) and a random scoring head: the reranker's speed, none of its answers."""
    from poemrag.fingerprint import model_fingerprint
    from training.rerank import load_base
    from training.rerank_export import export_reranker

    encoder_dir = Path(encoder_dir)
    fingerprint = model_fingerprint(str(encoder_dir))
    final = cache / f"standin-reranker-{encoder_dir.name}-{fingerprint[:12]}"

    def build(tmp: Path) -> dict[str, Any]:
        say(f"building a stand-in reranker from {encoder_dir}'s layers (once; cached in {final})")
        ce = load_base(str(same_weights_model(encoder_dir, cache)), max_length=128)
        ce.save(str(tmp / "ce"))
        export_reranker(tmp / "ce", tmp, int8=True)
        shutil.rmtree(tmp / "ce")
        layers = ce.model.config.num_hidden_layers
        return {"source": str(encoder_dir), "fingerprint": fingerprint, "layers": layers,
                "note": "random scoring head: a speed-only stand-in, no quality figure"}

    return _cached_build(final, STANDIN_RECORD, build)
