#!/usr/bin/env bash
# One call on a lent GPU: train the default encoder on every data file, then export it to int8
# ONNX; the model comes back in 15 MB parts (the device returns at most 16 MB a file) with the
# training log, card and export info. Evaluate and ship it here (training/device/fetch.sh).
#
#   run(command="bash training/device/job.sh", carry=[".device"], timeout_s=600)
#   DRY_RUN=1 OUT=/tmp/out bash training/device/job.sh   # the same steps, 2 CPU steps, here
#
# Settings (environment): EPOCHS (3), BATCH (128), LR (2e-5), TRAIN_MIN (6: training stops
# after this many minutes and still saves), CCPM_MAX (3: CCPM rows sharing at most this many
# characters with the answer; "all" for every row), START (the packaged default, unpacked).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
OUT="${OUT:-artifacts/device/out}"
WORK=artifacts/device
mkdir -p "$OUT" "$WORK"
PY=python3
if [[ -n "${DRY_RUN:-}" ]]; then
  PY=.venv/bin/python
  EXTRA=(--max-steps 2 --batch-size 8 --max-seq-length 32)
else
  EXTRA=(--batch-size "${BATCH:-128}")
fi
if ls .device/whl/*.whl >/dev/null 2>&1 && [[ -z "${DRY_RUN:-}" ]]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .device/whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
fi
CCPM=/tmp/poemrag-ccpm
mkdir -p "$CCPM"
for split in train valid; do gunzip -c ".device/ccpm/$split.jsonl.gz" > "$CCPM/$split.jsonl"; done
CCPM_ARGS=(--ccpm-dir "$CCPM")
[[ "${CCPM_MAX:-3}" == all ]] || CCPM_ARGS+=(--ccpm-max-shared "${CCPM_MAX:-3}")

{
  date -u
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
  START="${START:-$WORK/start}"
  [[ -d "$START" ]] || $PY -m training.unpack poemrag/models/poemrag-zh-1792 --out "$START"
  $PY -m training.train --base "$START" \
    --data training/data/chat_*.jsonl training/data/mined/chat_hard_negatives_6ep.jsonl \
    "${CCPM_ARGS[@]}" --epochs "${EPOCHS:-3}" --lr "${LR:-2e-5}" --eval-steps 0.5 \
    --no-checkpoints --time-limit "${TRAIN_MIN:-6}" --output-dir "$WORK/default" "${EXTRA[@]}"
  $PY -m training.export "$WORK/default" --out "$WORK/default-int8" --int8
  date -u
} 2>&1 | tee "$OUT/job.log"

split -b 15m "$WORK/default-int8/model.onnx" "$OUT/model.onnx.part-"
tar -czf "$OUT/meta.tar.gz" -C "$WORK/default-int8" --exclude model.onnx .
ls -la "$OUT"
