"""Where `crnn ocr`'s time goes: start-up, image decoding, preprocessing, network, decoding, writing.

    python benchmarks/profile_ocr.py FOLDER [--startup-runs 3] [-- crnn ocr options, e.g. --backend onnx]

Two measurements:
1. The whole command, in-process, serialised so that every stage runs in this process and thread:
   the image decoders run in this process (a synchronous stand-in for `crnn ocr`'s forked pool) and
   --threads 1 (the network and the decoding in the main thread). The real command overlaps these stages on
   its cores; the split here is of the CPU work, which is what a speed-up has to take away. Stages are the
   CPU times (time.process_time; a timer wrapped around each stage's function, or with --cprofile the
   cumulative times of cProfile, which also lists the top functions but inflates Python code) of: the image file decoding
   (crnn.io.preprocess.load_image), the rest of the preprocessing (crnn.io.preprocess.prepare less load_image),
   the network (the recognizer's batch_log_probs), the decoding (crnn.decoding.ctc_decode.decode), the writing
   (crnn.commands.ocr_output.Writer.write) and the model loading (load_recognizer); the rest is the lazy imports inside the
   command, argument parsing, batching and glue (crnn.commands.ocr itself is imported before the profiler starts).
2. Start-up: `crnn ocr` (the same options) on one image as a subprocess, wall and CPU seconds (best of
   --startup-runs), beside `python -c pass`; then `python -X importtime` of that one-image command, summarised
   by the top-level imports and by package (self time), as `-X importtime` reports them (wall, one run); with
   --imports, the CPU that each step of the onnx path's imports adds (cumulative sets, best of runs).

CPU seconds are printed with wall seconds because the host may be shared: CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, Callable

# (stage, source file suffix, function name) for pstats' cumulative times.
STAGES = [
    ("image decoding (load_image)", "crnn/io/preprocess.py", "load_image"),
    ("preprocess (prepare)", "crnn/io/preprocess.py", "prepare"),
    ("network (batch_log_probs)", "recognizer.py", "batch_log_probs"),
    ("decoding (ctc_decode.decode)", "crnn/decoding/ctc_decode.py", "decode"),
    ("writing (Writer.write)", "crnn/commands/ocr_output.py", "write"),
    ("model loading (load_recognizer)", "crnn/kinds/loading.py", "load_recognizer"),
]


class InlineExecutor(Executor):
    """Runs each submitted call at once, in this thread, so that the profiler sees it."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future, as a pool would
            future.set_exception(e)
        return future


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    """Summed cumulative seconds of the functions ``name`` defined in files ending with ``suffix``."""
    total = 0.0
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and filename.replace(os.sep, "/").endswith(suffix):
            total += ct
    return total


# (stage, module, attribute) wrapped by a CPU timer in --timers mode: the same stages, without cProfile's
# overhead (which inflates the Python-heavy stages, the decoding most).
TIMED = [
    ("image decoding (load_image)", "crnn.io.preprocess", "load_image"),
    ("preprocess (prepare)", "crnn.io.image_loader", "prepare"),
    ("network (batch_log_probs)", "crnn.reading.onnx_recognizer", "OnnxRecognizer.batch_log_probs"),
    ("network (batch_log_probs)", "crnn.reading.recognizer", "Recognizer.batch_log_probs"),
    ("decoding (ctc_decode.decode)", "crnn.reading.text_recognizer", "decode"),
    ("writing (Writer.write)", "crnn.commands.ocr_output", "Writer.write"),
    ("model loading (load_recognizer)", "crnn.kinds.loading", "load_recognizer"),
]


def _serialise() -> None:
    import crnn.io.image_loader

    crnn.io.image_loader.make_pool = lambda workers, processes=None: InlineExecutor()  # type: ignore[assignment]


