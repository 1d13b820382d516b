"""``python -m poemrag.search "message"``: print the couplets that fit a message."""

from __future__ import annotations

import argparse
import json
import sys

from poemrag.cli import run_cli
from poemrag.retriever import PoemRetriever, clean_query
from poemrag.settings import Settings

JSON_FIELDS = ("title", "author", "poem_id", "line", "form", "tags")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m poemrag.search", description="Find Tang couplets that fit a message."
    )
    parser.add_argument("query", help="a modern Chinese message")
    parser.add_argument("-k", type=int, default=5, help="number of couplets (default 5)")
    parser.add_argument("--author", action="append", default=[], help="only this poet (repeatable)")
    parser.add_argument("--form", action="append", default=[], help="五言, 七言 or 杂言 (repeatable)")
    parser.add_argument("--tag", action="append", default=[], help="a tag, e.g. 思乡 (repeatable)")
    parser.add_argument("--all-lines", action="store_true", help="allow several couplets per poem")
    parser.add_argument("--json", action="store_true", help="one JSON object per hit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    query = clean_query(args.query)  # reject an empty query before loading anything
    with PoemRetriever.from_settings(Settings()) as retriever:
        hits = retriever.search(
            query,
            k=max(1, args.k),
            authors=args.author,
            forms=args.form,
            poem_tags=args.tag,
            one_per_poem=not args.all_lines,
        )
    for rank, hit in enumerate(hits, 1):
        meta = hit.metadata
        if args.json:
            record = {"text": hit.text, **{k: meta.get(k) for k in JSON_FIELDS}}
            record |= {"id": hit.id, "score": round(hit.score, 6)}
            print(json.dumps(record, ensure_ascii=False))
        else:
            print(f"{rank}. {hit.text}")
            print(f"   —— {meta.get('author')}《{meta.get('title')}》  score {hit.score:.3f}")
    if not hits and not args.json:
        print("no couplet found", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
