#!/usr/bin/env bash
# One lent-GPU session, everything at once (run from the repository root; OUT = a folder for results):
#   1. scripts/train_gpu.sh fine-tunes the shipped model (weights/crnn.safetensors) for MAIN_MINUTES, and
#   2. beside it, `python -m crnn_training.experiment` trains a budget-matched set on the spare GPU time:
#      EXP_SET heads (issue 7: CRNN head ablation + segmented baseline) or models (issue 19: backbones), EXP_IMAGES
#      word images each, EXP_LANES runs at a time, EXP_CONFIG their preset.
# Results are packed into a few tar files in OUT (the device tool returns at most 8 files).
# Env: OUT (required), WHEELS_DIR (.whl), MAIN_MINUTES (8; 0: experiment only), MAIN_WORKERS (8), MAIN_ARGS (extra overrides),
#      MAIN_CONFIG (configs/gpu-full.yaml), MAIN_INIT (weights/crnn.safetensors; empty: from scratch), EXP_SET (heads),
#      EXP_IMAGES (200000; 0: no experiment), EXP_ONLY (comma-separated run slugs; default all of the set), EXP_CONFIG (configs/compare.yaml), EXP_LANES (3), EXP_WORKERS (2),
#      DEADLINE_S (545: everything is stopped by then), DEVICE (cuda).
set -u
: "${OUT:?set OUT}"
T0=$(date +%s)
DEADLINE_S=${DEADLINE_S:-545}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mkdir -p "$OUT" /tmp/session
exec > >(tee -a "$OUT/session.log") 2>&1
echo "[session] $(date -u +%FT%TZ) $(nproc) cores; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo no GPU)"
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu_util.csv" 2>&1 &
fi
SITE=/tmp/site
WHEELS_DIR=${WHEELS_DIR:-.whl}
if compgen -G "$WHEELS_DIR/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS_DIR"/*.whl || echo "[session] pip failed"
fi
# The repository's folders under their installed names (crnn_training, ...; see pyproject.toml).
NAMES=$(mktemp -d); ln -s "$ROOT/crnn" "$NAMES/crnn"
for d in training synth_data server; do ln -s "$ROOT/$d" "$NAMES/crnn_$d"; done
export PYTHONPATH="$NAMES:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
SYNTH=$(python3 -c 'import json,os,sys; print(json.dumps({"words_file": os.path.abspath(".gpu/words.txt"), "font_dirs": ["@bundled"]}))')

EXP=
if [ "${EXP_IMAGES:-200000}" != 0 ]; then
    python3 -m crnn_training.experiment --set "${EXP_SET:-heads}" --config "${EXP_CONFIG:-configs/compare.yaml}" \
        --runs-dir /tmp/session/exp --images "${EXP_IMAGES:-200000}" --lanes "${EXP_LANES:-3}" ${EXP_ONLY:+--only "$EXP_ONLY"} \
        --device "${DEVICE:-cuda}" --workers "${EXP_WORKERS:-2}" --threads 1 --synth "$SYNTH" > "$OUT/exp.log" 2>&1 &
    EXP=$!
fi

if [ -n "${MAIN_CONFIG:-}" ]; then MAIN_MODEL=""; else MAIN_MODEL="model.backbone=small model.hidden_size=256"; fi
if [ "${MAIN_MINUTES:-8}" != 0 ]; then
    WHEELS_DIR=$WHEELS_DIR WORDS_FILE=.gpu/words.txt INIT_FROM=${MAIN_INIT-weights/crnn.safetensors} \
    CONFIG=${MAIN_CONFIG:-configs/gpu-full.yaml} \
    EXTRA_ARGS="$MAIN_MODEL data.num_workers=${MAIN_WORKERS:-8} ${MAIN_ARGS:-}" \
        timeout $((DEADLINE_S - ($(date +%s) - T0))) bash scripts/train_gpu.sh /tmp/session/main "${MAIN_MINUTES:-8}"
    echo "[session] main finished with $? at $(( $(date +%s) - T0 ))s"
fi

left=$((DEADLINE_S - ($(date +%s) - T0)))
while [ -n "$EXP" ] && kill -0 "$EXP" 2> /dev/null && [ "$left" -gt 0 ]; do sleep 2; left=$((DEADLINE_S - ($(date +%s) - T0))); done
if [ -n "$EXP" ] && kill -0 "$EXP" 2> /dev/null; then
    echo "[session] deadline: stopping the experiment"
    pkill -TERM -f crnn_training.train; sleep 3; kill "$EXP" 2> /dev/null
fi
echo "[session] experiment finished at $(( $(date +%s) - T0 ))s"

[ -d /tmp/session/main ] && tar -C /tmp/session -cf "$OUT/main.tar" --exclude=last.pt --exclude=tb main
cd /tmp/session/exp 2> /dev/null && {
    # Two tars of the runs in set order (the device returns at most 8 files).
    mapfile -t RUNS < <(python3 -c "from crnn_training.experiment import RUN_SETS; print('\n'.join(r.slug for r in RUN_SETS['${EXP_SET:-heads}']))")
    half=$(( (${#RUNS[@]} + 1) / 2 ))
    tar -cf "$OUT/expA.tar" --exclude=last.pt --exclude=tb "${RUNS[@]:0:$half}" 2> /dev/null
    tar -cf "$OUT/expB.tar" --exclude=last.pt --exclude=tb "${RUNS[@]:$half}" 2> /dev/null
}
ls -la "$OUT"
echo "[session] done at $(( $(date +%s) - T0 ))s"
