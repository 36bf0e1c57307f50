"""Training speed against the CPU's ceiling (not a test): python benchmarks/bench_train_ceiling.py [--rounds 2].

For each case (a training config plus overrides) and each precision (bf16 autocast, fp32), in one run:

* the **ceiling**: the config's own model, optimiser, clipping and autocast (``CTCTask.train_step``, the real step)
  on fixed batches held in memory, every core training, no data work: (a) random images of ``batch_size`` x 32 x 128
  (issue 31's definition) and (b) the run's own first batches (its width buckets and padding), cycled;
* the **real run**: ``crnn train`` of that config for ``--steps`` steps; images/s over the logging windows after the
  first (start-up and evaluation excluded);
* their ratio, and the padding the run's width-bucketed batches carry (share of padded pixels, with and without
  bucketing);
* the run's own batches with every width set to the padded width (the LSTM unpacked, as ``data.equal_widths`` makes
  it), timed alone and interleaved pair by pair with the packed ones (the speed-up a shifting load cannot bias).

``--no-real`` skips the real runs; ``--stretch-of CONFIG`` only prints how much ``data.equal_widths`` stretches the
images of CONFIG's stream (docs/training.md, "Equal-width batches").

Cases and precisions are interleaved and repeated (``--rounds``); medians are printed. Timings on a shared machine are
noisy: say so when quoting them. Cached cases need their LMDB: rendered once into ``--cache`` (``crnn train-cache``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ["model.backbone=small", "model.hidden_size=256", "model.num_layers=2"]
RESNET = ["model.backbone=resnet", "model.hidden_size=256", "model.num_layers=2"]
CACHED = "data.sources=[{type: lmdb, path: CACHE, weight: 0.9}, {type: synth, weight: 0.1}]"  # the configs' mix
# label -> (config, overrides); CACHE is replaced by --cache. "today": configs/cpu-small.yaml's loop as it is.
CASES: dict[str, tuple[str, list[str]]] = {
    "small today": ("configs/cpu-small.yaml", SHIPPED),
    "small cached": ("configs/cpu-cached.yaml", [CACHED]),
    "resnet today": ("configs/cpu-small.yaml", RESNET),
    "resnet cached": ("configs/cpu-resnet-cached.yaml", [CACHED]),
    # data.equal_widths: every batch of one width (images stretched to it), the recurrent layers run unpacked.
    "small equal": ("configs/cpu-cached.yaml", [CACHED, "data.equal_widths=true"]),
    "resnet equal": ("configs/cpu-resnet-cached.yaml", [CACHED, "data.equal_widths=true"]),
}
AMPS = {"bf16": "train.amp=bf16", "fp32": "train.amp=off"}


def host() -> str:
    """The CPU model, core count and the bf16/AMX flags (quoted with every figure)."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), []))
    import torch

    return (f"{model}, {os.cpu_count()} cores, flags {' '.join(sorted(f for f in flags if 'bf16' in f or 'amx' in f))}"
            f", torch {torch.__version__}")


# ---------------------------------------------------------------------------------------------
# The ceiling (run in a child process: fresh threads and the same environment as a real run)
# ---------------------------------------------------------------------------------------------


