#!/usr/bin/env bash
# Download (here, with network) the wheels an air-gapped training box lacks: scripts/fetch_wheels.sh [DIR]
#
# The box has Python with torch, numpy, pillow, opencv-headless, scipy, pyyaml, tqdm, matplotlib,
# tensorboard, fonttools and safetensors; this adds albumentations (the synthetic data's degradations),
# rapidfuzz (crnn.metrics) and their missing dependencies. Versions are pinned to this checkout's
# environment (VENV_PIP, default .venv/bin/pip: the README's venv) so the box runs what was tested here.
# Target: PY_VERSION (default 3.12) CPython, manylinux x86_64. Set WITH_LMDB=1 to add lmdb (LMDB sources).
# Also writes WORDS_FILE (default .gpu/words.txt) from wordfreq if it is missing, since the box lacks wordfreq.
set -euo pipefail

DIR=${1:-.whl}
PY_VERSION=${PY_VERSION:-3.12}
VENV_PIP=${VENV_PIP:-.venv/bin/pip}
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$DIR"

PACKAGES=(albumentations albucore pydantic pydantic-core annotated-types typing-inspection typing-extensions
          simsimd stringzilla rapidfuzz)
if [ "${WITH_LMDB:-0}" = 1 ]; then PACKAGES+=(lmdb); fi

FREEZE=$("$VENV_PIP" freeze 2>/dev/null)
version_of() {  # the pinned version of a package in the tested environment (names compared normalised)
    local want
    want=$(echo "$1" | tr 'A-Z_.' 'a-z--')
    echo "$FREEZE" | awk -F'==' -v w="$want" '{n=tolower($1); gsub(/[_.]/, "-", n); if (n == w) print $2}'
}

for name in "${PACKAGES[@]}"; do
    v=$(version_of "$name")
    if [ -z "$v" ]; then echo "fetch_wheels: $name is not installed in the tested environment" >&2; exit 1; fi
    echo "fetch_wheels: $name==$v"
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version "$PY_VERSION" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$DIR" "$name==$v"
done
du -ch "$DIR"/*.whl | tail -1

WORDS_FILE=${WORDS_FILE:-.gpu/words.txt}
if [ ! -f "$WORDS_FILE" ]; then
    mkdir -p "$(dirname "$WORDS_FILE")"
    # The venv has this checkout installed, so crnn_synth_data (the synth_data/ folder) imports.
    "${VENV_PYTHON:-.venv/bin/python}" -c \
        "import sys; from crnn_synth_data import export_words; print('fetch_wheels: words', export_words(sys.argv[1]), sys.argv[1])" \
        "$WORDS_FILE"
fi
