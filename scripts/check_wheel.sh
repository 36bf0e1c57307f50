#!/usr/bin/env bash
# The installed wheel works (issue 13, Must 6): build a wheel of this working tree, install it with the
# `server` extra into a fresh venv under a temp dir, and from a folder outside the clone check
#   - its file list (the web page and the shipped weights inside, every file of weights/ that `--model NAME` may
#     name, model cards included; no generic top-level package, no test helpers),
#   - `crnn ocr` on examples/word_00.png reads "Scuba",
#   - `import server` / `import training` fail while crnn_server, crnn_training, crnn_synth_data import,
#   - crnn.checkpoints.header.DEFAULT_WEIGHTS lies inside the venv,
#   - the crnn-ocr wheel carries no font (the inference-only install does not grow); without the crnn-ocr-fonts
#     wheel the renderer says how to get it; with it, `crnn synth --list-fonts` lists >= 250 bundled families,
#   - `crnn serve` on a free loopback port gets ready, reads word_00.png over POST /v1/recognize, serves /docs
#     with Swagger UI's assets from the installed packages, stops on SIGTERM.
# Exits non-zero with a line naming the failed check. Usage: scripts/check_wheel.sh (PYTHON=python3.X to choose).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/crnn-check-wheel.XXXXXX")"
VENV="$TMP/venv"
SERVER_PID=""
START=$(date +%s)

say() { echo "check_wheel: [$(($(date +%s) - START)) s] $*"; }
fail() {
    echo "check_wheel: FAILED: $*" >&2
    exit 1
}
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# 1. A copy of the working tree's files (tracked and untracked, not ignored): building in the clone would reuse
# its build/ folder, whose stale copies of deleted modules setuptools would put in the wheel.
say "copying the source tree"
"$PYTHON" - "$REPO" "$TMP/src" <<'EOF' || fail "could not copy the source tree"
import shutil, subprocess, sys
from pathlib import Path

repo, dst = Path(sys.argv[1]), Path(sys.argv[2])
try:
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         check=True, capture_output=True).stdout
    files = [f for f in out.decode().split("\0") if f]
except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked sdist): everything but builds
    skip = {".git", ".venv", "venv", "build", "dist", "__pycache__"}
    files = [str(p.relative_to(repo)) for p in repo.rglob("*")
             if p.is_file() and not skip & set(p.relative_to(repo).parts)
             and not any(part.endswith(".egg-info") for part in p.parts)]
for f in files:
    src = repo / f
    if src.is_file():  # a tracked file deleted in the working tree is not copied
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / f)
EOF

# 2. The wheel, built by the fresh venv's pip (a clean CI machine may have no pip outside a venv).
say "building the wheel"
"$PYTHON" -m venv "$VENV" || fail "could not create a venv with $PYTHON"
"$VENV/bin/pip" wheel -q --no-deps -w "$TMP/dist" "$TMP/src" || fail "pip wheel could not build the project"
WHEELS=("$TMP"/dist/crnn_ocr-*.whl)
[ -f "${WHEELS[0]}" ] || fail "no crnn_ocr wheel in $TMP/dist"
WHEEL="${WHEELS[0]}"
say "built $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"

# 3. Its file list.
"$VENV/bin/python" - "$WHEEL" "$TMP/src" <<'EOF' || fail "the wheel's file list is wrong (see above)"
import sys, zipfile
from pathlib import Path

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["crnn/__init__.py", "crnn/io/labeled_folder.py", "crnn/weights/crnn.safetensors",
        "crnn/weights/baseline.safetensors", "crnn/weights/crnn.onnx", "crnn/weights/crnn-int8.onnx", "crnn_server/app.py", "crnn_server/static/index.html",
        "crnn_training/evaluate.py", "crnn_synth_data/storage.py"]
# Every module of the library, its sub-packages' included (pyproject.toml lists the packages one by one).
src = Path(sys.argv[2])
need += sorted(str(p.relative_to(src)) for p in (src / "crnn").rglob("*.py"))
# Every shipped model's files in weights/ (those of `--model NAME`, crnn/checkpoints/shipped.py: checkpoints, ONNX and
# int8 files, model cards), whichever are there: a model added later travels without a change here.
need += sorted(f"crnn/weights/{p.name}" for pattern in ("*.safetensors", "*.onnx", "*.md")
               for p in (src / "weights").glob(pattern))
