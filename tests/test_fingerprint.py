"""Model fingerprints: a collection embedded by other weights is refused, not silently mixed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from poemrag import ingest
from poemrag.cli import run_cli
from poemrag.edge_store import EdgeStore
from poemrag.errors import PoemragError, StoreError
from poemrag.fingerprint import model_fingerprint
from poemrag.retriever import PoemRetriever
from poemrag.settings import Settings
from poemrag.store import CollectionState, check_collection

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"


@pytest.fixture
def other_weights(tmp_path: Path, tiny_onnx_dir: Path) -> Path:
    """A copy of the tiny ONNX model with one weight byte changed (same layout and size)."""
    copy = tmp_path / "other-model"
    shutil.copytree(tiny_onnx_dir, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-1] ^= 0x01
    (copy / "model.onnx").write_bytes(bytes(data))
    return copy


def test_fingerprint_follows_the_weights_not_the_path(
    tmp_path: Path, tiny_onnx_dir: Path, other_weights: Path
) -> None:
    same = shutil.copytree(tiny_onnx_dir, tmp_path / "same-bytes")
    fp = model_fingerprint(str(tiny_onnx_dir))
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert model_fingerprint(str(same)) == fp
    assert model_fingerprint(str(other_weights)) != fp
    (same / "tokenizer.json").write_text("{}", encoding="utf-8")
    assert model_fingerprint(str(same)) != fp
    assert model_fingerprint("org/some-model") == "hub:org/some-model"


def test_fingerprint_covers_sentence_transformers_modules(tmp_path: Path, tiny_st_dir: Path) -> None:
    copy = shutil.copytree(tiny_st_dir, tmp_path / "st")
    before = model_fingerprint(str(copy))
    dense = next(p for p in copy.glob("*_Dense/model.safetensors"))
    dense.write_bytes(dense.read_bytes()[:-1] + b"\0")
    assert model_fingerprint(str(copy)) != before


def test_check_collection_refuses_other_and_unrecorded_weights() -> None:
    def state(fp: str) -> CollectionState:
        return CollectionState(size=4, distance="Cosine", fingerprint=fp)

    check_collection("c", None, 4, "a" * 16)  # no collection yet
    check_collection("c", state("a" * 16), 4, "a" * 16)
    check_collection("c", state("b" * 16), 4, "")  # nothing to compare with
    check_collection("c", state("b" * 16), None, "b" * 16)  # size unknown: only weights
    for recorded in ("b" * 16, ""):
        with pytest.raises(StoreError, match="--recreate") as err:
            check_collection("the collection", state(recorded), 4, "a" * 16)
        assert "\n" not in str(err.value)
    with pytest.raises(StoreError, match="c holds 4-d Cosine vectors but the model makes 8-d"):
        check_collection("c", state("a" * 16), 8, "a" * 16)
    with pytest.raises(StoreError, match="c does not exist: run `python -m poemrag.ingest`"):
        check_collection("c", None, 4, must_exist=True)


def test_edge_store_records_and_checks_the_fingerprint(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "poems") as store:
        assert store.model_fingerprint() is None
        store.ensure_collection(4, model="m", fingerprint="a" * 16)
        assert store.model_fingerprint() == "a" * 16
        store.ensure_collection(4, model="m", fingerprint="a" * 16)
        with pytest.raises(StoreError, match="fingerprint a{16}"):
            store.ensure_collection(4, model="m", fingerprint="b" * 16)
        store.ensure_collection(4, model="m", recreate=True, fingerprint="b" * 16)
        assert store.model_fingerprint() == "b" * 16


def test_ingest_with_changed_weights_is_refused_until_recreate(
    env: Settings, other_weights: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert run_cli(ingest.main, ["--source", str(FIXTURE), "--quiet", "--limit", "5"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("POEMRAG_MODEL", str(other_weights))
    assert run_cli(ingest.main, ["--source", str(FIXTURE), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--recreate" in err and "\n" not in err
    with EdgeStore(Settings().store_path) as store:
        assert store.count() == 5  # untouched
    assert run_cli(ingest.main, ["--source", str(FIXTURE), "--quiet", "--recreate"]) == 0
    with EdgeStore(Settings().store_path) as store:
        assert store.count() == 43
        assert store.model_fingerprint() == model_fingerprint(str(other_weights))


def test_retriever_refuses_a_collection_of_other_weights(
    env: Settings, other_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(ingest.main, ["--source", str(FIXTURE), "--quiet", "--limit", "5"]) == 0
    retriever = PoemRetriever.from_settings()
    assert retriever.invoke("春天")
    retriever.store.close()
    monkeypatch.setenv("POEMRAG_MODEL", str(other_weights))
    with pytest.raises(PoemragError, match="embedded with a model with fingerprint"):
        PoemRetriever.from_settings()


PACKAGED_FINGERPRINTS = {
    "poemrag-zh-1792": "db14c7c665ed0672",
    "poemrag-zh-1792-fast": "5c476fd6ce8305de",
}
"""Pinned like fastembed's canonical vectors: a change of weights, tokenizer, configs, prompts
or pooling of a packaged model shows here. Update the pin with the model (and re-ingest)."""


@pytest.mark.parametrize("name", sorted(PACKAGED_FINGERPRINTS))
def test_packaged_model_fingerprints_are_pinned(name: str) -> None:
    assert model_fingerprint(name) == PACKAGED_FINGERPRINTS[name]


@pytest.mark.parametrize(
    "name", ["config_sentence_transformers.json", "tokenizer_config.json", "poemrag_model.json"]
)
def test_fingerprint_covers_prompts_tokenizer_config_and_pooling(
    tmp_path: Path, tiny_onnx_dir: Path, name: str
) -> None:
    copy = shutil.copytree(tiny_onnx_dir, tmp_path / "model")
    before = model_fingerprint(str(copy))
    path = copy / name
    text = path.read_text(encoding="utf-8") if path.exists() else "{}"
    path.write_text(text.replace("query: ", "Query: ") + " ", encoding="utf-8")
    assert model_fingerprint(str(copy)) != before


def test_fingerprint_covers_the_pooling_module(tmp_path: Path, tiny_st_dir: Path) -> None:
    copy = shutil.copytree(tiny_st_dir, tmp_path / "st")
    before = model_fingerprint(str(copy))
    pooling = next(copy.glob("*_Pooling/config.json"))
    pooling.write_text(pooling.read_text(encoding="utf-8").replace("true", "false", 1),
                       encoding="utf-8")
    assert model_fingerprint(str(copy)) != before
