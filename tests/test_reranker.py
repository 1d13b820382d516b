"""PoemReranker (a tiny random cross-encoder exported to ONNX), the retriever's ``rerank``
option, its settings, and the training/export/evaluation tooling of ``training.rerank*``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _server_helpers import LOCAL_MODE_WARNINGS, loaded_server_store_fixture  # noqa: F401
from _training_helpers import ANCHORS, COUPLETS, made_up_triplets, write_jsonl
from langchain_core.documents import Document

from poemrag import PoemRetriever, SearchOptionError
from poemrag.errors import RerankerError
from poemrag.settings import Settings

QUERY = "一个人在外地过中秋，特别想家"
QUERIES = (QUERY, "下班后和同事去吃火锅", "好累")
LONG = "今天" * 40 + "，想家"  # longer than the 32-token max length: truncated alike

pytestmark = LOCAL_MODE_WARNINGS


@pytest.fixture(scope="module")
def tiny_ce(tiny_st_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder's BERT with a one-logit head, its weight matrices redrawn wider so
    that different pairs score far apart (at the usual 0.02 every pair scores about the same)."""
    import torch

    from training.rerank import load_base

    ce = load_base(str(tiny_st_dir), max_length=32)
    torch.manual_seed(1)
    with torch.no_grad():
        for weight in ce.model.parameters():
            if weight.dim() == 2:
                weight.normal_(0.0, 0.5)
    out = tmp_path_factory.mktemp("ce") / "ce"
    ce.save(str(out), create_model_card=False)
    return out


@pytest.fixture(scope="module")
def ce_fp32(tiny_ce: Path) -> Path:
    from training.rerank_export import export_reranker

    return export_reranker(tiny_ce, tiny_ce.parent / "fp32")


@pytest.fixture(scope="module")
def ce_int8(tiny_ce: Path) -> Path:
    from training.rerank_export import export_reranker

    return export_reranker(tiny_ce, tiny_ce.parent / "int8", int8=True)


@pytest.fixture(scope="module")
def reranker(ce_fp32: Path):
    from poemrag.reranker import PoemReranker

    return PoemReranker(model=str(ce_fp32), threads=1)


