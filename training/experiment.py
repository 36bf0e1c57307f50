"""Train the model set of issue 7 on one image budget: the CRNN recurrent-head ablation and the baseline.

Every run reads the same synthetic stream (seed 0, samples 0, 1, 2, ... rendered identically by both
trainers) and stops after the same number of word images, so differences come from the models alone.
Runs go into ``runs_dir/<slug>/`` (a run finished on the same image budget is kept and skipped next time); ``lanes``
of them run at once as subprocesses, each with its own log. A run folder that holds anything else (a run of another
budget, a failed or killed one, another trainer's run) is refused before any run starts, unless ``force``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crnn.errors import ConfigError, CRNNError
from crnn_training.run_folder import RUN_FILES, check_run_folder

DONE = "done.json"  # written when a run has finished; its presence skips the run


@dataclass(frozen=True)
class Run:
    """One model of the comparison: ``kind`` crnn (config overrides) or baseline."""

    slug: str
    label: str
    kind: str
    overrides: tuple[str, ...] = ()
    head: str = ""  # the recurrent head, for the ablation table


# In training order: the baseline (slowest data) and the runs the report leans on most come first.
RUNS: tuple[Run, ...] = (
    Run("baseline", "baseline", "baseline", (), "segmented characters: CNN per crop + BiLSTM"),
    Run("bilstm2", "CRNN", "crnn", (), "BiLSTM, 2 layers"),
    Run("birnn2", "CRNN BiRNN", "crnn", ("model.cell=rnn",), "BiRNN (tanh), 2 layers"),
    Run("none", "CRNN no RNN", "crnn", ("model.cell=none",), "none (CNN + linear)"),
    Run("lstm2-uni", "CRNN LSTM uni", "crnn", ("model.bidirectional=false",), "LSTM, 2 layers, unidirectional"),
    Run("bilstm1", "CRNN BiLSTM x1", "crnn", ("model.num_layers=1",), "BiLSTM, 1 layer"),
    Run("bigru2", "CRNN BiGRU", "crnn", ("model.cell=gru",), "BiGRU, 2 layers"),
)

# Issue 19's budget-matched model selection: the shipped `small` CRNN against the residual backbone, with
# and without global mixing blocks, and at 48 px (docs/models.md). Same head everywhere (the preset's BiLSTM);
# the slowest first, so that lanes finish together.
MODEL_RUNS: tuple[Run, ...] = (
    Run("resnet-mix2-h48", "CRNN resnet+mix2 48px", "crnn",
        ("model.backbone=resnet", "model.mixer_layers=2", "model.height=48"), "resnet backbone at 48 px, 2 mixing blocks, BiLSTM x2"),
    Run("resnet-mix2", "CRNN resnet+mix2", "crnn", ("model.backbone=resnet", "model.mixer_layers=2"),
        "resnet backbone, 2 mixing blocks, BiLSTM x2"),
    Run("resnet", "CRNN resnet", "crnn", ("model.backbone=resnet",), "resnet backbone, BiLSTM x2"),
    Run("small", "CRNN small", "crnn", (), "small VGG backbone, BiLSTM x2"),
    Run("resnet-dw", "CRNN resnet-dw", "crnn", ("model.backbone=resnet_dw",), "depthwise-separable resnet, BiLSTM x2"),
)
# Issue 20's comparison (docs/attention.md): the same encoder read by CTC, by the attention decoder (teacher forced,
# and with a quarter of the steps free-running against exposure bias), and by CTC guided by the attention head (GTC).
DECODER_RUNS: tuple[Run, ...] = (
    Run("attention", "attention", "crnn", ("decoder.type=attention",), "attention decoder, teacher forced"),
    Run("attention-ss25", "attention SS 0.25", "crnn", ("decoder.type=attention", "decoder.free_running=0.25"),
        "attention decoder, scheduled sampling 0.25"),
    Run("gtc", "CTC + GTC", "crnn", ("decoder.aux_attention_weight=1.0",), "CTC guided by an attention head (dropped)"),
    Run("ctc", "CTC", "crnn", (), "CTC"),
)
RUN_SETS: dict[str, tuple[Run, ...]] = {"heads": RUNS, "models": MODEL_RUNS, "decoders": DECODER_RUNS}


def steps_for(images: int, batch_size: int) -> int:
    """Training steps that see ``images`` word images at ``batch_size`` (at least 1)."""
    return max(1, math.ceil(images / batch_size))


def run_command(run: Run, out: Path, config: str, images: int, batch_size: int, device: str, workers: int,
                threads: int, synth: dict[str, Any], extra: list[str], val_size: int = 1000) -> list[str]:
    """The command line that trains ``run`` into ``out`` for ``images`` word images."""
    steps = steps_for(images, batch_size)
    if run.kind == "baseline":
        return [sys.executable, "-m", "crnn_training.train_baseline", "--out", str(out), "--force", "--minutes", "0",
                "--max-steps", str(steps), "--batch-size", str(batch_size), "--seed", "0", "--val-size", str(val_size),
                "--eval-every", "1e9", "--eval-every-steps", str(math.ceil(steps / 2)), "--workers", str(workers), "--threads", str(threads), "--device", device,
                "--synth", json.dumps(synth)]
    synth_args = [f"synth.{k}={json.dumps(v)}" for k, v in synth.items()]
    # --force: train_all has checked the folder itself, and writes train.out there first.
    return [sys.executable, "-m", "crnn_training.train", "--force", "--config", config, f"out_dir={out}", "seed=0",
            f"train.max_steps={steps}", "train.max_minutes=0", f"train.eval_every={max(1, math.ceil(steps / 2))}",
            f"train.device={device}", f"data.num_workers={workers}", f"train.threads={threads}",
            f"val.synth_size={val_size}",
            *synth_args, *run.overrides, *extra]


def train_all(runs_dir: str | Path, images: int, *, config: str = "configs/compare.yaml", lanes: int = 1,
              device: str = "auto", workers: int = 1, threads: int = 1, synth: dict[str, Any] | None = None,
              extra: list[str] | None = None, val_size: int = 1000, runs: tuple[Run, ...] = RUNS,
              force: bool = False) -> dict[str, Path]:
    """Train every run (``lanes`` at once) for ``images`` images each; {label: best checkpoint} of those that finished.

    Runs already finished on ``images`` images are kept; a run folder that holds anything else is refused
    (OutputPathError, before any run starts) unless ``force``, which retrains it.
    """
    from crnn.config import apply_overrides, load_yaml
    from crnn_training.config import TrainConfig

    if images <= 0:
        raise ConfigError(f"the image budget must be positive, got {images}")
    config = str(Path(config).resolve())  # the runs start in the repository root
    data = apply_overrides(load_yaml(config), list(extra or []))
    batch_size = TrainConfig.from_dict(data).data.batch_size  # validated here, before any run starts
    # The baseline reads the renderer settings the CRNN runs get (the preset's synth section + overrides):
    # the same stream for both.
    overrides = dict(synth or {})
    baseline_synth = {**data.get("synth", {}), **overrides}
    root = Path(runs_dir).resolve()
    check_run_folder(root, option="--runs-dir", writes=())  # a folder (or one to make), writable
    kept = {run.slug for run in runs if finished_on(root / run.slug, images)}
    for run in runs:
        if run.slug not in kept:
            check_run_folder(root / run.slug, option="run folder", writes=RUN_FILES, force=force)
    root.mkdir(parents=True, exist_ok=True)

    def one(run: Run) -> tuple[Run, Path | None]:
        out = root / run.slug
        done = out / DONE
        if run.slug in kept:
            print(f"[experiment] {run.slug}: already trained on {images:,} images, kept", file=sys.stderr)
            return run, out / "best.safetensors"
        out.mkdir(parents=True, exist_ok=True)
        done.unlink(missing_ok=True)  # --force: the old run's mark goes first, so a failed retraining has none
        cmd = run_command(run, out, config, images, batch_size, device, workers, threads,
                          baseline_synth if run.kind == "baseline" else overrides, list(extra or []), val_size)
        print(f"[experiment] {run.slug}: training on {images:,} images ({out}/train.out)", file=sys.stderr)
        t0 = time.time()
        with open(out / "train.out", "w", encoding="utf-8") as log:
            log.write(" ".join(cmd) + "\n")
            log.flush()
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent).returncode
        best = out / "best.safetensors"
        if rc != 0 or not best.is_file():
            print(f"[experiment] {run.slug}: FAILED (exit {rc}); see {out}/train.out", file=sys.stderr)
            return run, None
        done.write_text(json.dumps({"images": images, "seconds": round(time.time() - t0, 1), "command": cmd}))
        print(f"[experiment] {run.slug}: done in {time.time() - t0:.0f}s", file=sys.stderr)
        return run, best

    with ThreadPoolExecutor(max_workers=max(1, lanes)) as pool:
        results = list(pool.map(one, runs))
    return {run.label: path for run, path in results if path is not None}


def finished_on(out: Path, images: int) -> bool:
    """Whether ``out`` holds a run that finished on ``images`` word images (its done.json says so)."""
    try:
        return json.loads((out / DONE).read_text()).get("images") == images
    except (OSError, ValueError, AttributeError):  # none, unreadable, or not the JSON object train_all writes
        return False


def main(argv: list[str] | None = None) -> int:
    """``python -m crnn_training.experiment``: train the set only (``crnn compare --train-images`` also reports)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m crnn_training.experiment", description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", default="runs/compare")
    p.add_argument("--images", type=int, required=True, help="word images each model trains on")
    p.add_argument("--config", default="configs/compare.yaml", help="the CRNN runs' preset")
    p.add_argument("--lanes", type=int, default=1, help="runs trained at once")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1, help="rendering workers per run")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--synth", default="{}", metavar="JSON", help="renderer overrides for every run")
    p.add_argument("--set", choices=sorted(RUN_SETS), default="heads",
                   help="heads: issue 7's recurrent-head ablation and baseline; models: issue 19's backbones; "
                   "decoders: issue 20's CTC vs attention decoder vs GTC")
    p.add_argument("--only", default="", help="comma-separated run slugs (default: all of the set)")
    p.add_argument("--force", action="store_true", help="retrain run folders that hold a run not finished on this "
                   "--images budget (without it they are refused)")
    args, extra = p.parse_known_args(argv)
    runs = tuple(r for r in RUN_SETS[args.set] if not args.only or r.slug in args.only.split(","))
    try:
        done = train_all(args.runs_dir, args.images, config=args.config, lanes=args.lanes, device=args.device,
                         workers=args.workers, threads=args.threads, synth=json.loads(args.synth), extra=extra,
                         val_size=args.val_size, runs=runs, force=args.force)
    except CRNNError as e:
        print(f"python -m crnn_training.experiment: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: str(v) for k, v in done.items()}))
    return 0 if len(done) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
