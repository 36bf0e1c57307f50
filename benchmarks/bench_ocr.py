"""Images/s and peak memory of `crnn ocr` over a folder of word images (default: 2,000 rendered words).

    python benchmarks/bench_ocr.py [--folder DIR] [--count 2000] [--repeat 2] [-- extra crnn ocr options]

Renders the folder with synth_data (seed 0) unless --folder is given, then runs the `crnn ocr` command as a
subprocess (start-up and model loading included) and reads its peak RSS from the kernel (wait4 rusage).
It also times `crnn ocr` on one image (start-up: importing torch, loading the model) and reports the rate
with that start-up taken out, the rate a long run approaches.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def render_folder(out: Path, count: int) -> Path:
    """Write ``count`` synthetic word images (PNG) to ``out``."""
    subprocess.run([sys.executable, "-m", "synth_data.cli", "--count", str(count), "--out", str(out),
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


def main() -> None:
    """Print images/s and peak RSS of `crnn ocr`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("extra", nargs="*", help="options passed to crnn ocr (after --)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or render_folder(Path(tmp) / "words", args.count)
        one = Path(tmp) / "one"
        one.mkdir()
        first = next(p for p in sorted(folder.rglob("*")) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        (one / first.name).write_bytes(first.read_bytes())
        startup = min(run_once(one, args.extra)[0] for _ in range(2))
        best = None
        for _ in range(args.repeat):
            seconds, rss, n = run_once(folder, args.extra)
            print(f"{n} images in {seconds:.2f} s: {n / seconds:.0f} images/s, peak RSS {rss:.0f} MB")
            best = min(best or seconds, seconds)
        print(f"best: {n / best:.0f} images/s ({os.cpu_count()} cores, options {args.extra or 'default'}); "
              f"start-up {startup:.2f} s, without it {n / max(best - startup, 1e-9):.0f} images/s")


if __name__ == "__main__":
    main()
