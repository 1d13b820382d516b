"""A tiny random encoder for tests: char-vocabulary BERT (H=32, 2 layers; ASCII letters and
digits, punctuation and the 21k basic CJK ideographs) as a sentence-transformers model with
a cosine-preserving Dense(32 -> dim) and e5-style prompts.

Deterministic (seeded) and built in a second or two; export it with
:func:`training.export.export_onnx` to get an ONNX dir shaped like the packaged model.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

HIDDEN = 32
LAYERS = 2
MAX_SEQ_LENGTH = 64
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HAN = "".join(map(chr, range(0x4E00, 0xA000)))
"""Every CJK Unified Ideograph of the basic block, so Chinese test text has no [UNK]."""
ASCII = "abcdefghijklmnopqrstuvwxyz0123456789"
PUNCT = "，。！？、：；“”‘’《》（）…—,.!?:;'\"()-"


def tiny_vocab() -> list[str]:
    """Special tokens, then every character once, in a fixed order."""
    return SPECIALS + list(dict.fromkeys(ASCII + PUNCT + HAN))


def _tokenizer(vocab: list[str]) -> Tokenizer:
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=False, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Split(Regex("."), "isolated")])
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))])
    tok.add_special_tokens(SPECIALS)
    return tok


def _save_tokenizer(tok: Tokenizer, out: Path) -> None:
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
               "cls_token": "[CLS]", "mask_token": "[MASK]"}
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": MAX_SEQ_LENGTH,
              "padding_side": "right", "truncation_side": "right",
              "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
              "clean_up_tokenization_spaces": False, **special}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def build_tiny_st_model(path: Path, dim: int = 48, seed: int = 0) -> Path:
    """Write a tiny seeded ST model (Transformer -> mean -> Dense(32 -> dim) -> Normalize)
    to ``path`` and return it. ``dim`` must be at least 32."""
    import torch
    from transformers import BertConfig, BertModel

    from training.st_model import build_st_model, save_st_model

    vocab = tiny_vocab()
    config = BertConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                        num_attention_heads=2, intermediate_size=2 * HIDDEN,
                        max_position_embeddings=MAX_SEQ_LENGTH, type_vocab_size=2,
                        pad_token_id=0)
    torch.manual_seed(seed)
    bert = BertModel(config)
    with tempfile.TemporaryDirectory(prefix="tiny-bert-") as tmp:
        hf = Path(tmp)
        bert.save_pretrained(hf)
        _save_tokenizer(_tokenizer(vocab), hf)
        st = build_st_model(hf, dim, seed=seed, max_seq_length=MAX_SEQ_LENGTH)
        path.mkdir(parents=True, exist_ok=True)
        save_st_model(st, path, tokenizer_dir=hf, model_card=False)
    return path