missing = [n for n in need if n not in names]
tops = {n.split("/")[0] for n in names}
generic = sorted(tops & {"server", "training", "synth_data", "weights", "tests", "benchmarks", "scripts", "examples"})
helpers = sorted(n for n in names if n.startswith("crnn_server/testing"))
fonts = sorted(n for n in names if n.lower().endswith((".ttf", ".otf", ".ttc", ".otc")))[:5]
for what, items in (("missing", missing), ("generic top-level folders", generic), ("test helpers", helpers),
                    ("font files (they belong in the crnn-ocr-fonts wheel)", fonts)):
    if items:
        print(f"check_wheel: {what}: {', '.join(items)}", file=sys.stderr)
sys.exit(1 if missing or generic or helpers or fonts else 0)
EOF

# 4. Installed with the server extra; -c constraints.txt keeps torch the CPU build; --no-compile skips
# byte-compiling torch's thousands of files (about half the install time here): the venv lives a minute.
say "installing it with the server extra"
"$VENV/bin/pip" install -q --no-compile -c "$REPO/constraints.txt" "$WHEEL[server]" || fail "pip install of the wheel failed"

# Everything below runs outside the clone, with nothing of the clone on the import path.
WORK="$TMP/work"
mkdir -p "$WORK"
cp "$REPO/examples/word_00.png" "$WORK/"
cd "$WORK"
unset PYTHONPATH CRNN_WEIGHTS

say "crnn ocr word_00.png"
OCR="$("$VENV/bin/crnn" ocr word_00.png 2>"$TMP/ocr.err")" || { cat "$TMP/ocr.err" >&2; fail "crnn ocr exited non-zero"; }
case "$OCR" in
*Scuba*) ;;
*) fail "crnn ocr word_00.png did not read 'Scuba': $OCR" ;;
esac

say "imports"
for generic in server training; do
    if "$VENV/bin/python" -c "import $generic" 2>/dev/null; then
        fail "'import $generic' works in the installed venv: a generic top-level package was installed"
    fi
done
"$VENV/bin/python" -c "import crnn_server, crnn_training, crnn_synth_data" || fail "the applications do not import"

say "shipped weights"
"$VENV/bin/python" - "$VENV" <<'EOF' || fail "the shipped weights are not found inside the venv"
import sys
from pathlib import Path

from crnn.checkpoints.header import DEFAULT_WEIGHTS

weights, venv = Path(DEFAULT_WEIGHTS).resolve(), Path(sys.argv[1]).resolve()
print(f"check_wheel: DEFAULT_WEIGHTS = {weights}")
sys.exit(0 if weights.is_file() and weights.is_relative_to(venv) else 1)
EOF

# 5. The renderer's fonts: not in the crnn-ocr wheel; without the crnn-ocr-fonts wheel a render says how to get
# it; with it, the bundled library is found from outside the clone. fontTools is what --list-fonts needs of the
# synth extra.
say "the font library (crnn-ocr-fonts)"
"$VENV/bin/pip" install -q --no-compile fonttools || fail "could not install fonttools"
"$VENV/bin/python" - <<'EOF' || fail "without crnn-ocr-fonts the renderer does not say how to get the fonts"
import sys
from crnn.errors import NoFontsError
from crnn_synth_data.config import SynthConfig
from crnn_synth_data.fonts import FontPool

try:
    FontPool(SynthConfig(font_cache=None))
except NoFontsError as e:
    print(f"check_wheel: without the fonts wheel: {e}")
    sys.exit(0 if "pip install ./fonts" in str(e) else 1)
