"""Train a CRNN with CTC: ``crnn train --config FILE.yaml [key=value ...]`` or ``python -m crnn_training.train``.

One loop for CPU, one GPU and torchrun/DDP. Read top to bottom: setup, data, the step, evaluation,
checkpoints. Outputs in ``out_dir``: best.safetensors (fp16), last.pt (resume state), metrics.jsonl,
config.yaml, TensorBoard events (tb/) and curves.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from crnn.charset import Charset
from crnn.checkpoint import load_checkpoint, save_checkpoint
from crnn.errors import ConfigError, CRNNError
from crnn.machine import cpu_cores
from crnn.model import CRNN, ModelConfig, count_parameters
from crnn.preprocess import PreprocessConfig
from crnn_training.config import TrainConfig, config_from_dict, default_charset, load_config, save_yaml
from crnn_training.data import (BatchStream, build_sources, load_labeled_arrays, make_loader, render_synth_val,
                           report_problems, single_threaded_cv2, stop_all_streams)
from crnn_training.evaluate import predict_texts
from crnn.metrics import compute_metrics

START = time.time()  # the time budget counts from process start-up, imports included


# ---------------------------------------------------------------------------------------------
# Setup helpers
# ---------------------------------------------------------------------------------------------


def auto_threads(config: TrainConfig, device: torch.device, local_world: int) -> tuple[int, int]:
    """(data workers, trainer threads) that together do not oversubscribe the cores.

    On CPU the renderer and the trainer share the cores; oversubscription is very costly (measured
    here: 8 img/s with 2 trainer threads beside a busy worker on 2 cores, 56 img/s with 1).
    """
    cores = max(1, cpu_cores() // local_world)
    workers = config.data.num_workers
    if device.type == "cuda":
        workers = max(1, cores - 1) if workers < 0 else workers
        threads = config.train.threads or max(1, min(4, cores - workers))
    else:
        workers = max(1, cores // 2) if workers < 0 else workers
        threads = config.train.threads or max(1, cores - workers)
    return workers, threads


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 on CUDA by default; bf16 on CPU only when asked."""
    amp = config.train.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def lr_factor(step: int, total: int, config: TrainConfig) -> tuple[float, float | None]:
    """(lr multiplier, AdamW beta1 or None) at ``step`` of ``total``: warm-up then the schedule."""
    o = config.optim
    warm = max(1, min(o.warmup_steps, total // 5))
    if o.schedule == "constant":
        return min(1.0, (step + 1) / warm), None
    if step < warm:
        t = (step + 1) / warm
        if o.schedule == "onecycle":  # cosine rise from lr/25, momentum falls as the lr rises
            f = 1 / 25 + (1 - 1 / 25) * 0.5 * (1 - math.cos(math.pi * t))
            return f, 0.95 - 0.10 * (f - 1 / 25) / (1 - 1 / 25)
        return t, None
    p = min(1.0, (step - warm) / max(1, total - warm))
    f = o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return f, (0.85 + 0.10 * p if o.schedule == "onecycle" else None)


def smoke_test(model: CRNN, device: torch.device, dtype: torch.dtype | None, config: TrainConfig) -> torch.dtype | None:
    """One forward/backward of a dummy batch under autocast; on failure fall back to fp32 instead of dying.

    A GPU run is precious: a mixed-precision problem (e.g. a cuDNN LSTM kernel missing for a dtype) costs
    speed, not the run. Weights and batch-norm statistics are restored afterwards.
    """
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    images = torch.zeros(4, 1, 32, 128, device=device)
    lengths = torch.tensor([32, 30, 20, 8])
    try:
        with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            out = model(images.contiguous(memory_format=torch.channels_last) if config.train.channels_last else images, lengths)
        out.float().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as e:  # any failure here means: train without autocast
        print(f"[setup] autocast {dtype} failed on {device} ({type(e).__name__}: {e}); training in fp32", file=sys.stderr)
        dtype = None
    model.zero_grad(set_to_none=True)
    model.load_state_dict(saved)
    return dtype


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (no weight decay on biases and norms) or the paper's Adadelta."""
    o = config.optim
    if o.name == "adadelta":
        return torch.optim.Adadelta(model.parameters(), lr=o.lr, rho=o.rho, eps=o.eps, weight_decay=o.weight_decay)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)


def init_from(path: str, config: TrainConfig) -> tuple[CRNN, Charset]:
    """A model started from a checkpoint's weights; with a new charset old rows are kept, new ones fresh."""
    ckpt = load_checkpoint(path)
    old_cs = ckpt.charset
    charset = Charset(config.charset) if config.charset is not None else old_cs
    arch = ckpt.model.config.to_dict()
    mine = {k: v for k, v in dataclass_dict(config.model).items() if k != "dropout"}
    if any(arch[k] != v for k, v in mine.items()):
        print(f"[init] using the architecture of {path}: {arch} (config's model section ignored)", file=sys.stderr)
    for k in mine:
        setattr(config.model, k, arch[k])
    model = CRNN(ModelConfig(**{**arch, "num_classes": charset.num_classes, "dropout": config.model.dropout}))
    state = ckpt.model.state_dict()
    if charset != old_cs:
        new_w, new_b = model.classifier.weight.detach().clone(), model.classifier.bias.detach().clone()
        old_w, old_b = state["classifier.weight"], state["classifier.bias"]
        shared = [c for c in charset.chars if c in old_cs]
        new_idx = [0] + charset.subset_indices(shared)  # the blank row is always carried over
        old_idx = [0] + old_cs.subset_indices(shared)
        new_w[new_idx], new_b[new_idx] = old_w[old_idx], old_b[old_idx]
        state["classifier.weight"], state["classifier.bias"] = new_w, new_b
        print(f"[init] charset changed: {len(shared)} characters kept, "
              f"{charset.num_classes - 1 - len(shared)} new output rows initialised", file=sys.stderr)
    model.load_state_dict(state)
    return model, charset


def dataclass_dict(obj: Any) -> dict[str, Any]:
    """Fields of a dataclass instance as a dict."""
    import dataclasses

    return dataclasses.asdict(obj)


def git_commit() -> str | None:
    """The checkout's commit, if git knows one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def pick_device(want: str, local_rank: int | None = None) -> torch.device:
    """The training device for ``want`` (auto | cpu | cuda | cuda:N); ``local_rank`` picks the GPU under torchrun.

    On CUDA it is made current (set_device and DDP need an explicit index) and TF32 is allowed for the
    fp32 parts outside autocast.
    """
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {want!r} asked for, but CUDA is not available")
    device = torch.device(f"cuda:{local_rank}" if want == "cuda" and local_rank is not None else want)
    if device.type == "cuda":
        device = torch.device("cuda", device.index or 0)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def hardware(device: torch.device, world: int, workers: int, threads: int) -> dict[str, Any]:
    """A description of the machine, stored in checkpoints."""
    hw: dict[str, Any] = {"device": str(device), "cpu_cores": cpu_cores(), "world_size": world,
                          "data_workers": workers, "torch_threads": threads, "torch": torch.__version__,
                          "python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
    return hw


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file, then rename: a kill never leaves a half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """Every RNG the trainer draws from, as plain containers (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(int, np_state[2:4]), float(np_state[4])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    seq, version, gauss = state["python"]
    random.setstate((version, tuple(seq), gauss))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricLog:
    """metrics.jsonl plus TensorBoard (when installed); only rank 0 has one."""

    def __init__(self, out: Path, resume_step: int | None, tensorboard: bool) -> None:
        self.path = out / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            # Records past the resumed step belong to the lost part of the killed run.
            keep = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in keep))
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"))
            except Exception:  # tensorboard not installed: the JSONL file is enough
                self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and mirror its numbers to TensorBoard."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"{record['kind']}/{k}", v, record["step"])

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments of ``crnn train``."""
    p = argparse.ArgumentParser(prog="crnn train", description="Train a CRNN (CTC) on synthetic and labeled data.")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from RUN_DIR/last.pt")
    p.add_argument("--init-from", metavar="CHECKPOINT", help="start from a checkpoint's weights (fine-tuning)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=100")
    return p.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    """``crnn train``: exit code 0 on success, 2 on a configuration or checkpoint error."""
    args = parse_args(argv)
    try:
        return train(args)
    except CRNNError as e:
        print(f"crnn train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crnn train: interrupted (resume with --resume RUN_DIR)", file=sys.stderr)
        return 130
    finally:
        stop_all_streams()  # data workers stop rendering, so shutting them down is quick


def train(args: argparse.Namespace) -> int:
    """Set up, run the loop, evaluate, save; see the module docstring."""
    # --- config, distributed, device ---------------------------------------------------------
    state: dict[str, Any] | None = None
    if args.resume:
        run = Path(args.resume)
        if not (run / "last.pt").is_file() or not (run / "config.yaml").is_file():
            raise ConfigError(f"{run}: no last.pt and config.yaml to resume from")
        from crnn_training.config import apply_overrides

        config = config_from_dict(apply_overrides(yaml.safe_load((run / "config.yaml").read_text()), args.overrides))
        config.out_dir = str(run)
        state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    else:
        config = load_config(args.config, args.overrides)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = pick_device(config.train.device, local_rank if world > 1 else None)
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    workers, threads = auto_threads(config, device, local_world)
    torch.set_num_threads(threads)
    single_threaded_cv2()  # before the first cv2 call and before any data worker forks
    dtype = amp_dtype(config, device)
    t = config.train
    out = Path(config.out_dir)

    def log(msg: str) -> None:
        if master:
            (bar.write if bar is not None else print)(msg)

    bar = None

    # --- model, charset, optimiser -------------------------------------------------------------
    torch.manual_seed(config.seed)
    if state is not None:
        charset = Charset(state["charset"])
        model = CRNN(ModelConfig(num_classes=charset.num_classes, **dataclass_dict(config.model)))
        model.load_state_dict(state["model"])
    elif args.init_from:
        model, charset = init_from(args.init_from, config)
    else:
        charset = Charset(default_charset(config))
        model = CRNN(ModelConfig(num_classes=charset.num_classes, **dataclass_dict(config.model)))
    config.charset = charset.chars
    preprocess = PreprocessConfig(min_width=config.data.min_width, max_width=config.data.max_width)
    model.to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    if device.type == "cuda" and dtype is not None:
        dtype = smoke_test(model, device, dtype, config)
    scaler = (torch.amp.GradScaler(device.type, enabled=dtype == torch.float16) if hasattr(torch.amp, "GradScaler")
              else torch.cuda.amp.GradScaler(enabled=dtype == torch.float16))  # torch < 2.3
    step, images_seen, total_steps = 0, 0, t.max_steps
    best = {"value": None, "step": None, "metrics": {}, "bad_evals": 0}
    counters = {"too_long": 0, "bad": 0, "nonfinite": 0}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, images_seen = state["step"], state["images_seen"]
        total_steps = min(state["schedule"]["total_steps"], t.max_steps)
        best, counters = state["best"], state["counters"]
        if state.get("num_workers") not in (None, workers):
            log(f"[resume] data workers changed ({state['num_workers']} -> {workers}): the batch order will differ")
    train_model: torch.nn.Module = model
    if t.compile:
        train_model = torch.compile(train_model, dynamic=True)
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    ctc = torch.nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)

    if master:
        out.mkdir(parents=True, exist_ok=True)
        save_yaml(config, out / "config.yaml")
    metrics_log = MetricLog(out, step if state else None, t.tensorboard) if master else None
    log(f"[setup] device {device} amp {dtype} world {world} workers {workers} threads {threads} "
        f"params {count_parameters(model):,} charset {charset.num_classes - 1} chars; out {out}")

    # --- data ----------------------------------------------------------------------------------
    t0 = time.time()
    val_sets: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    if master:
        if config.val.synth_size > 0:
            val_sets["synth"] = render_synth_val(config, charset, preprocess, workers)
        for folder in config.val.folders:
            arrays, texts, _, problems = load_labeled_arrays(folder, charset, preprocess, config.val.max_per_folder)
            report_problems(folder, problems)
            val_sets[Path(folder).name or folder] = (arrays, texts)
        log(f"[setup] validation sets {', '.join(f'{k}={len(v[1])}' for k, v in val_sets.items())} "
            f"ready in {time.time() - t0:.1f}s")
    sources = build_sources(config, charset, config.seed + 7919 * rank)
    stream = BatchStream(sources, [s.weight for s in config.data.sources], charset, preprocess,
                         config.data.batch_size, config.data.pool_batches, config.seed, rank, start_step=step)
    loader = make_loader(stream, workers, config.data.prefetch_factor, device.type == "cuda", config.seed)
    batches = iter(loader)

    # --- helpers that close over the run ------------------------------------------------------
    eval_seconds = [0.0, 0.0]  # last, slowest

    def evaluate() -> dict[str, float]:
        """Metrics on every validation set, flattened as '<set>/<metric>'."""
        t_eval = time.time()
        results: dict[str, float] = {}
        for name, (arrays, texts) in val_sets.items():
            preds = predict_texts(model, arrays, charset, preprocess, config.val.batch_size, device, dtype, t.channels_last)
            for k, v in compute_metrics(preds, texts).to_dict().items():
                results[f"{name}/{k}"] = v
        eval_seconds[0] = time.time() - t_eval
        eval_seconds[1] = max(eval_seconds[1], eval_seconds[0])
        return results

    def metadata(metrics: dict[str, float]) -> dict[str, Any]:
        return {"config": config.to_dict(), "step": step, "images_seen": images_seen, "metrics": metrics,
                "hardware": hardware(device, world, workers, threads), "wall_time_s": round(time.time() - START, 1),
                "git_commit": git_commit(), "skipped": dict(counters)}

    def save_last() -> None:
        atomic_torch_save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "schedule": {"total_steps": total_steps}, "step": step, "images_seen": images_seen,
            "best": best, "counters": counters, "rng": rng_state(), "charset": charset.chars,
            "config": config.to_dict(), "num_workers": workers, "world_size": world,
        }, out / "last.pt")

    def validate_and_keep_best() -> bool:
        """Evaluate, log, save best.safetensors when the chosen metric improves; True to stop early."""
        results = evaluate()
        metric = config.val.best_metric
        value = results.get(metric)
        if value is None:
            raise ConfigError(f"val.best_metric {metric!r} is not among {sorted(results)}")
        better = best["value"] is None or (value < best["value"] if metric.endswith("/cer") else value > best["value"])
        if better:
            best.update(value=value, step=step, metrics=results, bad_evals=0)
            save_checkpoint(out / "best.safetensors", model, charset, preprocess, metadata(results), half=True)
        else:
            best["bad_evals"] += 1
        metrics_log.write({"kind": "val", "step": step, "images_seen": images_seen,
                           "elapsed_s": round(time.time() - START, 1), "eval_s": round(eval_seconds[0], 2), **results})
        shown = "  ".join(f"{k} {v:.4f}" for k, v in results.items() if k.endswith(("word_accuracy_protocol", "word_accuracy_case", "/cer")))
        log(f"[val] step {step}: {shown}  ({eval_seconds[0]:.1f}s){'  *best*' if better else ''}")
        return bool(t.early_stop) and best["bad_evals"] >= t.early_stop

    # --- time budget ---------------------------------------------------------------------------
    budget = t.max_minutes * 60.0
    n_val = sum(len(v[1]) for v in val_sets.values())
    deadline = [START + budget - 10.0 if budget > 0 else float("inf")]  # refined by plan()

    def plan(sec_per_step: float, img_per_s: float) -> tuple[int, bool]:
        """(total steps for the lr schedule, stop now) so that training plus evaluations end within budget."""
        if budget <= 0:
            return t.max_steps, False
        # Before the first evaluation guess its cost: inference runs about 3x the training speed.
        eval_cost = 1.2 * eval_seconds[1] if eval_seconds[1] else n_val / max(1.0, 3.0 * img_per_s)
        final_cost = eval_cost + 5.0  # the final evaluation, saves and the plot
        deadline[0] = START + budget - final_cost - 2.0
        left = deadline[0] - time.time()
        steps_left = int(left / (sec_per_step + eval_cost / t.eval_every)) if left > 0 else 0
        return min(t.max_steps, step + max(steps_left, 0)), steps_left <= 0

    # --- the loop ------------------------------------------------------------------------------
    if state is not None:
        set_rng_state(state["rng"])  # last: everything above may have drawn random numbers
    else:
        torch.manual_seed(config.seed + rank)  # each rank its own dropout noise
    show_bar = master and (t.progress == "on" or (t.progress == "auto" and sys.stderr.isatty()))
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, dynamic_ncols=True, unit="step")
    rnn_params = [p for n, p in model.named_parameters() if n.startswith("rnn.")]
    win = {"t": time.time(), "wait": 0.0, "images": 0, "loss": torch.zeros((), device=device), "n": 0}
    sec_per_step, img_per_s, stop, early = 0.0, 0.0, False, False
    spans: list[float] = []  # seconds per step of recent logging windows
    resumed_at, empty_run = step, 0
    train_model.train()
    log(f"[train] from step {step} to {total_steps}{f' (budget {t.max_minutes:g} min)' if budget else ''}")
    while step < total_steps and not stop:
        t_wait = time.time()
        batch = next(batches)
        win["wait"] += time.time() - t_wait
        counters["too_long"] += batch["too_long"]
        counters["bad"] += batch["bad"]
        n = len(batch["texts"])
        empty_run = 0 if n else empty_run + 1
        if empty_run >= 20:
            raise CRNNError("the data produced no usable sample in 20 batches in a row (see the [data] lines above)")
        if n:
            images = batch["images"].to(device, non_blocking=True)
            if t.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            lengths = CRNN.frames_for_width(batch["widths"])  # CPU: packing needs CPU lengths
            lr_f, beta1 = lr_factor(step, total_steps, config)
            for g in optimizer.param_groups:
                g["lr"] = config.optim.lr * lr_f
                if beta1 is not None and "betas" in g:
                    g["betas"] = (beta1, g["betas"][1])
            with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
                log_probs = train_model(images, lengths)
            loss = ctc(log_probs.float().transpose(0, 1), batch["targets"].to(device, non_blocking=True),
                       lengths, batch["target_lengths"])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip if config.optim.grad_clip > 0 else float("inf"))
            if torch.isfinite(grad_norm) or scaler.is_enabled():  # fp16: the scaler skips bad steps itself
                scaler.step(optimizer)
                scaler.update()
            else:
                counters["nonfinite"] += 1
            win["loss"] += loss.detach()
            win["n"] += 1
        step += 1
        images_seen += n * world
        win["images"] += n * world

        if step % t.log_every == 0 or step == total_steps:
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.time() - win["t"]
            sec_per_step = dt / max(1, step - win.get("step0", resumed_at))
            img_per_s = win["images"] / dt
            if "step0" in win or budget <= 0:  # the first window holds start-up stalls: not a rate
                spans.append(sec_per_step)
            total_new, stop_now = plan(sum(spans[-3:]) / len(spans[-3:]) if spans else sec_per_step, img_per_s)
            if not spans and not stop_now:
                total_new = total_steps
            if world > 1:  # every rank must agree on the schedule and on when to stop
                flags = torch.tensor([total_new, int(stop_now)], device=device)
                torch.distributed.broadcast(flags, 0)
                total_new, stop_now = int(flags[0]), bool(flags[1])
            total_steps, stop = max(total_new, step), stop_now
            if master:
                rnn_grads = [p.grad.detach().float().norm() for p in rnn_params if p.grad is not None]
                rnn_norm = torch.linalg.vector_norm(torch.stack(rnn_grads)).item() if rnn_grads else 0.0
                rec = {"kind": "train", "step": step, "loss": (win["loss"] / max(1, win["n"])).item(),
                       "lr": optimizer.param_groups[0]["lr"], "grad_norm": float(grad_norm) if n else 0.0,
                       "rnn_grad_norm": rnn_norm, "images_per_s": round(img_per_s, 1),
                       "data_wait_frac": round(win["wait"] / dt, 3), "sec_per_step": round(sec_per_step, 4),
                       "images_seen": images_seen, "elapsed_s": round(time.time() - START, 1), **counters}
                metrics_log.write(rec)
                msg = (f"step {step}/{total_steps} loss {rec['loss']:.3f} lr {rec['lr']:.2e} gn {rec['grad_norm']:.2f} "
                       f"rnn_gn {rnn_norm:.2f} {img_per_s:.0f} img/s wait {100 * rec['data_wait_frac']:.0f}% "
                       f"skipped(long) {counters['too_long']} bad {counters['bad']}")
                if bar is not None:
                    bar.total = total_steps
                    bar.set_postfix_str(f"loss {rec['loss']:.3f} lr {rec['lr']:.1e} {img_per_s:.0f} img/s")
                log(msg)
            win = {"t": time.time(), "wait": 0.0, "images": 0, "loss": torch.zeros((), device=device), "n": 0, "step0": step}
        if bar is not None:
            bar.update(1)
        if master and step % t.eval_every == 0 and step < total_steps and not stop:
            early = validate_and_keep_best()
        if world > 1 and t.early_stop and step % t.eval_every == 0:
            flag = torch.tensor([int(early)], device=device)
            torch.distributed.broadcast(flag, 0)
            early = bool(flag[0])
        stop = stop or early
        if master and step % t.save_every == 0:
            save_last()
        if budget > 0 and world == 1 and time.time() > deadline[0]:
            stop = True  # between log steps too: one slow window must not overrun the budget
        if t.halt_at_step and step == t.halt_at_step:
            os._exit(3)  # testing aid: die like a killed process, without any clean-up

    # --- the end: evaluate, save, plot ------------------------------------------------------------
    # Close the data workers now: told to stop, they drop the pool they are rendering (the DataLoader's own
    # shutdown waits up to 5 s for each busy worker: ~50 s with 15 workers, seen on the GPU box).
    stream.stop.set()
    del batches, loader
    if bar is not None:
        bar.close()
        bar = None
    if master:
        if best["step"] != step:
            validate_and_keep_best()
        save_last()
        metrics_log.close()
        try:
            from crnn_training.plot import plot_run

            plot_run(out)
        except Exception as e:  # a plotting problem must not lose a finished run
            log(f"[plot] skipped: {e}")
        log(f"[done] {step} steps, {images_seen:,} images in {time.time() - START:.0f}s; best "
            f"{config.val.best_metric} {best['value']} at step {best['step']}; skipped(long) {counters['too_long']} "
            f"bad {counters['bad']} non-finite {counters['nonfinite']}; {out / 'best.safetensors'}")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