def time_stages(folder: Path, ocr_args: list[str]) -> None:
    """`crnn ocr FOLDER`, serialised, each stage's function wrapped by a CPU timer; print the stages."""
    import importlib

    _serialise()
    spent: Counter[str] = Counter()

    def timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] += time.process_time() - start
        return wrapper

    torch_backend = "torch" in ocr_args  # --backend torch (the onnx path must not import torch: crnn.reading.recognizer does)
    for stage, module_name, attr in TIMED:
        if (module_name == "crnn.reading.recognizer") != torch_backend and "batch_log_probs" in attr:
            continue
        owner: Any = importlib.import_module(module_name)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, name, timed(stage, getattr(owner, name)))
    from crnn.commands.ocr import main as ocr_main

    out = Path(tempfile.mkdtemp()) / "out.txt"
    cpu0, wall0 = time.process_time(), time.perf_counter()
    status = ocr_main([str(folder), "--output", str(out), *ocr_args, "--threads", "1"])
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    spent["preprocess (prepare)"] -= spent["image decoding (load_image)"]  # prepare calls load_image
    print(f"whole command, serialised, stages timed (CPU): {wall:.2f} s wall, {cpu:.2f} s CPU, exit {status}")
    stages = list(dict.fromkeys(stage for stage, _, _ in TIMED))
    for stage in stages:
        print(f"  {stage:55s} {spent[stage]:7.2f} s CPU  {100 * spent[stage] / cpu:5.1f}%")
    rest = cpu - sum(spent[s] for s in stages)
    print(f"  {'the rest (lazy imports, argument parsing, batching, glue)':55s} {rest:7.2f} s CPU  "
          f"{100 * rest / cpu:5.1f}%")


def profile_whole(folder: Path, ocr_args: list[str]) -> None:
    """`crnn ocr FOLDER` in this process under cProfile, serialised; print the stages."""
    _serialise()
    from crnn.commands.ocr import main as ocr_main

    out = Path(tempfile.mkdtemp()) / "out.jsonl"
    # CPU time, not wall time: the host may be shared, and with --threads 1 this process's CPU time is the work.
    profiler = cProfile.Profile(time.process_time)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    profiler.enable()
    status = ocr_main([str(folder), "--output", str(out), *ocr_args, "--threads", "1"])
    profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    images = sum(1 for _ in out.open(encoding="utf-8")) - (1 if "--format" not in ocr_args else 0)
    stats = pstats.Stats(profiler)
    print(f"whole command, serialised, under cProfile: {wall:.2f} s wall, {cpu:.2f} s CPU, exit {status}, "
          f"{images} output lines (profiler overhead included)")
    values = {stage: cumulative(stats, suffix, name) for stage, suffix, name in STAGES}
    values["preprocess (prepare)"] -= values["image decoding (load_image)"]
    values["preprocess (prepare)"] = max(values["preprocess (prepare)"], 0.0)
    rest = cpu - sum(values.values())
    for stage, seconds in [*values.items(), ("the rest (imports, argument parsing, batching, glue)", rest)]:
        print(f"  {stage:55s} {seconds:7.2f} s CPU  {100 * seconds / cpu:5.1f}%")
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(15)
    print("top functions by own time:\n" + "\n".join(buf.getvalue().splitlines()[6:24]))


