#!/usr/bin/env bash
# Train on an air-gapped CUDA machine: scripts/train_gpu.sh OUT_DIR [MINUTES]
#
# Needs only Python with torch, numpy, pillow and opencv on the machine; everything else comes from a local
# wheel folder filled beforehand by scripts/fetch_wheels.sh. Environment:
#   WHEELS_DIR  wheel folder (default .whl/)          FONTS_DIR   a font folder instead of the bundled library (fonts/; default none)
#   BACKGROUNDS_DIR  photographs from `crnn synth --collect-backgrounds` (default none: v1 renders as shipped)
#   WORDS_FILE  word list, one per line (default .gpu/words.txt; else wordfreq, which the box may lack)
#   INIT_FROM   checkpoint to fine-tune from (default weights/crnn.safetensors if present; INIT_FROM= for none)
#   CONFIG      preset (default configs/gpu-full.yaml)  EXTRA_ARGS  more key=value overrides
#   PYTHON      interpreter (default python3)         KEEP_LAST=1 keep the (large) resume state last.pt
# Leaves in OUT_DIR: best.safetensors (fp16), train.log, metrics.jsonl, curves.png, config.yaml, tb/.
# An OUT_DIR that holds a run is refused by the trainer (EXTRA_ARGS=--force starts over in it); train.log is appended to.
set -euo pipefail

OUT_DIR=${1:?usage: scripts/train_gpu.sh OUT_DIR [MINUTES]}
MINUTES=${2:-8}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)  # relative to the caller's directory, before moving to the repository root
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
WHEELS_DIR=${WHEELS_DIR:-.whl}
FONTS_DIR=${FONTS_DIR:-}  # the repository's fonts/ (@bundled, the default) travels with the working tree
BACKGROUNDS_DIR=${BACKGROUNDS_DIR:-}  # opt-in: it changes what a v1 config renders
WORDS_FILE=${WORDS_FILE:-.gpu/words.txt}
CONFIG=${CONFIG:-configs/gpu-full.yaml}
SITE=${SITE_DIR:-/tmp/site}
if [ -z "${INIT_FROM+set}" ] && [ -f weights/crnn.safetensors ]; then INIT_FROM=weights/crnn.safetensors; fi
INIT_FROM=${INIT_FROM:-}

mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/train.log"
say() { echo "[train_gpu] $*" | tee -a "$LOG"; }

# 1. Dependencies from local wheels only (no network). --target keeps the machine's own packages untouched.
if compgen -G "$WHEELS_DIR/*.whl" > /dev/null; then
    mkdir -p "$SITE"
    if ! "$PY" -m pip install --quiet --no-index --no-deps --disable-pip-version-check --target "$SITE" "$WHEELS_DIR"/*.whl >> "$LOG" 2>&1; then
        say "pip install failed; unpacking the wheels directly"
        "$PY" - "$SITE" "$WHEELS_DIR"/*.whl <<'PYEOF'
import sys, zipfile
for whl in sys.argv[2:]:
    zipfile.ZipFile(whl).extractall(sys.argv[1])
PYEOF
    fi
    say "installed $(ls "$WHEELS_DIR"/*.whl | wc -l) wheels from $WHEELS_DIR into $SITE"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    say "no wheels in $WHEELS_DIR: using the installed packages"
fi
# The repository's folders under their installed names (pyproject.toml: training/ is crnn_training, ...),
# without pip installing the project on the box.
NAMES=$(mktemp -d)
ln -s "$ROOT/crnn" "$NAMES/crnn"
for d in training synth_data server; do ln -s "$ROOT/$d" "$NAMES/crnn_$d"; done
export PYTHONPATH="$NAMES${PYTHONPATH:+:$PYTHONPATH}"

# 2. The run's arguments.
ARGS=(--config "$CONFIG" "train.max_minutes=$MINUTES" "out_dir=$OUT_DIR")
if [ -n "$FONTS_DIR" ] && [ -d "$FONTS_DIR" ]; then ARGS+=("synth.font_dirs=[\"$(cd "$FONTS_DIR" && pwd)\"]"); fi
if [ -n "$BACKGROUNDS_DIR" ] && [ -d "$BACKGROUNDS_DIR" ]; then ARGS+=("synth.backgrounds_dir=\"$(cd "$BACKGROUNDS_DIR" && pwd)\""); fi
if [ -f "$WORDS_FILE" ]; then ARGS+=("synth.words_file=\"$(cd "$(dirname "$WORDS_FILE")" && pwd)/$(basename "$WORDS_FILE")\""); fi
if [ -n "$INIT_FROM" ]; then ARGS+=(--init-from "$INIT_FROM"); fi
# shellcheck disable=SC2206  # EXTRA_ARGS is a space-separated list of key=value overrides
EXTRA=(${EXTRA_ARGS:-})

say "$(date -u +%FT%TZ) $("$PY" -c 'import torch,sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')"
say "cores $(nproc); running: $PY -m crnn_training.train ${ARGS[*]} ${EXTRA[*]:-}"

# 3. Train (the time budget includes start-up and the final evaluation).
set +e
PYTHONUNBUFFERED=1 "$PY" -m crnn_training.train "${ARGS[@]}" "${EXTRA[@]}" 2>&1 | tee -a "$LOG"
RC=${PIPESTATUS[0]}
set -e

if [ "${KEEP_LAST:-0}" != 1 ]; then rm -f "$OUT_DIR/last.pt"; fi
if [ -f "$OUT_DIR/best.safetensors" ] && [ "$(stat -c %s "$OUT_DIR/best.safetensors")" -gt 16000000 ]; then
    # gpu-full from scratch (9.3 M parameters) is 18.6 MB even in fp16: model.hidden_size=128 gives 14.3 MB.
    say "WARNING: best.safetensors is over 16 MB; for a smaller gpu-full add EXTRA_ARGS=model.hidden_size=128"
fi
say "exit code $RC; outputs:"
ls -la "$OUT_DIR" | tee -a "$LOG"
exit "$RC"
