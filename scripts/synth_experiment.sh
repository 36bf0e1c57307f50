#!/usr/bin/env bash
# Issue 14's equal-budget renderer experiment on a GPU box, one command (from the repository root):
#   OUT=/path/out [STEPS=6000] [WORKERS=7] bash scripts/synth_experiment.sh
# Fine-tunes weights/crnn.safetensors twice, side by side on one GPU, for the same STEPS x 256 images, seed,
# schedule and learning rate: configs/synth_v1.yaml (the shipped model's renderer) and configs/synth_v2.yaml
# (issue 14's, with the photographs of .backgrounds/). Renders with the bundled fonts (fonts/). Needs
# .backgrounds/ (crnn synth --collect-backgrounds .backgrounds), .gpu/words.txt and .whl/ as scripts/train_gpu.sh.
# BACKGROUNDS_DIR stays unset: arm v1 must render exactly as the shipped model's renderer (configs/synth_v2.yaml
# names .backgrounds itself). The device tool carries .backgrounds (7.8 MB), .gpu and .whl.
# Then renders both synthetic test sets and evaluates both runs on them (and on BENCH_DIR's folders if present).
set -u
: "${OUT:?set OUT}"
STEPS=${STEPS:-6000}
unset BACKGROUNDS_DIR
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/experiment.log") 2>&1
[ -d .backgrounds ] || { echo "[synth_experiment] .backgrounds/ is missing: crnn synth --collect-backgrounds .backgrounds"; exit 2; }
for arm in v1 v2; do
    # Each arm its own wheel folder: two pip installs into one --target would race.
    SITE_DIR=/tmp/site_$arm CONFIG=configs/synth_$arm.yaml INIT_FROM=weights/crnn.safetensors \
    EXTRA_ARGS="train.max_steps=$STEPS data.num_workers=${WORKERS:-7}" \
        bash scripts/train_gpu.sh "$OUT/$arm" 0 > "$OUT/$arm.out" 2>&1 &
done
wait
export PYTHONPATH="${PYTHONPATH:-}"
NAMES=$(mktemp -d); ln -s "$ROOT/crnn" "$NAMES/crnn"
for d in training synth_data server; do ln -s "$ROOT/$d" "$NAMES/crnn_$d"; done
[ -d /tmp/site_v1 ] && PYTHONPATH="/tmp/site_v1:$PYTHONPATH"
export PYTHONPATH="$NAMES:$PYTHONPATH"
SETS=()
for arm in v1 v2; do
    python3 -m crnn.cli synth --count 2000 --out "/tmp/synth_test_$arm" --format folder --seed 20261126 \
        --set preset=$arm $( [ $arm = v2 ] && echo "--set backgrounds_dir=$ROOT/.backgrounds" ) \
        --set "font_dirs=@bundled" --set "words_file=$ROOT/.gpu/words.txt"
    SETS+=(--data "/tmp/synth_test_$arm")
done
for b in "${BENCH_DIR:-../shared/benchmarks}"/*/; do [ -f "$b/labels.tsv" ] && SETS+=(--data "$b"); done
for arm in v1 v2; do
    [ -f "$OUT/$arm/best.safetensors" ] && python3 -m crnn.cli eval --weights "$OUT/$arm/best.safetensors" "${SETS[@]}" | tee "$OUT/$arm.eval.txt"
done
