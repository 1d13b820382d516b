#!/usr/bin/env bash
# Put a GPU call's output (job.sh) back together here and evaluate it next to the packaged
# models:   bash training/device/fetch.sh FILES_AT [artifacts/device]
# gives DEST/{default,student,reranker}-int8 (those the call made) and their eval JSONs.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC="$1"
DEST="${2:-artifacts/device}"
PY=.venv/bin/python
for name in default student reranker; do
  ls "$SRC/$name".model.onnx.part-* >/dev/null 2>&1 || continue
  mkdir -p "$DEST/$name-int8"
  cat "$SRC/$name".model.onnx.part-* > "$DEST/$name-int8/model.onnx"
  tar -xzf "$SRC/$name.meta.tar.gz" -C "$DEST/$name-int8"
done
for name in default student; do
  [[ -d "$DEST/$name-int8" ]] && $PY -m training.evaluate "$DEST/$name-int8" --json "$DEST/$name-eval.json"
done
$PY -m training.evaluate poemrag-zh-1792 --json "$DEST/packaged-eval.json"
if [[ -d "$DEST/reranker-int8" ]]; then
  $PY -m training.rerank_eval --help >/dev/null
  echo "reranker: python -m training.rerank_eval $DEST/reranker-int8 (see training/README.md)"
fi
