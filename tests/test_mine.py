"""Hard-negative mining filters, with a deterministic fake encoder."""

from __future__ import annotations

import numpy as np

from training.data import Triplet
from training.mine import MineConfig, mine

CHARS = "月光明霜故乡春花鸟雨山河楼江雪"


def bag(texts: list[str]) -> np.ndarray:
    """Character-count vectors over a tiny alphabet (a stand-in for the model)."""
    return np.array([[t.count(c) + 0.01 for c in CHARS] for t in texts], dtype=np.float32)


def test_mining_skips_own_poem_near_copies_and_known_texts() -> None:
    t = Triplet("月光照在霜上想故乡", "床前明月光，疑是地上霜。", ("春眠不觉晓，处处闻啼鸟。",))
    corpus = [
        ("床前明月光，疑是地上霜。", "p1"),
        ("举头望明月，低头思故乡。", "p1"),      # the positive's own poem
        ("床前明月光，疑是故乡霜。", "p9"),      # shares 床前明月 with the positive
        ("春眠不觉晓，处处闻啼鸟。", "p2"),      # already the authored negative
        ("明月照高楼，流光正徘徊。", "p3"),
        ("故乡今夜思千里，霜鬓明朝又一年。", "p4"),
        ("江雪", "p5"),
        ("花鸟山河", "p6"),
    ]
    cfg = MineConfig(num_negatives=2, top_k=8, max_similarity=0.999, relative_margin=0.0)
    rows, skipped = mine([t], corpus, bag, bag, cfg)
    assert skipped == 0
    assert rows == [{
        "anchor": t.anchor, "positive": t.positive, "negative_1": "春眠不觉晓，处处闻啼鸟。",
        "negative_2": "故乡今夜思千里，霜鬓明朝又一年。", "negative_3": "明月照高楼，流光正徘徊。",
    }]


def test_rows_without_enough_candidates_are_skipped() -> None:
    t = Triplet("雪", "江雪", ("花鸟山河",))
    rows, skipped = mine([t], [("江雪", "p1"), ("花鸟山河", "p2")], bag, bag, MineConfig(1, 5))
    assert rows == [] and skipped == 1


def test_min_negatives_keeps_rows_with_fewer_candidates() -> None:
    t = Triplet("雪", "江雪", ("花鸟山河",))
    corpus = [("江雪", "p1"), ("花鸟山河", "p2"), ("月光", "p3")]
    cfg = MineConfig(num_negatives=3, top_k=5, max_similarity=0.999, relative_margin=0.0,
                     min_negatives=1)
    rows, skipped = mine([t], corpus, bag, bag, cfg)
    assert skipped == 0
    assert rows == [{"anchor": "雪", "positive": "江雪", "negative_1": "花鸟山河", "negative_2": "月光"}]
    rows, skipped = mine([t], corpus, bag, bag, MineConfig(3, 5, 0.999, 0.0, min_negatives=2))
    assert rows == [] and skipped == 1


def test_precomputed_corpus_vectors_give_the_same_rows() -> None:
    """Mining from an ingested collection's vectors equals embedding the corpus again."""
    t = Triplet("月光照在霜上想故乡", "床前明月光，疑是地上霜。", ("春眠不觉晓，处处闻啼鸟。",))
    corpus = [("明月照高楼，流光正徘徊。", "p3"), ("故乡今夜思千里，霜鬓明朝又一年。", "p4"),
              ("明月照高楼，流光正徘徊。", "p7"), ("江雪", "p5"), ("花鸟山河", "p6")]
    cfg = MineConfig(num_negatives=2, top_k=5, max_similarity=0.999, relative_margin=0.0)

    def no_corpus_embedding(texts: list[str]) -> np.ndarray:
        assert texts == [t.positive]  # only the positive is embedded
        return bag(texts)

    expected = mine([t], corpus, bag, bag, cfg)
    given = mine([t], corpus, bag, no_corpus_embedding, cfg, bag([c for c, _ in corpus]))
    assert given == expected and expected[0]


def test_store_pool_refuses_a_collection_of_another_model(tmp_path) -> None:
    import pytest

    from poemrag.edge_store import EdgeStore
    from poemrag.errors import PoemragError
    from poemrag.fingerprint import model_fingerprint
    from training.mine import store_pool

    for name in ("model-a", "model-b"):  # same layout, other weights
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.onnx").write_bytes(name.encode())
    with EdgeStore(tmp_path / "poems") as store:
        store.ensure_collection(4, model=str(tmp_path / "model-a"),
                                fingerprint=model_fingerprint(str(tmp_path / "model-a")))
        store.upsert([1], np.ones((1, 4), dtype=np.float32),
                     [{"page_content": "江雪", "metadata": {"poem_id": "p1"}}])
        store.finish()
    pairs, vectors = store_pool(tmp_path / "poems", str(tmp_path / "model-a"))
    assert pairs == [("江雪", "p1")] and vectors.shape == (1, 4)
    with pytest.raises(PoemragError, match="embedded with"):
        store_pool(tmp_path / "poems", str(tmp_path / "model-b"))


def test_write_back_puts_mined_negatives_into_training_rows_only(tmp_path) -> None:
    import json

    from training.data import is_dev, read_triplets
    from training.mine import own_negative_only, write_back

    path = tmp_path / "chat_v2_01.jsonl"
    train_anchor = next(f"想家{i}" for i in range(100) if not is_dev(f"想家{i}"))
    rows = [{"anchor": train_anchor, "positive": "p", "negative": "n", "positive_id": 7,
             "negative_1": "old mined"},
            {"anchor": "另一条", "positive": "q", "negative": "m"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    triplets = own_negative_only(read_triplets(path)[0])
    assert triplets[0].negatives == ("n",)
    mined = [{"anchor": train_anchor, "positive": "p", "negative_1": "n", "negative_2": "x",
              "negative_3": "y", "positive_id": 7}]
    assert write_back([path], mined) == 1
    back = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert back[0] == {"anchor": train_anchor, "positive": "p", "negative": "n", "positive_id": 7,
                       "negative_1": "x", "negative_2": "y"}
    assert back[1] == rows[1]
    assert read_triplets(path)[0][0].negatives == ("n", "x", "y")