def torch_scores(ce_dir: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    import torch

    from training.rerank_export import load_cross_encoder

    return np.asarray(load_cross_encoder(ce_dir).predict(
        [list(p) for p in pairs], activation_fn=torch.nn.Identity(), convert_to_numpy=True))


def _docs() -> list[Document]:
    return [Document(page_content=c, id=str(i), metadata={"score": 1 - i / 100, "line": i})
            for i, c in enumerate(COUPLETS)]


def test_onnx_scores_and_order_match_the_torch_cross_encoder(tiny_ce: Path, ce_fp32: Path,
                                                             ce_int8: Path) -> None:
    from poemrag.reranker import PoemReranker

    texts = [*COUPLETS, LONG]
    pairs = [(q, t) for q in QUERIES for t in texts]
    ref = torch_scores(tiny_ce, pairs).reshape(len(QUERIES), -1)
    assert ref.std() > 0.3  # far-apart scores: the order below means something
    model = PoemReranker(model=str(ce_fp32), batch_size=5)  # several padded batches
    got = np.stack([model.score(q, texts) for q in QUERIES])
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert (np.argsort(-got, axis=1) == np.argsort(-ref, axis=1)).all()
    # int8 of this artificially wide random model is rough; the export command reports the
    # real model's parity (poemrag_model.json).
    int8 = np.stack([PoemReranker(model=str(ce_int8)).score(q, texts) for q in QUERIES])
    assert np.corrcoef(int8.ravel(), ref.ravel())[0, 1] > 0.95


def test_compress_documents_orders_by_score_and_keeps_metadata(reranker, tiny_ce: Path) -> None:
    docs = _docs()
    ranked = reranker.compress_documents(docs, QUERY)
    expected = torch_scores(tiny_ce, [(QUERY, d.page_content) for d in docs])
    assert [d.id for d in ranked] == [docs[i].id for i in np.argsort(-expected, kind="stable")]
    scores = [d.metadata["rerank_score"] for d in ranked]
    assert scores == sorted(scores, reverse=True) and all(isinstance(s, float) for s in scores)
    for doc in ranked:
        original = docs[int(doc.id)]
        assert doc.page_content == original.page_content
        assert doc.metadata == original.metadata | {"rerank_score": doc.metadata["rerank_score"]}
        assert doc.metadata["rerank_score"] == pytest.approx(expected[int(doc.id)], abs=1e-4)
    assert all("rerank_score" not in d.metadata for d in docs)  # inputs left alone


def test_top_n_and_empty_input(reranker) -> None:
    docs = _docs()
    top3 = reranker.model_copy(update={"top_n": 3}).compress_documents(docs, QUERY)
    assert top3 == reranker.compress_documents(docs, QUERY)[:3]
    assert reranker.compress_documents([], QUERY) == []
    assert asyncio.run(reranker.acompress_documents([], QUERY)) == []


def test_async_matches_sync(reranker) -> None:
    docs = _docs()
    assert asyncio.run(reranker.acompress_documents(docs, QUERY)) == \
        reranker.compress_documents(docs, QUERY)


def test_missing_or_wrong_model_is_a_one_line_error(tmp_path: Path, tiny_onnx_dir: Path) -> None:
    from poemrag.reranker import PoemReranker

    for name in (str(tmp_path / "no-such-dir"), "poemrag-rerank-zh"):
        with pytest.raises(RerankerError, match=r"^reranker not found: .*none ships yet") as err:
            PoemReranker(model=name)
        assert "\n" not in str(err.value)
    with pytest.raises(RerankerError, match=r"^not a reranker export: .*kind") as err:
        PoemReranker(model=str(tiny_onnx_dir))  # an encoder export, not a cross-encoder
    assert "\n" not in str(err.value)


# The retriever's rerank option ------------------------------------------------------------


@pytest.fixture
def plain(onnx_embeddings, ingested_store) -> PoemRetriever:
    return PoemRetriever(embeddings=onnx_embeddings, store=ingested_store, k=4)


def test_retriever_reranks_the_top_n_then_one_per_poem(plain: PoemRetriever, reranker) -> None:
    built = plain.model_copy(update={"rerank": reranker, "rerank_top_n": 20})
    docs = built.invoke(QUERY)
    candidates = plain.invoke(QUERY, k=20, one_per_poem=False)  # the vector top 20
    scores = reranker.score(QUERY, [d.page_content for d in candidates])
    expected, poems = [], set()
    for i in np.argsort(-scores, kind="stable"):
        if candidates[i].metadata["poem_id"] not in poems:
            poems.add(candidates[i].metadata["poem_id"])
            expected.append(candidates[i].id)
    assert [d.id for d in docs] == expected[:4]
    for doc in docs:
        vector = next(c for c in candidates if c.id == doc.id)
        assert doc.metadata == vector.metadata | {"rerank_score": doc.metadata["rerank_score"]}
    assert [d.metadata["rerank_score"] for d in docs] == sorted(
        (d.metadata["rerank_score"] for d in docs), reverse=True)
    assert plain.invoke(QUERY, rerank=reranker, rerank_top_n=20) == docs  # per call
    assert built.invoke(QUERY, rerank=None) == plain.invoke(QUERY)  # off for one call
    assert asyncio.run(built.ainvoke(QUERY)) == docs
    every_line = built.invoke(QUERY, one_per_poem=False, k=6)
    assert [d.metadata["rerank_score"] for d in every_line] == sorted(scores, reverse=True)[:6]


def test_rerank_on_the_server_store_matches_the_edge_store(
        plain: PoemRetriever, reranker, loaded_server_store, onnx_embeddings) -> None:
    server = PoemRetriever(embeddings=onnx_embeddings, store=loaded_server_store, k=4,
                           exact=True, rerank=reranker, rerank_top_n=15)
    docs = server.invoke(QUERY)
    edge = plain.invoke(QUERY, exact=True, rerank=reranker, rerank_top_n=15)
    assert [d.id for d in docs] == [d.id for d in edge] and len(docs) == 4
    assert [d.metadata["rerank_score"] for d in docs] == pytest.approx(
        [d.metadata["rerank_score"] for d in edge], abs=1e-6)
    assert [d.id for d in asyncio.run(server.ainvoke(QUERY))] == [d.id for d in docs]


def test_rerank_options_are_checked(plain: PoemRetriever) -> None:
    with pytest.raises(SearchOptionError, match="rerank_top_n must be an integer from 1 to 1000"):
        plain.invoke(QUERY, rerank_top_n=0)
    with pytest.raises(SearchOptionError, match="rerank must be a PoemReranker or None, not str"):
        plain.invoke(QUERY, rerank="yes")


def test_settings_read_reranker_and_top_n(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POEMRAG_RERANKER", raising=False)
    monkeypatch.delenv("POEMRAG_RERANK_TOP_N", raising=False)
    assert (Settings().reranker, Settings().rerank_top_n) == (None, 30)
    monkeypatch.setenv("POEMRAG_RERANKER", "/models/rerank")
    monkeypatch.setenv("POEMRAG_RERANK_TOP_N", "12")
    assert (Settings().reranker, Settings().rerank_top_n) == ("/models/rerank", 12)
    monkeypatch.setenv("POEMRAG_RERANKER", " ")
    assert Settings().reranker is None
    monkeypatch.setenv("POEMRAG_RERANK_TOP_N", "0")
    with pytest.raises(ValueError, match="rerank_top_n"):
        Settings()


def test_from_settings_builds_the_reranker(monkeypatch: pytest.MonkeyPatch, onnx_embeddings,
                                           ingested_store, ce_fp32: Path) -> None:
    from poemrag.reranker import PoemReranker

    monkeypatch.setenv("POEMRAG_RERANKER", str(ce_fp32))
    monkeypatch.setenv("POEMRAG_RERANK_TOP_N", "12")
    retriever = PoemRetriever.from_settings(embeddings=onnx_embeddings, store=ingested_store)
    assert isinstance(retriever.rerank, PoemReranker) and retriever.rerank_top_n == 12
    assert "rerank_score" in retriever.invoke(QUERY)[0].metadata
    monkeypatch.setenv("POEMRAG_RERANKER", "poemrag-rerank-zh")
    with pytest.raises(RerankerError, match="^reranker not found"):
        PoemRetriever.from_settings(embeddings=onnx_embeddings, store=ingested_store)
    with pytest.raises(RerankerError, match="^no reranker configured"):
        PoemReranker.from_settings(Settings(reranker=None))


NO_IMPORT = """
import sys
from pathlib import Path
from poemrag import PoemEmbeddings, PoemRetriever
from poemrag.corpus import load_corpus
from poemrag.edge_store import EdgeStore
from poemrag.ingest import ingest
emb = PoemEmbeddings(model=sys.argv[1])
store = EdgeStore(Path(sys.argv[2]) / "tang_poems")
ingest(load_corpus(Path(sys.argv[3])), emb, store, progress=False)
with PoemRetriever(embeddings=emb, store=store, k=2) as retriever:
    docs = retriever.invoke("想家")
    assert len(docs) == 2 and "rerank_score" not in docs[0].metadata
print(sorted(m for m in sys.modules if m.startswith("poemrag.rerank")))
"""


def test_no_reranker_import_when_off(tiny_onnx_dir: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import FIXTURE_CORPUS

    monkeypatch.delenv("POEMRAG_RERANKER", raising=False)
    out = subprocess.run([sys.executable, "-c", NO_IMPORT, str(tiny_onnx_dir), str(tmp_path),
                          str(FIXTURE_CORPUS)], capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# training.rerank_eval and training.rerank --------------------------------------------------


def test_reranked_ranks_move_only_targets_inside_the_top_n() -> None:
    from training.rerank_eval import reranked_ranks

    pool = [f"c{i}" for i in range(6)]
    dense = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],    # target 2: dense rank 2
                      [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])   # target 5: dense rank 5
    targets = [2, 5]

    def score(pairs):  # the reranker loves each query's target
        return np.array([10.0 if text == pool[targets[int(q)]] else 0.0 for q, text in pairs])

    ranks = reranked_ranks(score, ["0", "1"], dense, pool, targets, [2, 3, 6])
    assert ranks[2].tolist() == [2, 5]   # target 2 outside the top 2: dense rank kept
    assert ranks[3].tolist() == [0, 5]
    assert ranks[6].tolist() == [0, 0]


def _made_up_ccpm(folder: Path) -> Path:
    folder.mkdir()
    lines = [c.split("，")[0] for c in COUPLETS]
    rows = [{"translation": ANCHORS[i], "choices": [lines[(i + k) % len(lines)] for k in range(4)],
             "answer": i % 4} for i in range(12)]
    for split in ("train", "valid"):
        write_jsonl(folder / f"{split}.jsonl", rows)
    return folder


def test_bad_base_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.rerank import main

    data = write_jsonl(tmp_path / "t.jsonl", made_up_triplets())
    code = main(["--base", str(tmp_path / "nope"), "--data", str(data),
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("error: base model not found")


def test_train_export_load_and_evaluate_a_tiny_reranker(
        tiny_st_dir: Path, tiny_onnx_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import FIXTURE_CORPUS

    from poemrag.reranker import PoemReranker
    from training.rerank import main as train_main
    from training.rerank_eval import main as eval_main
    from training.rerank_export import main as export_main

    data = write_jsonl(tmp_path / "t.jsonl", made_up_triplets())
    mined = write_jsonl(tmp_path / "mined.jsonl", [
        {**{k: v for k, v in r.items() if k != "negative"}, "negative_1": r["negative"],
         "negative_2": COUPLETS[(i + 7) % len(COUPLETS)]}
        for i, r in enumerate(made_up_triplets())])
    ccpm = _made_up_ccpm(tmp_path / "ccpm")
    out, onnx = tmp_path / "ce", tmp_path / "onnx"
    assert train_main(["--base", str(tiny_st_dir), "--data", str(data), str(mined),
                       "--ccpm-dir", str(ccpm), "--max-steps", "2", "--batch-size", "4",
                       "--max-length", "32", "--eval-steps", "0", "--output-dir", str(out),
                       "--no-checkpoints"]) == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "# poemrag reranker" in card and "| ccpm | 12 |" in card and "| chat_2neg | 18 |" in card
    assert "ccpm_accuracy" in card and "chat_dev_accuracy" in card
    capsys.readouterr()
    assert export_main([str(out), "--out", str(onnx)]) == 0
    assert "\nvs cross-encoder: max abs diff " in capsys.readouterr().out
    info = json.loads((onnx / "poemrag_model.json").read_text(encoding="utf-8"))
    assert info["kind"] == "cross-encoder" and info["quantization"] == "none"
    assert info["parity_vs_cross_encoder"]["same_order"] == 1.0
    ranked = PoemReranker(model=str(onnx)).compress_documents(_docs(), QUERY)
    assert len(ranked) == len(COUPLETS)
    report = tmp_path / "eval.json"
    assert eval_main([str(onnx), "--encoder", str(tiny_onnx_dir), "--data", str(data),
                      "--ccpm-dir", str(ccpm), "--corpus", str(FIXTURE_CORPUS),
                      "--pool-size", "40", "--top-n", "5", "10", "--json", str(report)]) == 0
    result = json.loads(report.read_text(encoding="utf-8"))
    assert result["ccpm_rows"] == 12 and result["dev_pairs"] == 2 and result["pool_size"] == 40
    assert set(result["reranked"]) == {"5", "10"} and 0 <= result["ccpm_accuracy"] <= 1