def child_times(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU = user + sys) seconds of ``cmd``, its children included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def importtime_summary(stderr: str, top: int = 12) -> str:
    """``-X importtime`` output summarised: the top-level imports by cumulative time, packages by self time."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, name.strip(), int(self_us), int(cum_us)))
    total = sum(c for d, _, _, c in rows if d == 0)
    by_package: Counter[str] = Counter()
    for _d, name, self_us, _c in rows:
        by_package[name.split(".")[0]] += self_us
    lines = [f"imports: {total / 1000:.0f} ms in all (top-level cumulative)", "top-level imports (cumulative ms):"]
    lines += [f"  {c / 1000:7.1f}  {n}" for d, n, _, c in sorted((r for r in rows if r[0] == 0), key=lambda r: -r[3])[:top]]
    lines += ["packages (self ms, summed over their modules):"]
    lines += [f"  {us / 1000:7.1f}  {name}" for name, us in by_package.most_common(top)]
    return "\n".join(lines)


# Cumulative import sets of the `crnn ocr --backend onnx` path, each measured as CPU above `python -c pass`: what
# each step adds is what a lazy import of it would save when a run does not need it.
IMPORT_STEPS = [
    ("numpy", "import numpy"),
    ("+ onnxruntime", "import onnxruntime"),
    ("+ cv2", "import cv2"),
    ("+ PIL (Image, PngImagePlugin)", "import PIL.Image, PIL.PngImagePlugin"),
    ("+ multiprocessing, concurrent.futures.process", "import multiprocessing, concurrent.futures.process"),
    ("+ crnn's modules of the onnx path", "import crnn.commands.ocr, crnn.io.image_loader, crnn.reading.text_recognizer, "
                                          "crnn.reading.onnx_recognizer, crnn.reading.backend, crnn.checkpoints.header, "
                                          "crnn.output_files, crnn.decoding.lm_decode"),
    # Not imported by a plain `crnn ocr --backend onnx` (tests/test_onnx_backend.py checks it): what each would add.
    ("+ rapidfuzz (--lexicon only)", "import rapidfuzz.process, rapidfuzz.distance"),
    ("+ pydantic, crnn.config (never for plain inference)", "import crnn.config"),
    ("+ torch (--backend torch, --orientation)", "import torch"),
]


def import_costs(runs: int) -> None:
    """CPU seconds each cumulative import step adds (best of ``runs``)."""
    def best(code: str) -> float:
        return min(child_times([sys.executable, "-c", code])[1] for _ in range(runs))

    base = best("pass")
    print(f"imports, cumulative, CPU above `python -c pass` ({1000 * base:.0f} ms), best of {runs}:")
    code, previous = "", 0.0
    for label, step in IMPORT_STEPS:
        code = f"{code}; {step}" if code else step
        total = best(code) - base
        print(f"  {label:50s} +{1000 * max(total - previous, 0):5.0f} ms  (cumulative {1000 * total:5.0f} ms)")
        previous = total


def startup(one: Path, ocr_args: list[str], runs: int) -> None:
    """Wall and CPU seconds of `crnn ocr ONE OPTIONS` (best of ``runs``), and its import-time summary."""
    cmd = [sys.executable, "-m", "crnn.cli", "ocr", str(one), *ocr_args]
    base = min(child_times([sys.executable, "-c", "pass"]) for _ in range(runs))
    best = min(child_times(cmd) for _ in range(runs))
    print(f"start-up, `crnn ocr` on one image {' '.join(ocr_args)}: {best[0]:.2f} s wall, {best[1]:.2f} s CPU "
          f"(best of {runs}); `python -c pass`: {base[0]:.2f} s wall, {base[1]:.2f} s CPU")
    proc = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], capture_output=True, text=True, check=True)
    print(importtime_summary(proc.stderr))


def main(argv: list[str] | None = None) -> int:
    """Profile `crnn ocr` on FOLDER with the given options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--startup-runs", type=int, default=3)
    p.add_argument("--skip-whole", action="store_true", help="only the start-up measurements")
    p.add_argument("--imports", action="store_true", help="also the CPU cost of each import step of the onnx path")
    p.add_argument("--cprofile", action="store_true",
                   help="split the stages with cProfile (and list the top functions) instead of the CPU timers")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" goes to `crnn ocr` as is (argparse would take its options for ours).
    ocr_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.ocr_args = ocr_args
    print(f"options: {' '.join(args.ocr_args) or '(defaults)'}; load average {os.getloadavg()[0]:.1f}")
    one_dir = Path(tempfile.mkdtemp())
    first = next(q for q in sorted(args.folder.rglob("*")) if q.suffix.lower() in (".png", ".jpg", ".jpeg"))
    (one_dir / first.name).write_bytes(first.read_bytes())
    startup(one_dir / first.name, args.ocr_args, args.startup_runs)
    if args.imports:
        import_costs(max(args.startup_runs, 3))
    if not args.skip_whole:
        (profile_whole if args.cprofile else time_stages)(args.folder, args.ocr_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
