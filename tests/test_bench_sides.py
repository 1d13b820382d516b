"""bench.sides end to end on the fixture corpus with the tiny encoder: the sides ingest and
query, and report the fields the harness reads; bench.models builds the seed and the
same-weights baseline once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import sides
from bench.harness import write_couplets
from bench.models import SEED_ARCHS, SPECIALS, char_vocab, same_weights_model, seed_model
from poemrag.errors import ModelError

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"


def run_side(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"{args[0]}-{args[1]}.json"
    assert sides.main([*args, "--out", str(out), "--queries", "5"]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_poemrag_side_ingests_and_queries(env, tmp_path: Path, tiny_onnx_dir: Path) -> None:
    data = tmp_path / "poemrag-store"
    common = ["--data", str(data), "--model", str(tiny_onnx_dir)]
    ingest = run_side(tmp_path, "poemrag", "ingest", *common, "--source", str(FIXTURE))
    assert ingest["points"] == ingest["couplets"] == ingest["embedded"] == 43
    assert ingest["ingest_per_s"] > 0 and ingest["embed_s"] > 0
    query = run_side(tmp_path, "poemrag", "query", *common)
    assert query["peak_rss_mb_self"] > 0 and "side" in query


def test_baseline_side_ingests_and_queries(env, tmp_path: Path, tiny_st_dir: Path) -> None:
    pytest.importorskip("langchain_qdrant")
    pytest.importorskip("langchain_huggingface")
    couplets = tmp_path / "couplets.jsonl"
    assert write_couplets(FIXTURE, None, couplets) == 43
    common = ["--data", str(tmp_path / "baseline-store"), "--model", str(tiny_st_dir)]
    ingest = run_side(tmp_path, "baseline", "ingest", *common, "--couplets", str(couplets))
    assert ingest["ingest_per_s"] > 0
    query = run_side(tmp_path, "baseline", "query", *common)
    assert query["side"] == "baseline"


def test_same_weights_baseline_is_unpacked_once_and_checked(
    tiny_onnx_dir: Path, tmp_path: Path
) -> None:
    built = same_weights_model(tiny_onnx_dir, tmp_path)
    record = json.loads((built / "bench_unpack.json").read_text())
    assert record["min_cosine_to_onnx"] >= 0.99 and (built / "modules.json").is_file()
    stamp = (built / "model.safetensors").stat().st_mtime_ns
    assert same_weights_model(tiny_onnx_dir, tmp_path) == built  # reused, not rebuilt
    assert (built / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [built.name]
    with pytest.raises(ModelError, match="no model.onnx in"):
        same_weights_model(tmp_path, tmp_path)


def test_seed_is_char_level_random_and_cached(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["床前明月光，疑是地上霜。", "今天好累啊"]
    assert char_vocab(["b a a", "B"], 9) == [*SPECIALS, "a", "b", "[unused0]", "[unused1]"]
    vocab = char_vocab(texts, 40)  # 5 specials + 17 characters + 18 fillers
    assert len(vocab) == 40 and set(vocab[5:22]) == set("".join(texts))
    assert vocab[-1] == "[unused17]"
    built = seed_model(texts, SEED_ARCHS["tiny"], tmp_path)
    assert seed_model(texts, SEED_ARCHS["tiny"], tmp_path) == built
    st = SentenceTransformer(str(built), device="cpu")
    assert st.tokenizer.tokenize("明月光，好累") == list("明月光，好累")
    assert st.encode(["想家了"]).shape == (1, SEED_ARCHS["tiny"].dim)
    record = json.loads((built / "bench_seed.json").read_text())
    assert record["architecture"]["layers"] == 2 and "speed-only" in record["note"]
    # Another vocabulary is another model; the reference shape is the card's.
    assert seed_model(["别的字"], SEED_ARCHS["tiny"], tmp_path) != built
    ref = SEED_ARCHS["reference"]
    assert (ref.layers, ref.hidden, ref.heads, ref.ffn, ref.vocab, ref.dim) == (
        24, 1024, 16, 4096, 21_128, 1792)
