"""Images/s and peak memory of `crnn ocr` over a folder of word images (default: 2,000 rendered words).

    python benchmarks/bench_ocr.py [--folder DIR] [--count 2000] [--repeat 2] [--backend both] [-- crnn ocr options]

Renders the folder with synth_data (seed 0) unless --folder is given, then runs the `crnn ocr` command as a
subprocess (start-up and model loading included) and reads its peak RSS from the kernel (wait4 rusage: the
largest process). It also times `crnn ocr` on one image (start-up: importing torch, loading the model) and
reports the rate with that start-up taken out (an upper bound: `crnn ocr` decodes its first images during
its start-up). A last, untimed run samples
the resident memory of the whole process tree (the command and its image-decoding processes) every 50 ms.
``--backend both`` (default) measures `crnn ocr --backend torch` and `--backend onnx` (ONNX Runtime, when
installed) one after the other on the same folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crnn.machine import cpu_cores


def render_folder(out: Path, count: int) -> Path:
    """Write ``count`` synthetic word images (PNG) to ``out``."""
    subprocess.run([sys.executable, "-m", "crnn_synth_data.cli", "--count", str(count), "--out", str(out),
                    "--format", "folder", "--seed", "0"], check=True, stderr=subprocess.DEVNULL)
    return out


def run_once(folder: Path, extra: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, lines of output) of one `crnn ocr` run."""
    cmd = [sys.executable, "-m", "crnn.cli", "ocr", str(folder), *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines = sum(1 for _ in proc.stdout)  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"crnn ocr failed: {cmd}")
    return seconds, usage.ru_maxrss / 1024, lines - 1


def tree_rss_mb(root: int) -> float:
    """Resident memory (MB) of process ``root`` and its children, summed (shared pages counted in each)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(entry.name) == root or int(status.get("PPid", "0")) == root:
            total += int(status.get("VmRSS", "0 kB").split()[0])
    return total / 1024


def peak_tree_rss(folder: Path, extra: list[str]) -> float:
    """Peak of tree_rss_mb over one `crnn ocr` run, sampled every 50 ms."""
    proc = subprocess.Popen([sys.executable, "-m", "crnn.cli", "ocr", str(folder), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.05)
    return peak


def main() -> None:
    """Print images/s and peak RSS of `crnn ocr`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--backend", choices=("torch", "onnx", "auto", "both"), default="both",
                   help="crnn ocr's --backend; both (default): torch, then onnx")
    p.add_argument("extra", nargs="*", help="options passed to crnn ocr (after --)")
    args = p.parse_args()
    backends = ["torch", "onnx"] if args.backend == "both" else [args.backend]
    if "onnx" in backends and importlib.util.find_spec("onnxruntime") is None:
        print("onnx backend skipped: onnxruntime is not installed (pip install 'crnn-ocr[onnx]')")
        backends.remove("onnx")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or render_folder(Path(tmp) / "words", args.count)
        one = Path(tmp) / "one"
        one.mkdir()
        first = next(p for p in sorted(folder.rglob("*")) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        (one / first.name).write_bytes(first.read_bytes())
        for backend in backends:
            bench(folder, one, ["--backend", backend, *args.extra], args.repeat)


def bench(folder: Path, one: Path, extra: list[str], repeat: int) -> None:
    """Print the runs, the best rate, start-up and peak memory of `crnn ocr FOLDER EXTRA`."""
    startup = min(run_once(one, extra)[0] for _ in range(2))
    best, n = None, 0
    for _ in range(repeat):
        seconds, rss, n = run_once(folder, extra)
        print(f"{n} images in {seconds:.2f} s: {n / seconds:.0f} images/s, peak RSS {rss:.0f} MB")
        best = min(best or seconds, seconds)
    assert best is not None
    print(f"best: {n / best:.0f} images/s ({cpu_cores()} cores, options {' '.join(extra)}); "
          f"start-up {startup:.2f} s, without it {n / max(best - startup, 1e-9):.0f} images/s")
    if Path("/proc/self/status").exists():
        print(f"peak RSS of the process tree (command + decoding processes): {peak_tree_rss(folder, extra):.0f} MB")


if __name__ == "__main__":
    main()
