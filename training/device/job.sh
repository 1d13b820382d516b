#!/usr/bin/env bash
# One call on a lent GPU: train the default encoder on every data file, distil the 4-layer
# student from it and train the cross-encoder reranker, exporting each to int8 ONNX; the models
# come back in 15 MB parts (the device returns at most 16 MB a file) with their logs, cards and
# export info. Evaluate and ship them here (training/device/fetch.sh).
#
#   run(command="bash training/device/job.sh", carry=[".device"], timeout_s=600)
#   DRY_RUN=1 OUT=/tmp/out bash training/device/job.sh   # the same steps, 2 CPU steps each, here
#
# Settings (environment): STAGES ("default student reranker"; a later stage needs the earlier
# one's output), EPOCHS (3), BATCH (128), LR (2e-5), TRAIN_MIN (3), STUDENT_MIN (1.5),
# RERANK_MIN (1.5): each training stops after that many minutes and still saves; CCPM_MAX (3:
# CCPM rows sharing at most this many characters with the answer; "all" for every row),
# MAX_NEG (2: negatives per chat row), START (the packaged default, unpacked).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
OUT="${OUT:-artifacts/device/out}"
WORK=artifacts/device
STAGES="${STAGES:-default student reranker}"
mkdir -p "$OUT" "$WORK"
PY=python3
if [[ -n "${DRY_RUN:-}" ]]; then
  PY=.venv/bin/python
  EXTRA=(--max-steps 2 --batch-size 8 --max-seq-length 32 --no-eval)
  DISTIL_EXTRA=(--max-steps 2 --batch-size 8 --max-seq-length 32 --couplets 64 --no-eval)
  RERANK_EXTRA=(--max-steps 2 --batch-size 4 --max-length 32)
else
  EXTRA=(--batch-size "${BATCH:-128}")
  DISTIL_EXTRA=(--batch-size "${BATCH:-128}")
  RERANK_EXTRA=(--batch-size 64)
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
DATA=(training/data/chat_*.jsonl)
if [[ -n "${DRY_RUN:-}" ]]; then
  # A few hundred rows of each input: the CPU run checks the steps, not the model.
  mkdir -p /tmp/poemrag-dry
  for f in "${DATA[@]}"; do head -n 300 "$f" > "/tmp/poemrag-dry/$(basename "$f")"; done
  DATA=(/tmp/poemrag-dry/chat_*.jsonl)
  for split in train valid; do head -n 300 "$CCPM/$split.jsonl" > "$CCPM/$split.small" \
    && mv "$CCPM/$split.small" "$CCPM/$split.jsonl"; done
fi

has() { [[ " $STAGES " == *" $1 "* ]]; }

{
  date -u
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
  if has default; then
    START="${START:-$WORK/start}"
    [[ -d "$START" ]] || $PY -m training.unpack poemrag/models/poemrag-zh-1792 --out "$START"
    $PY -m training.train --base "$START" --data "${DATA[@]}" "${CCPM_ARGS[@]}" \
      --max-negatives "${MAX_NEG:-2}" --epochs "${EPOCHS:-3}" --lr "${LR:-2e-5}" \
      --eval-steps 0.5 --no-checkpoints --time-limit "${TRAIN_MIN:-3}" \
      --output-dir "$WORK/default" "${EXTRA[@]}"
    $PY -m training.export "$WORK/default" --out "$WORK/default-int8" --int8
    date -u
  fi
  if has student || has reranker; then
    $PY -m training.prune "$WORK/default" --layers 4 --out "$WORK/p4"
  fi
  if has student; then
    $PY -m training.distill --student "$WORK/p4" --teacher "$WORK/default" --data "${DATA[@]}" \
      --ccpm-dir "$CCPM" --no-checkpoints --time-limit "${STUDENT_MIN:-1.5}" \
      --output-dir "$WORK/student" "${DISTIL_EXTRA[@]}"
    $PY -m training.export "$WORK/student" --out "$WORK/student-int8" --int8
    date -u
  fi
  if has reranker; then
    $PY -m training.rerank --base "$WORK/p4" --data "${DATA[@]}" --ccpm-dir "$CCPM" \
      --max-negatives "${MAX_NEG:-2}" --no-eval --no-checkpoints \
      --time-limit "${RERANK_MIN:-1.5}" --output-dir "$WORK/reranker" "${RERANK_EXTRA[@]}"
    $PY -m training.rerank_export "$WORK/reranker" --out "$WORK/reranker-int8" --int8
    date -u
  fi
} 2>&1 | tee "$OUT/job.log"

for name in default student reranker; do
  [[ -f "$WORK/$name-int8/model.onnx" ]] || continue
  split -b 15m "$WORK/$name-int8/model.onnx" "$OUT/$name.model.onnx.part-"
  tar -czf "$OUT/$name.meta.tar.gz" -C "$WORK/$name-int8" --exclude model.onnx .
done
ls -la "$OUT"