def ceiling(config_path: str, overrides: list[str], seconds: float, held: int) -> dict[str, Any]:
    """Images/s of the real training step on fixed batches (random 32x128, and the run's own first ``held``)."""
    import numpy as np
    import torch

    from crnn.charset import Charset
    from crnn.machine import cpu_cores
    from crnn_training.config import TrainConfig, default_charset, resolve_renderer
    from crnn_training.data import BatchStream, build_sources, single_threaded_cv2
    from crnn_training.loop import TrainState
    from crnn_training.objectives import build_network, trained_module
    from crnn_training.train import CTCTask, amp_dtype, make_optimizer

    config = TrainConfig.from_yaml(config_path, overrides)
    torch.set_num_threads(config.train.threads or cpu_cores())
    single_threaded_cv2()
    device = torch.device("cpu")
    charset = Charset(default_charset(config))
    resolve_renderer(config, charset.chars)
    preprocess = config.data.preprocess(config.model.height)
    torch.manual_seed(0)
    model = build_network(config, charset).to(device)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trained = trained_module(config, model)
    optimizer = make_optimizer(trained, config)
    dtype = amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    task = CTCTask(config, model, charset, preprocess, device, dtype, optimizer, scaler, 1, 0, 0, torch.get_num_threads())
    if config.train.compile:
        task.train_model = torch.compile(task.train_model, dynamic=True)
    task.train_model.train()
    b = config.data.batch_size
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 11, (b,), generator=g)
    fixed = {"images": torch.rand(b, 1, config.model.height, 128, generator=g) * 2 - 1,
             "widths": torch.full((b,), 128), "targets": torch.randint(1, charset.num_classes, (int(lengths.sum()),),
                                                                       generator=g),
             "target_lengths": lengths, "texts": ["x"] * b, "bad": 0, "too_long": 0}
    stream = BatchStream(build_sources(config, charset, config.seed), [s.weight for s in config.data.sources], charset,
                         preprocess, b, config.data.pool_batches, config.seed, equal_widths=config.data.equal_widths)
    own: list[dict[str, Any]] = []
    pool = 0
    while len(own) < held:
        own += [x for x in stream.make_pool(pool) if x["texts"]]
        pool += 1
    own = own[:held]
    widths = np.concatenate([x["widths"].numpy() for x in own])
    padded = sum(x["images"].shape[0] * x["images"].shape[-1] for x in own)
    # The same samples without bucketing: batches in drawing order, each padded to its widest (8-px buckets).
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(widths)
    unbucketed = sum(len(c) * (-(-int(c.max()) // 8) * 8) for c in np.array_split(shuffled, len(own)))

    def rate(batches: list[dict[str, Any]]) -> float:
        state = TrainState(total_steps=10**6, counters={"too_long": 0, "bad": 0, "nonfinite": 0})
        for i in range(max(3, len(batches))):  # warm-up: allocator, oneDNN kernels for every shape, compile
            task.train_step(batches[i % len(batches)], state)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 5:
            n += task.train_step(batches[state.step % len(batches)], state)
            state.step += 1
        return n / (time.perf_counter() - t0)

    # The same batches with every width set to the batch's padded width: the LSTM runs unpacked (one fused call)
    # instead of on a PackedSequence, which is how the real step differs from the 32x128 ceiling's.
    unpacked = [{**x, "widths": torch.full_like(x["widths"], x["images"].shape[-1])} for x in own]

    def speedup(passes: int = 2) -> float:
        """Median over the own batches of (packed step time / unpacked step time), each pair run back to back in
        alternating order: robust to a shared host's load, which shifts between the separately timed rates."""
        state = TrainState(total_steps=10**6, counters={"too_long": 0, "bad": 0, "nonfinite": 0})
        ratios = []
        for i in range(passes * len(own)):
            pair = [own[i % len(own)], unpacked[i % len(own)]]
            times = []
            for batch in pair if i % 2 == 0 else pair[::-1]:
                t0 = time.perf_counter()
                task.train_step(batch, state)
                times.append(time.perf_counter() - t0)
            packed_t, unpacked_t = times if i % 2 == 0 else times[::-1]
            ratios.append(packed_t / unpacked_t)
        return float(statistics.median(ratios))

    own_rate, unpacked_rate = rate(own), rate(unpacked)
    return {"fixed_128": rate([fixed]), "own_batches": own_rate, "own_unpacked": unpacked_rate,
            "unpacked_speedup": speedup(),
            "threads": torch.get_num_threads(),
            "amp": str(dtype), "pad_bucketed": 1 - widths.sum() / padded, "pad_unbucketed": 1 - widths.sum() / unbucketed,
            "mean_width": float(widths.mean())}


def stretch(config_path: str, overrides: list[str], samples: int) -> dict[str, Any]:
    """How much ``data.equal_widths`` stretches the config's stream: each image's batch width over its own width."""
    import numpy as np

    from crnn.charset import Charset
    from crnn_training.config import TrainConfig, default_charset, resolve_renderer
    from crnn_training.data import BatchStream, build_sources, single_threaded_cv2

    config = TrainConfig.from_yaml(config_path, overrides)
    single_threaded_cv2()
    charset = Charset(default_charset(config))
    resolve_renderer(config, charset.chars)
    stream = BatchStream(build_sources(config, charset, config.seed), [s.weight for s in config.data.sources], charset,
                         config.data.preprocess(config.model.height), config.data.batch_size, config.data.pool_batches,
                         config.seed)
    ratios: list[np.ndarray] = []
    pool = 0
    while sum(len(r) for r in ratios) < samples:
        ratios += [x["images"].shape[-1] / x["widths"].numpy() for x in stream.make_pool(pool) if x["texts"]]
        pool += 1
    r = np.concatenate(ratios)
    return {"samples": len(r), "pools": pool, "mean": float(r.mean()), "median": float(np.median(r)),
            "p90": float(np.percentile(r, 90)), "p99": float(np.percentile(r, 99)), "max": float(r.max()),
            "share_stretched": float((r > 1).mean()), "share_over_1.25": float((r > 1.25).mean())}


def run_ceiling(config: str, overrides: list[str], seconds: float, held: int, env: dict[str, str]) -> dict[str, Any]:
    """:func:`ceiling` in a child process."""
    cmd = [sys.executable, __file__, "--ceiling-of", config, "--seconds", str(seconds), "--held", str(held), *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# The real run
# ---------------------------------------------------------------------------------------------


def real_run(config: str, overrides: list[str], steps: int, log_every: int, env: dict[str, str],
             root: Path = REPO) -> dict[str, Any]:
    """``crnn train`` of the code in ``root`` for ``steps`` steps: images/s over the windows after the first, and the
    data wait."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "crnn_training.train", "--config", config, f"out_dir={out}", "--force",
               f"train.max_steps={steps}", f"train.log_every={log_every}", "train.eval_every=1000000",
               "val.synth_size=64", "train.max_minutes=0", "train.tensorboard=false", "train.progress=off",
               *overrides]
        if root != REPO:  # another checkout (today's code): its own packages, and its crnn_training mapped to it
            env = {**env, "PYTHONPATH": f"{root}{os.pathsep}{root / '.pyshim'}"}
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        setup = next((line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("[setup] device")), "")
        recs = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in recs if r["kind"] == "train"]
        images = seconds = wait = 0.0
        for prev, r in zip(train, train[1:]):  # the first window holds start-up
            dt = (r["step"] - prev["step"]) * r["sec_per_step"]
            images += r["images_per_s"] * dt
            seconds += dt
            wait += r["data_wait_frac"] * dt
        return {"img_s": images / seconds, "wait": wait / seconds, "setup": setup}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=200, help="steps of each real run")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--seconds", type=float, default=15.0, help="timed seconds of each ceiling")
    p.add_argument("--held", type=int, default=16, help="the run's own batches the second ceiling cycles through")
    p.add_argument("--only", nargs="*", help=f"cases to run (default all: {', '.join(CASES)})")
    p.add_argument("--amp", nargs="*", default=list(AMPS), choices=list(AMPS))
    p.add_argument("--cache", default="data/bench-cache.lmdb", help="the cached cases' LMDB (rendered if missing)")
    p.add_argument("--cache-count", type=int, default=8000)
    p.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE", help="environment of every child process")
    p.add_argument("--variant", nargs="*", default=[], metavar="LABEL:NAME=VALUE,...",
                   help="also run every case with this environment (e.g. passive:OMP_WAIT_POLICY=PASSIVE), interleaved")
    p.add_argument("--today-root", type=Path, default=REPO,
                   help="a checkout of the code before this change: the 'today' cases' real runs use it (with a "
                   ".pyshim folder mapping crnn_training, crnn_synth_data to its folders); default this checkout")
    p.add_argument("--stretch-of", metavar="CONFIG", help="only print how much data.equal_widths stretches the images "
                   "of CONFIG's stream (batch width / own width over --stretch-samples samples) and exit")
    p.add_argument("--stretch-samples", type=int, default=4096)
    p.add_argument("--no-real", action="store_true", help="ceilings only (no real runs)")
    p.add_argument("--ceiling-of", help=argparse.SUPPRESS)
    p.add_argument("extra", nargs="*", help="overrides for every case, e.g. train.channels_last=true")
    args = p.parse_args()
    if args.ceiling_of:
        print(json.dumps(ceiling(args.ceiling_of, args.extra, args.seconds, args.held)))
        return
    if args.stretch_of:
        print(json.dumps(stretch(args.stretch_of, args.extra, args.stretch_samples)))
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           **dict(e.split("=", 1) for e in args.env)}
    names = [n for n in CASES if not args.only or n in args.only]
    if any("CACHE" in o for n in names for o in CASES[n][1]) and not Path(args.cache).exists():
        Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "crnn_training.cache", "--config", "configs/cpu-cached.yaml",
                        "--count", str(args.cache_count), CACHED.replace("CACHE", args.cache)],
                       cwd=REPO, env=env, check=True)
    print(f"host: {host()}; {args.rounds} rounds, real runs of {args.steps} steps; env {' '.join(args.env) or '-'}; "
          f"extra {' '.join(args.extra) or '-'}", flush=True)
    envs = {"": env}
    for v in args.variant:
        label, _, pairs = v.partition(":")
        envs[f" {label}"] = {**env, **dict(e.split("=", 1) for e in pairs.split(","))}
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in range(args.rounds):  # rounds interleave everything, so a busy spell on the shared machine hits all alike
        for name in names:
            for amp in args.amp:
                for label, child_env in envs.items():
                    config, over = CASES[name]
                    over = [o.replace("CACHE", args.cache) for o in over] + [AMPS[amp], *args.extra]
                    # The ceiling is the best pure compute: idle OpenMP threads sleep (a busy shared host otherwise
                    # collapses two spinning threads; crnn train sets the same).
                    c = run_ceiling(config, over, args.seconds, args.held, {"OMP_WAIT_POLICY": "PASSIVE", **child_env})
                    root = args.today_root if name.endswith("today") else REPO
                    real = ({"img_s": float("nan"), "wait": float("nan"), "setup": "no real run"} if args.no_real
                            else real_run(config, over, args.steps, args.log_every, child_env, root))
                    results.setdefault((name + label, amp), []).append({**c, **real})
                    print(f"  round {r + 1} {name}{label} {amp}: ceiling {c['fixed_128']:.0f} (own batches "
                          f"{c['own_batches']:.0f}, unpacked {c['own_unpacked']:.0f}, interleaved unpacked speed-up "
                          f"{c['unpacked_speedup']:.2f}x) real {real['img_s']:.0f} img/s, "
                          f"wait {100 * real['wait']:.0f}%; "
                          f"{real['setup']}", file=sys.stderr, flush=True)
    print(f"\n{'case':<22} {'amp':<5} {'ceiling 32x128':>14} {'ceiling own':>11} {'own unpacked':>12} {'real':>6} "
          f"{'ratio':>6} "
          f"{'ratio own':>9} {'wait':>5} {'pad':>5} {'pad unbucketed':>14} {'real range':>10} {'unpacked x':>10} "
          f"{'(range)':>11}")
    for (name, amp), rows in results.items():
        med = {k: statistics.median(row[k] for row in rows) for k in
               ("fixed_128", "own_batches", "own_unpacked", "unpacked_speedup", "img_s", "wait", "pad_bucketed",
                "pad_unbucketed")}
        print(f"{name:<22} {amp:<5} {med['fixed_128']:14.0f} {med['own_batches']:11.0f} {med['own_unpacked']:12.0f} "
              f"{med['img_s']:6.0f} "
              f"{med['img_s'] / med['fixed_128']:6.0%} {med['img_s'] / med['own_batches']:9.0%} {med['wait']:5.0%} "
              f"{med['pad_bucketed']:5.0%} {med['pad_unbucketed']:14.0%} "
              f"{min(row['img_s'] for row in rows):4.0f}-{max(row['img_s'] for row in rows):<5.0f} "
              f"{med['unpacked_speedup']:10.2f} {min(row['unpacked_speedup'] for row in rows):5.2f}-"
              f"{max(row['unpacked_speedup'] for row in rows):<5.2f}")
    print("(medians over the rounds; images/s; the machine is shared with other work, so figures are noisy)")


if __name__ == "__main__":
    main()
