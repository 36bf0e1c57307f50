"""Images/s and peak memory of `crnn ocr --ray` with 1 and 2 actors against plain `crnn ocr`, on one folder.

    python benchmarks/bench_ray.py [--folder DIR] [--actors 1 2] [--repeat 1] [-- extra crnn ocr options]

Default folder: ../shared/benchmarks/IIIT5K beside the repository (3,000 word crops; read only, nothing is
tuned on it). Each command runs as a subprocess, Ray's start-up and the model loads included (a local Ray
instance per run, as a user gets without --ray-address). Ray's fixed cost is measured apart with a one-image
run, and the rate without it is given too (the steady rate a long run approaches). Memory: the whole process
tree is sampled every 100 ms (the command, its decoders, Ray's raylet/GCS and workers): the peak of the
summed RSS, and the peak of Ray's worker processes (`ray::` in their command line) summed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crnn.machine import cpu_cores

REPO = Path(__file__).resolve().parent.parent
IIIT5K = REPO.parent / "shared" / "benchmarks" / "IIIT5K"


def processes() -> dict[int, tuple[int, float, str]]:
    """pid -> (parent pid, RSS in MB, command line) of every process now."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(entry.name)] = (int(status.get("PPid", "0")), int(status.get("VmRSS", "0 kB").split()[0]) / 1024, cmd)
    return out


def tree_rss(root: int) -> tuple[float, float, int]:
    """(summed RSS of ``root`` and all its descendants, of those among them that are Ray workers (MB); how many)."""
    procs = processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total = workers = 0.0
    count = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            _, rss, cmd = procs[pid]
            total += rss
            workers += rss if cmd.startswith("ray::") else 0.0
            count += cmd.startswith("ray::")
        todo += children.get(pid, [])
    return total, workers, count


def run(cmd: list[str]) -> tuple[float, float, float, float, int]:
    """(seconds, peak RSS of the command's own process, peak summed tree RSS, peak Ray workers' RSS and their
    number) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    peak_tree = peak_workers = 0.0
    peak_count = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        total, workers, count = tree_rss(proc.pid)
        peak_tree, peak_workers, peak_count = max(peak_tree, total), max(peak_workers, workers), max(peak_count, count)
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"failed: {' '.join(cmd)}")
    # ru_maxrss of the waited child: the command's process (Ray's workers are not its waited children).
    return seconds, usage.ru_maxrss / 1024, peak_tree, peak_workers, peak_count


def count_images(folder: Path) -> int:
    """Images `crnn ocr` reads in ``folder``."""
    from crnn.io.inputs import expand_inputs

    return sum(1 for _ in expand_inputs([str(folder)]))


def main() -> None:
    """Print images/s, the overhead ratio and peak memory of plain and Ray runs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path, default=IIIT5K)
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("extra", nargs="*", help="options passed to crnn ocr (after --)")
    args = p.parse_args()
    n = count_images(args.folder)
    crnn = [sys.executable, "-m", "crnn.cli", "ocr"]
    print(f"{n} images in {args.folder}; {cpu_cores()} cores; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one"
        one.mkdir()
        first = next(iter(sorted(args.folder.rglob("*.png")) or sorted(args.folder.rglob("*.jpg"))))
        shutil.copy(first, one / first.name)
        best = {}
        for label, cmd_of in [("crnn ocr", lambda f, out: [*crnn, str(f), "-o", os.devnull, *args.extra])] + [
            (f"--ray, {a} actor{'s' if a > 1 else ''}",
             lambda f, out, a=a: [*crnn, str(f), "--ray", "--ray-actors", str(a), "--output", out, *args.extra])
            for a in args.actors
        ]:
            out = str(Path(tmp) / "out")
            shutil.rmtree(out, ignore_errors=True)
            startup = run(cmd_of(one, out))[0]
            for _ in range(args.repeat):
                shutil.rmtree(out, ignore_errors=True)
                seconds, own, tree, workers, count = run(cmd_of(args.folder, out))
                print(f"{label:<22} {seconds:6.1f} s  {n / seconds:6.0f} images/s  (one image: {startup:5.1f} s; "
                      f"without it {n / max(seconds - startup, 1e-9):6.0f} images/s)  peak RSS: command "
                      f"{own:5.0f} MB, process tree {tree:5.0f} MB" + (
                          f", Ray workers {workers:5.0f} MB ({count} processes)" if "ray" in label else ""))
                best[label] = min(best.get(label, seconds), seconds)
        base = best["crnn ocr"]
        for label, seconds in best.items():
            if label != "crnn ocr":
                print(f"overhead {label}: {seconds / base:.2f}x the time of crnn ocr (start-up included)")


if __name__ == "__main__":
    main()
