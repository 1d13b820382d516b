#!/usr/bin/env bash
# Put a GPU call's output (job.sh) back together here and evaluate it next to the packaged
# default:   bash training/device/fetch.sh FILES_AT [artifacts/device/default-int8]
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC="$1"
DEST="${2:-artifacts/device/default-int8}"
mkdir -p "$DEST"
cat "$SRC"/model.onnx.part-* > "$DEST/model.onnx"
tar -xzf "$SRC/meta.tar.gz" -C "$DEST"
.venv/bin/python -m training.evaluate "$DEST" --json "$DEST/eval.json"
.venv/bin/python -m training.evaluate poemrag-zh-1792 --json artifacts/device/packaged-eval.json
