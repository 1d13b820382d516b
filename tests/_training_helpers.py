"""Shared helpers for the training tests: made-up triplets and a tiny random ST model."""

from __future__ import annotations

import json
from pathlib import Path

COUPLETS = [
    "床前明月光，疑是地上霜。", "举头望明月，低头思故乡。", "春眠不觉晓，处处闻啼鸟。",
    "夜来风雨声，花落知多少。", "白日依山尽，黄河入海流。", "欲穷千里目，更上一层楼。",
    "红豆生南国，春来发几枝。", "愿君多采撷，此物最相思。", "千山鸟飞绝，万径人踪灭。",
    "孤舟蓑笠翁，独钓寒江雪。", "独在异乡为异客，每逢佳节倍思亲。", "海内存知己，天涯若比邻。",
]
ANCHORS = [
    "半夜醒来看见窗外月亮好亮", "出差在外特别想家", "周末睡到自然醒", "昨晚下了一夜大雨",
    "今天爬山看到日落", "想再往高处走走看得更远", "给你带了点特产", "好想你啊",
    "下雪了路上一个人都没有", "一个人去湖边钓鱼", "过节一个人在外地", "好朋友搬去很远的城市了",
    "今晚的月亮真圆", "春天来了到处是鸟叫", "花都谢了", "登上楼顶看风景",
    "思念一个人的滋味", "冬天一个人很孤单", "毕业以后各奔东西", "中秋节不能回家",
]


def made_up_triplets() -> list[dict[str, str]]:
    """Twenty triplets from twelve famous couplets; two anchors fall in the dev split."""
    rows = []
    for i, anchor in enumerate(ANCHORS):
        pos = COUPLETS[i % len(COUPLETS)]
        neg = COUPLETS[(i + 5) % len(COUPLETS)]
        rows.append({"anchor": anchor, "positive": pos, "negative": neg})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def build_tiny_model(path: Path, dim: int = 32) -> Path:
    """A tiny random char-vocab BERT sentence-transformers model with query/passage prompts."""
    try:
        from training.tiny_model import build_tiny_st_model
    except ImportError:
        build_tiny_st_model = None
    if build_tiny_st_model is not None:
        build_tiny_st_model(path, dim=dim)
        return path
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    chars = sorted(set("".join(COUPLETS + ANCHORS)) | set("querypassage: ，。"))
    hf = path.with_name(path.name + "-hf")
    hf.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n", "utf-8")
    BertTokenizerFast(vocab_file=str(hf / "vocab.txt"), do_lower_case=False).save_pretrained(hf)
    config = BertConfig(vocab_size=len(vocab), hidden_size=dim, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=dim * 2,
                        max_position_embeddings=128)
    BertModel(config).save_pretrained(hf)
    transformer = Transformer(str(hf), max_seq_length=64)
    model = SentenceTransformer(
        modules=[transformer, Pooling(dim, "mean"), Normalize()],
        prompts={"query": "query: ", "document": "passage: "}, device="cpu")
    model.save(str(path), create_model_card=False)
    return path
