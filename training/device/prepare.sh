#!/usr/bin/env bash
# Get ready for one GPU call (see training/README.md, "On a lent GPU"). Run in the repo root:
#
#   bash training/device/prepare.sh           # .device/: CCPM (gzipped), wheels; prints the size
#   bash training/device/prepare.sh --slim    # also stop the fast model from travelling
#   bash training/device/prepare.sh --restore # after the call: track the fast model again
#
# What travels to the GPU machine is the working tree (tracked and untracked-not-ignored files)
# plus carried paths, 64 MiB in all. The two packaged models alone are 78 MB, so the call
# needs --slim: the fast model is untracked in the index (not in any commit) and ignored
# through .git/info/exclude for the duration of the call. Do not commit while slimmed.
set -euo pipefail
cd "$(dirname "$0")/../.."
FAST=poemrag/models/poemrag-zh-1792-fast
EXCLUDE=.git/info/exclude
CCPM_DIR="${POEMRAG_CCPM_DIR:-../shared/data/ccpm}"
# Python packages the training job needs that the GPU image lacks (its image list is in the
# device tool's KINDS.md); --no-deps: everything else is there.
WHEELS=(datasets dill multiprocess fastembed loguru mmh3 py-rust-stemmers
        pydantic pydantic-core pydantic-settings annotated-types typing-inspection python-dotenv)

if [[ "${1:-}" == "--restore" ]]; then
  git reset -q -- "$FAST"
  sed -i "\\#^/$FAST/\$#d" "$EXCLUDE"
  git status --short -- "$FAST"
  echo "the fast model is tracked again"
  exit 0
fi

grep -qx "/.device/" "$EXCLUDE" || echo "/.device/" >> "$EXCLUDE"
mkdir -p .device/ccpm .device/whl
for split in train valid; do
  gzip -9 -c "$CCPM_DIR/$split.jsonl" > ".device/ccpm/$split.jsonl.gz"
done
if ! ls .device/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .device/whl "${WHEELS[@]}"
fi

if [[ "${1:-}" == "--slim" ]]; then
  git rm -r -q --cached "$FAST"
  grep -qx "/$FAST/" "$EXCLUDE" || echo "/$FAST/" >> "$EXCLUDE"
  echo "slimmed: $FAST stays here; run prepare.sh --restore after the call"
fi

tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) \
        | xargs -0 -r du -cb 2>/dev/null | awk '$2 == "total" {s += $1} END {print s}')
carry=$(du -sb .device | cut -f1)
total=$((tree + carry))
echo "travels: tree $((tree / 1048576)) MiB + .device $((carry / 1048576)) MiB = $((total / 1048576)) MiB (limit 64)"
if (( total > 64 * 1048576 )); then
  echo "too large for a device call: run with --slim" >&2
  exit 1
fi
echo 'then: run(command="bash training/device/job.sh", carry=[".device"], timeout_s=600)'
