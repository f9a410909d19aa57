#!/usr/bin/env bash
# The GPU measurements of notebook 13a_gpu, one command of at most 10 minutes on one GPU, without network:
#
#   python3 scripts/prepare_gpu_data.py        # once, where Debian's dataset-fashion-mnist is installed
#   OUT=/path/to/results bash scripts/gpu_run.sh   # on the GPU machine, with data/fashion-mnist carried along
#
# Needs only python3, PyTorch 2.11+, torchvision and numpy (fastprogress is optional). A preflight stops in
# seconds naming what is missing. Then steps, each with its own time limit, each writing its rows to
# $OUT/rows.jsonl as they exist and rebuilding $OUT/summary.json after it ends (scripts/gpu_steps.py):
#   check     fused vs paper-literal attention and the training paths of every LeCT model (relative tolerance)
#   bench     lect at 224, batch 64 and 128: fp32 / TF32 / bf16 x contiguous / channels_last, eager:
#             model-only and full lect-train images/s (augmentation on the GPU), peak memory
#   resume    SIGTERM after 20 s, --resume, compared with an uninterrupted run
#   epoch     one epoch of lect-train on the full Fashion-MNIST at 224 in bf16: images/s, accuracy
#   profile   torch.profiler table of one training step
#   compiled  each compiled point in its own process, with the time that is left
# At the end $OUT holds summary.json, rows.jsonl, log.txt and results.tar.gz (the rest, no checkpoints).
#
# usage: OUT=DIR bash scripts/gpu_run.sh [--dry-run]
#   --dry-run  the same steps on the CPU at tiny sizes (the eager compile backend), in a minute or two; the tests run it
set -u
cd "$(dirname "$0")/.." || exit 2
DRY=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY="--dry-run" ;;
    *) echo "gpu_run.sh: unknown argument $arg (usage: OUT=DIR bash scripts/gpu_run.sh [--dry-run])" >&2; exit 2 ;;
  esac
done
[ -n "${OUT:-}" ] || { echo "gpu_run.sh: set OUT to the results folder: OUT=DIR bash scripts/gpu_run.sh" >&2; exit 2; }
for tool in timeout tar; do
  command -v $tool >/dev/null || { echo "gpu_run.sh: missing: the $tool command" >&2; exit 2; }
done
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "gpu_run.sh: missing: $PY (set PYTHON to the interpreter)" >&2; exit 2; }
mkdir -p "$OUT" || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_run.XXXXXX") || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
LOG="$OUT/log.txt"
START=$(date +%s)
TOTAL=${GPU_RUN_SECONDS:-540}          # all steps; packing follows (the machine allows 600)
[ -n "$DRY" ] && TOTAL=${GPU_RUN_SECONDS:-1300}   # a loaded 2-core machine: generous limits, short work
S=("$PY" scripts/gpu_steps.py --out "$OUT" --work "$WORK" $DRY)

left() { echo $(( TOTAL - ($(date +%s) - START) )); }
step() {   # step NAME LIMIT ARGS...: gpu_steps.py ARGS with a time limit; status row and summary after it
  local name=$1 limit=$2; shift 2
  local l; l=$(left)
  [ "$limit" -gt "$l" ] && limit=$l
  if [ "$limit" -le 10 ]; then echo "=== $name: not run (time budget)" | tee -a "$LOG"; return; fi
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s)" | tee -a "$LOG"
  local t0 rc; t0=$(date +%s)
  timeout --kill-after=10 "$limit" "${S[@]}" "$@" >>"$LOG" 2>&1; rc=$?
  echo "rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$LOG"
  "${S[@]}" summary "$name:$rc:$(( $(date +%s) - t0 ))" >/dev/null 2>>"$LOG"
}

if ! "${S[@]}" preflight >>"$LOG" 2>"$WORK/preflight.txt"; then
  tee -a "$LOG" <"$WORK/preflight.txt" >&2; rm -rf "$WORK"
  echo "gpu_run.sh: preflight failed; nothing was run" | tee -a "$LOG" >&2; exit 2
fi
"${S[@]}" summary >/dev/null
if [ -n "$DRY" ]; then
  step check 150 check; step bench 200 bench; step resume 300 resume; step epoch 150 epoch
  step profile 150 profile; step compiled:fp32:2:default 240 compiled fp32:2:default
else
  step check 50 check; step bench 140 bench; step resume 110 resume; step epoch 90 epoch
  step profile 30 profile                     # about 120 s are left for the compiled points
  for p in bf16:64:default bf16:64:reduce-overhead bf16:128:default fp32:64:default; do
    step "compiled:$p" 150 compiled "$p"
  done
fi
echo "=== done in $(( $(date +%s) - START ))s; packing" | tee -a "$LOG"
tar -czf "$OUT/results.tar.gz" --exclude='*.pt' -C "$WORK" . 2>>"$LOG"
rm -rf "$WORK"
"${S[@]}" summary >/dev/null
echo "results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
