"""When `crnn ocr`'s work runs: the decoding done while nothing else of the run works, per tree, alternating.

    python benchmarks/ocr_timeline.py FOLDER [--tree DIR ...] [--rounds 3] [-- crnn ocr options]

Each run is the real command (forked image decoders, --threads as given, default 2) in a child process whose
functions are timed: each network call (OnnxRecognizer.batch_log_probs) and each decoding call
(crnn.reading.text_recognizer.decode), wall span and thread CPU time, and each task of the image-decoding
processes (crnn.io.image_loader.load_paths). From them, after the first network call: the CPU of the decoding
calls done while no network call and no image decoding of the run was working. On a quiet host that is work done
on one core while the other has nothing to do (the tails of a chunk); it is a count of work, so a loaded host
stretches it less than it stretches wall times. Also per run: wall and CPU (user + sys) of the process tree.

--tree: the source trees to compare (default: this one), run one after the other in alternating order for
--rounds rounds (each with PYTHONPATH and the working directory set to the tree; relative paths in the options,
e.g. --weights weights/crnn-int8.onnx, are each tree's own). Their outputs (--format jsonl) are compared.
Medians and ranges are printed per tree.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# The image decoders' function and where their spans go (module level: the pool pickles the function by name).
_LOADER: dict[str, Any] = {}


def _timed_load_paths(*args: Any) -> Any:
    """crnn.io.image_loader.load_paths, its span written to a file of this (forked) process; monotonic time is
    system-wide."""
    start = time.monotonic()
    try:
        return _LOADER["load_paths"](*args)
    finally:
        with open(_LOADER["tasks"] / f"{os.getpid()}.txt", "a", encoding="utf-8") as f:
            f.write(f"{start} {time.monotonic()}\n")


def traced_run(out: Path, ocr_args: list[str]) -> int:
    """`crnn ocr OCR_ARGS` in this process with its stages timed; the events go to ``out`` (JSON)."""
    import crnn.commands.ocr as ocr
    import crnn.io.image_loader as loader
    import crnn.reading.onnx_recognizer as onnx_recognizer
    import crnn.reading.text_recognizer as text_recognizer

    events: list[tuple[str, float, float, float]] = []  # (stage, start, end, thread CPU)
    tasks_dir = Path(tempfile.mkdtemp())

    def timed(owner: Any, name: str, stage: str) -> None:
        fn = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.monotonic(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                events.append((stage, start, time.monotonic(), time.thread_time() - cpu))
        setattr(owner, name, wrapper)

    _LOADER.update(load_paths=loader.load_paths, tasks=tasks_dir)
    loader.load_paths = _timed_load_paths  # type: ignore[assignment]
    timed(onnx_recognizer.OnnxRecognizer, "batch_log_probs", "network")
    timed(text_recognizer, "decode", "decoding")
    status = ocr.main(ocr_args)
    tasks = [[float(v) for v in line.split()] for f in tasks_dir.iterdir() for line in f.read_text().splitlines()]
    out.write_text(json.dumps({"events": events, "tasks": tasks}))
    return status


def lone_decoding(trace: dict[str, Any]) -> tuple[float, float]:
    """(decoding CPU in all, decoding CPU while no network call and no image decoding ran) of one traced run."""
    network = [(a, b) for stage, a, b, _ in trace["events"] if stage == "network"]
    busy = sorted(network + [(a, b) for a, b in trace["tasks"]])
    merged: list[list[float]] = []
    for a, b in busy:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    first = min(a for a, _ in network)
    total = lone = 0.0
    for stage, a, b, cpu in trace["events"]:
        if stage != "decoding":
            continue
        total += cpu
        if b <= first or b <= a:
            continue
        covered = sum(max(0.0, min(b, y) - max(a, x)) for x, y in merged)
        lone += cpu * ((b - a) - covered) / (b - a)  # the call's CPU, in the share of its span that ran alone
    return total, lone


def run_tree(tree: Path, folder: Path, ocr_args: list[str], work: Path, tag: str) -> dict[str, Any]:
    """One traced run of `crnn ocr FOLDER` from ``tree``: wall, CPU, decoding CPU (all, alone) and its output file."""
    trace, output = work / f"{tag}.json", work / f"{tag}.jsonl"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--trace", str(trace), "--",
           str(folder), "--format", "jsonl", "-o", str(output), *ocr_args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    total, lone = lone_decoding(json.loads(trace.read_text()))
    return {"wall": wall, "cpu": cpu, "decoding": total, "alone": lone, "output": output}


def rows(path: Path) -> list[tuple[Any, ...]]:
    """An output's rows as (path, text, confidence, char confidences, error), in order."""
    return [(r["path"], r.get("text"), r.get("confidence"), r.get("char_confidences"), r.get("error"))
            for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())]


def main(argv: list[str] | None = None) -> int:
    """Compare the trees' runs (or, with --trace, be one traced run)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ocr_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, nargs="?")
    p.add_argument("--tree", type=Path, action="append", help="a source tree to run (repeatable; default: this one)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--trace", type=Path, help=argparse.SUPPRESS)  # the child: one traced run into this file
    args = p.parse_args(argv)
    if args.trace:
        return traced_run(args.trace, ocr_args)
    if args.folder is None:
        p.error("FOLDER is required")
    if "--threads" not in ocr_args:
        ocr_args = ["--threads", "2", *ocr_args]
    trees = [t.resolve() for t in (args.tree or [REPO])]
    work = Path(tempfile.mkdtemp())
    runs: dict[Path, list[dict[str, Any]]] = {t: [] for t in trees}
    for r in range(args.rounds):
        for i, tree in enumerate(trees if r % 2 == 0 else trees[::-1]):
            run = run_tree(tree, args.folder.resolve(), ocr_args, work, f"{r}-{trees.index(tree)}")
            runs[tree].append(run)
            print(f"round {r} {tree}: wall {run['wall']:.2f} s, CPU {run['cpu']:.2f} s, decoding CPU "
                  f"{run['decoding']:.3f} s, of it alone {run['alone']:.3f} s, load {os.getloadavg()[0]:.1f}",
                  flush=True)
    reference = rows(runs[trees[0]][0]["output"])
    print(f"crnn ocr {args.folder} {' '.join(ocr_args)}; {len(reference)} rows; {args.rounds} alternating rounds")
    for tree in trees:
        same = all(rows(run["output"]) == reference for run in runs[tree])
        parts = []
        for key, label in (("wall", "wall"), ("cpu", "CPU"), ("decoding", "decoding CPU"), ("alone", "alone")):
            values = [run[key] for run in runs[tree]]
            parts.append(f"{label} {statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})")
        print(f"{tree}: {', '.join(parts)}; outputs as the first tree's: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
