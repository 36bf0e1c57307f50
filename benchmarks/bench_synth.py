"""Images per second of the default synth_data pipeline on one core; optionally with a cProfile summary.

Usage: python benchmarks/bench_synth.py [--count 3000] [--height 32] [--profile] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crnn_synth_data import SynthConfig, WordRenderer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Time ``--count`` renders after a warm-up and print images/s (one process, one thread)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=1000, help="renders first, to fill the glyph caches")
    p.add_argument("--height", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    # One core: OpenCV's own thread pool would otherwise inflate the per-core figure.
    import cv2

    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    config = SynthConfig(height=args.height).with_overrides(args.set)
    t0 = time.perf_counter()
    renderer = WordRenderer(config)
    print(f"start-up: {time.perf_counter() - t0:.2f} s, {len(renderer.fonts.faces)} faces "
          f"in {len(renderer.fonts.families)} families")
    for i in range(args.warmup):
        renderer.render(args.seed + 1, i)
    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.count):
        renderer.render(args.seed, i)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if prof:
        prof.disable()
    # CPU time is the fairer figure on a shared machine: wall time also counts waiting for the core.
    print(f"{args.count / cpu:.0f} images/s per core of CPU time ({cpu / args.count * 1e3:.3f} ms per image), "
          f"{args.count / dt:.0f} images/s wall clock, height {args.height}"
          + (" [under cProfile: slower than real]" if prof else ""))
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