sys.exit("check_wheel: the renderer found fonts without the crnn-ocr-fonts wheel")
EOF
"$VENV/bin/pip" wheel -q --no-deps -w "$TMP/dist" "$TMP/src/fonts" || fail "pip wheel could not build fonts/"
FONT_WHEELS=("$TMP"/dist/crnn_ocr_fonts-*.whl)
[ -f "${FONT_WHEELS[0]}" ] || fail "no crnn_ocr_fonts wheel in $TMP/dist"
say "built $(basename "${FONT_WHEELS[0]}") ($(du -k "${FONT_WHEELS[0]}" | cut -f1) KiB)"
"$VENV/bin/pip" install -q --no-compile "${FONT_WHEELS[0]}" || fail "pip install of the fonts wheel failed"
CRNN_SYNTH_HIDE_HOST_FONTS=1 "$VENV/bin/crnn" synth --list-fonts --set font_cache=none >"$TMP/fonts.txt" 2>"$TMP/fonts.err" \
    || { cat "$TMP/fonts.err" >&2; fail "crnn synth --list-fonts exited non-zero"; }
"$VENV/bin/python" - "$TMP/fonts.txt" "$VENV" <<'EOF' || fail "crnn synth --list-fonts does not list the bundled library"
import re, sys
from pathlib import Path

text = Path(sys.argv[1]).read_text()
total = re.search(r"total: (\d+) usable faces in (\d+) families", text)
bundled = [line for line in text.splitlines() if "  bundled: " in line]
folder = text.splitlines()[1].split()[0]
print(f"check_wheel: --list-fonts: {total.group(0) if total else 'no total'}; first folder {folder}")
ok = total and int(total.group(2)) >= 250 and len(bundled) == int(total.group(2))
sys.exit(0 if ok and Path(folder).resolve().is_relative_to(Path(sys.argv[2]).resolve()) else 1)
EOF

# 6. crnn serve on a free loopback port: ready, one recognize request, SIGTERM.
PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
say "crnn serve on 127.0.0.1:$PORT"
"$VENV/bin/crnn" serve --host 127.0.0.1 --port "$PORT" --no-access-log >"$TMP/serve.log" 2>&1 &
SERVER_PID=$!
"$VENV/bin/python" - "$PORT" "$SERVER_PID" word_00.png <<'EOF' || { tail -n 30 "$TMP/serve.log" >&2; fail "crnn serve did not read word_00.png (its log is above)"; }
import json, os, sys, time, urllib.error, urllib.request

port, pid, image = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 90
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("check_wheel: crnn serve exited before it was ready")
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
            if r.status == 200:
                break
    except (urllib.error.URLError, OSError):
        pass
    if time.monotonic() > deadline:
        sys.exit("check_wheel: crnn serve not ready after 90 s")
    time.sleep(0.2)
boundary = "crnncheckwheel"
with open(image, "rb") as f:
    data = f.read()
body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{image}\"\r\n"
        f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
req = urllib.request.Request(base + "/v1/recognize", data=body, method="POST",
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
with urllib.request.urlopen(req, timeout=60) as r:
    answer = json.load(r)
text = answer["results"][0].get("text")
print(f"check_wheel: POST /v1/recognize -> {text!r}")
if text != "Scuba":
    sys.exit(f"check_wheel: expected 'Scuba', got {answer}")
# /docs works offline: Swagger UI's script comes from the installed package, not a CDN.
with urllib.request.urlopen(base + "/docs", timeout=10) as r:
    page = r.read().decode()
with urllib.request.urlopen(base + "/docs-assets/swagger-ui-bundle.js", timeout=10) as r:
    script = r.read()
if "/docs-assets/swagger-ui-bundle.js" not in page or "cdn." in page or len(script) < 100_000:
    sys.exit("check_wheel: /docs does not serve Swagger UI from the installed package")
print(f"check_wheel: /docs and its Swagger UI script ({len(script):,} bytes) served from the wheel's install")
EOF
kill -TERM "$SERVER_PID" 2>/dev/null || true
for _ in $(seq 1 450); do  # a graceful stop drains in-flight requests: allow 45 s, then kill
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$SERVER_PID" 2>/dev/null && fail "crnn serve did not stop within 45 s of SIGTERM"
RC=0
wait "$SERVER_PID" || RC=$?
SERVER_PID=""
# uvicorn re-raises the SIGTERM it caught once shutdown is complete, so 143 (128 + 15) is a clean stop too.
[ "$RC" -eq 0 ] || [ "$RC" -eq 143 ] || { tail -n 30 "$TMP/serve.log" >&2; fail "crnn serve exited with $RC on SIGTERM"; }

say "all checks passed in $(($(date +%s) - START)) s"
