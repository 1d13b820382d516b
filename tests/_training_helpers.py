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


def build_tiny_model(path: Path, dim: int = 48) -> Path:
    """A tiny random char-vocab BERT sentence-transformers model with query/passage prompts."""
    from training.tiny_model import build_tiny_st_model

    return build_tiny_st_model(path, dim=dim)
