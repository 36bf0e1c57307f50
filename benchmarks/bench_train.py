"""Training throughput on this machine for each speed option (not a test): python benchmarks/bench_train.py.

Each variant is a short real run of ``crnn_training.train`` (renderer in DataLoader workers, the real loop);
images/s is the mean over the logging windows after the first (start-up excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from crnn.machine import cpu_cores

REPO = Path(__file__).resolve().parent.parent

VARIANTS: dict[str, list[str]] = {
    "1 worker + 1 thread": ["data.num_workers=1", "train.threads=1"],
    "1 worker + 2 threads": ["data.num_workers=1", "train.threads=2"],
    "0 workers (render in the trainer) + 2 threads": ["data.num_workers=0", "train.threads=2"],
    "1 worker + 1 thread + bf16 autocast": ["data.num_workers=1", "train.threads=1", "train.amp=bf16"],
    "1 worker + 2 threads + bf16 autocast": ["data.num_workers=1", "train.threads=2", "train.amp=bf16"],
    "0 workers + 2 threads + bf16 autocast": ["data.num_workers=0", "train.threads=2", "train.amp=bf16"],
    "1 worker + 2 threads + channels_last": ["data.num_workers=1", "train.threads=2", "train.channels_last=true"],
    "1 worker + 2 threads + bf16 + channels_last": ["data.num_workers=1", "train.threads=2", "train.amp=bf16",
                                                    "train.channels_last=true"],
}


def run(config: str, extra: list[str], steps: int, log_every: int) -> float:
    """Mean images/s of one short run."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "crnn_training.train", "--config", config, f"out_dir={out}",
               f"train.max_steps={steps}", f"train.log_every={log_every}", "train.eval_every=1000000",
               "val.synth_size=64", "train.max_minutes=0", "train.tensorboard=false", "train.progress=off", *extra]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        recs = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
        rates = [r["images_per_s"] for r in recs if r["kind"] == "train"][1:]
        return sum(rates) / len(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default="configs/cpu-small.yaml")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--only", nargs="*", help="variant names to run (default all)")
    p.add_argument("extra", nargs="*", help="overrides for every variant, e.g. data.batch_size=32")
    args = p.parse_args()
    print(f"config {args.config}, {args.steps} steps, cores {cpu_cores()}, {args.repeat} rounds")
    names = [n for n in VARIANTS if not args.only or n in args.only]
    results: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.repeat):  # rounds interleave the variants, so a busy spell on the machine hits all alike
        for name in names:
            results[name].append(run(args.config, [*args.extra, *VARIANTS[name]], args.steps, args.log_every))
            print(f"  {name}: {results[name][-1]:.1f} img/s", file=sys.stderr, flush=True)
    for name, rates in results.items():
        print(f"{name:<48} {max(rates):8.1f} img/s (best of {', '.join(f'{r:.1f}' for r in rates)})")


if __name__ == "__main__":
    main()
