#!/usr/bin/env bash
# The GPU measurements of notebook 13a_gpu, in one run of at most 8 minutes on one GPU, without internet:
#   1. scripts/gpu_check.py (correctness of the GPU code paths, no compile: the sweep compiles)
#   2. lect-sweep speed (batch x fp32/bf16 x compile mode x channels_last; lect@224, resnet, lect_cifar@32)
#   3. a timed 1-epoch lect-train of lect at 224 on Fashion-MNIST (CUDA defaults, transforms on the GPU)
#   4. lect-sweep table2 (Table 2's models on Fashion-MNIST at 32x32), as far as the time left allows
# Everything goes to nbs/results/gpu_<date>/ (log.txt holds each step's output and exit status).
#
# usage: scripts/gpu_run.sh [--dry-run] [--out DIR] [--fashion-dir DIR]
#   --fashion-dir  the four .gz idx files of Fashion-MNIST (default: data/fashion-mnist, then Debian's
#                  /usr/share/datasets/fashion-mnist)
#   --dry-run      the same steps, tiny, on the CPU (a few models, a few images, the eager compile backend);
#                  without --fashion-dir it writes a small idx directory from the embedded sample
set -u
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DRY=0; OUT=""; FASHION=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    --fashion-dir) FASHION="$2"; shift ;;
    *) echo "gpu_run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
START=$(date +%s)
TOTAL=470                                   # seconds for all steps (8 minutes, less start-up margin)
OUT=${OUT:-nbs/results/gpu_$(date -u +%Y%m%d-%H%M)}
mkdir -p "$OUT" || exit 2
LOG="$OUT/log.txt"
PY=${PYTHON:-python}
SWEEP=("$PY" -c "import sys; from lect_nb.studies.commands import sweep_main; sys.exit(sweep_main())")   # lect-sweep
TRAIN=("$PY" -c "import sys; from lect_nb.training.cli import main; sys.exit(main())")      # lect-train
if [ -z "$FASHION" ]; then
  for d in data/fashion-mnist /usr/share/datasets/fashion-mnist; do
    [ -f "$d/train-images-idx3-ubyte.gz" ] && { FASHION=$d; break; }
  done
fi
if [ -z "$FASHION" ] && [ $DRY = 1 ]; then
  FASHION="$OUT/fashion-mnist-sample"
  $PY -c "from lect_nb.studies.gpu import write_fashion_idx; write_fashion_idx('$FASHION', 128, 64)" || exit 2
fi
[ -n "$FASHION" ] || { echo "gpu_run.sh: no Fashion-MNIST idx files; give --fashion-dir" | tee -a "$LOG" >&2; }

left() { echo $(( TOTAL - ($(date +%s) - START) )); }
step() {   # step NAME SECONDS CMD...: run CMD with a time limit, its output and status in the log
  local name=$1 limit=$2; shift 2
  local l; l=$(left)
  [ "$limit" -gt "$l" ] && limit=$l
  if [ "$limit" -le 5 ]; then echo "=== $name: not run (time budget)" | tee -a "$LOG"; return; fi
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$LOG"
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
  echo "rc=$? seconds=$(( $(date +%s) - t0 ))" | tee -a "$LOG"
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi";
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } >>"$LOG" 2>&1

if [ $DRY = 1 ]; then
  step gpu_check 120 $PY scripts/gpu_check.py --device cpu --models lect_cifar --no-compile \
       --out "$OUT/gpu_check.json"
  step sweep 120 "${SWEEP[@]}" speed --device cpu --out "$OUT" --models lect_cifar:32 resnet:32 \
       --batches 2 --compile-batches 2 --precisions fp32 --compile-modes default --backend eager \
       --steps 1 --warmup 1 --budget 60
  step train224 120 "${TRAIN[@]}" --model lect_cifar --dataset fashion_mnist --data-dir "$FASHION" \
       --img-size 64 --epochs 1 --batch-size 16 --limit-train 32 --limit-val 16 --device cpu \
       --gpu-augment on --out "$OUT/train224"
  step table2 240 "${SWEEP[@]}" table2 --data-dir "$FASHION" --out "$OUT/fashion_table2.json" \
       --models resnet lect_v3 --epochs 1 --batch-size 16 --limit-train 16 --limit-val 16 --device cpu
else
  step gpu_check 75 $PY scripts/gpu_check.py --device cuda --no-compile --out "$OUT/gpu_check.json"
  step sweep 230 "${SWEEP[@]}" speed --device cuda --out "$OUT" --budget 190
  step train224 100 "${TRAIN[@]}" --model lect --dataset fashion_mnist --data-dir "$FASHION" \
       --img-size 224 --epochs 1 --device cuda --workers 4 --out "$OUT/train224"
  T2=$(( $(left) - 15 ))
  step table2 "$(left)" "${SWEEP[@]}" table2 --data-dir "$FASHION" --out "$OUT/fashion_table2.json" \
       --epochs 2 --device cuda --budget "$T2"
fi
echo "=== done in $(( $(date +%s) - START ))s; results in $OUT" | tee -a "$LOG"
