"""Train a CRNN with CTC: ``crnn train --config FILE.yaml [key=value ...]`` or ``python -m crnn_training.train``.

The config's ``decoder`` section may make it an attention decoder on the same encoder, or guide the CTC model with an
attention head during training (GTC): crnn_training.objectives, docs/attention.md.

One loop for CPU, one GPU and torchrun/DDP (:func:`crnn_training.loop.fit`, shared with the baseline's
trainer). Read top to bottom: setup helpers, :class:`CTCTask` (data, step, logging, evaluation,
checkpoints of one run), :func:`setup` (config, device, model, optimiser, data) and :func:`train`.
Outputs in ``out_dir``: best.safetensors (fp16), last.pt (resume state), metrics.jsonl, config.yaml,
TensorBoard events (tb/) and curves.png. A folder that holds a run is refused unless ``--resume`` or ``--force``
(crnn_training.run_folder); the config, the run folder and the data paths are all checked before any work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Idle OpenMP threads sleep instead of spinning (unless the environment says otherwise): a CPU trainer that shares its
# cores, with its data worker or with other work, otherwise loses most of its speed to threads spinning against each
# other (docs/training.md, "Training at the CPU's limit"). libgomp reads this once, when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from crnn.charset import Charset
from crnn.checkpoints.checkpoint import Checkpoint
from crnn.kinds.loading import load_checkpoint, save_checkpoint
from crnn.config import apply_overrides, load_yaml, save_yaml
from crnn.errors import ConfigError, CRNNError
from crnn.machine import cpu_cores
from crnn.metrics import compute_metrics
from crnn.models.crnn import CRNN, ModelConfig, count_parameters
from crnn.reading.precision import native_bf16, resolve_precision
from crnn.io.preprocess import PreprocessConfig
from crnn.kinds.registry import kind_of
from crnn_training.cache import renderer_differences
from crnn_training.config import MEAN_SET, METRICS, TrainConfig, default_charset, folder_set_name, resolve_renderer
from crnn_training.data import (BatchStream, build_sources, check_data_paths, load_labeled_arrays, make_loader,
                                render_synth_val, report_problems, single_threaded_cv2, stop_all_streams)
from crnn_training.loop import TrainState, atomic_torch_save, fit, pick_device, rng_state, set_lr, set_rng_state
from crnn_training.objectives import build_network, check_init_from, check_resume, make_objective, trained_module
from crnn_training.run_folder import TB_FOLDER, check_run_folder, clear_run
from crnn_training.run_info import git_commit, hardware

START = time.time()  # the time budget counts from process start-up, imports included
# What a run writes into out_dir (--force replaces these of an old run, and nothing else).
RUN_OUTPUTS = ("config.yaml", "metrics.jsonl", "last.pt", "best.safetensors", "curves.png", TB_FOLDER)


# ---------------------------------------------------------------------------------------------
# Setup helpers
# ---------------------------------------------------------------------------------------------


# A CPU run whose fresh renders are at most this share of its samples (the rest read from a cache or a folder)
# leaves its data worker little to do: the trainer takes every core (measured: benchmarks/bench_train_ceiling.py).
LIGHT_RENDER_SHARE = 0.2


def render_share(config: TrainConfig) -> float:
    """The share of training samples rendered on the fly (``synth`` sources' weight over the total)."""
    weights = [(s.type, s.weight) for s in config.data.sources]
    return sum(w for t, w in weights if t == "synth") / sum(w for _, w in weights)


def auto_threads(config: TrainConfig, device: torch.device, local_world: int) -> tuple[int, int]:
    """(data workers, trainer threads) that together do not oversubscribe the cores.

    On CPU the renderer and the trainer share the cores; oversubscription is very costly (measured
    here: 8 img/s with 2 trainer threads beside a busy worker on 2 cores, 56 img/s with 1). So half the cores
    render and the rest train, unless the data mostly comes from a cache (at most LIGHT_RENDER_SHARE fresh
    renders): then one worker reads it and the trainer uses every core.
    """
    cores = max(1, cpu_cores() // local_world)
    workers = config.data.num_workers
    if device.type == "cuda":
        workers = max(1, cores - 1) if workers < 0 else workers
        threads = config.train.threads or max(1, min(4, cores - workers))
    elif render_share(config) <= LIGHT_RENDER_SHARE:
        workers = 1 if workers < 0 else workers
        threads = config.train.threads or cores
    else:
        workers = max(1, cores // 2) if workers < 0 else workers
        threads = config.train.threads or max(1, cores - workers)
    return workers, threads


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype; ``auto`` is bf16 on CUDA and on a CPU that computes bf16 natively (AVX-512 BF16 or AMX,
    crnn.reading.precision.native_bf16), fp32 (no autocast) elsewhere: emulated bf16 is slower than fp32."""
    amp = config.train.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" or native_bf16(device) else "off"
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
    ckpt = load_checkpoint(path, kind="crnn")
    old_cs = ckpt.charset
    charset = Charset(config.charset) if config.charset is not None else old_cs
    arch = ckpt.model.config.model_dump(mode="json")  # every field (to_dict leaves out unused mixing keys)
    mine = {k: v for k, v in config.model.to_dict().items() if k != "dropout"}
    if any(arch[k] != v for k, v in mine.items()):
        print(f"[init] using the architecture of {path}: {arch} (config's model section ignored)", file=sys.stderr)
    config.model = config.model.model_copy(update={k: arch[k] for k in mine})
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


def val_precision(config: TrainConfig, device: torch.device, dtype: torch.dtype | None) -> str:
    """The Recognizer precision validation runs in (see ValSection.precision)."""
    if config.val.precision != "auto":
        return config.val.precision
    if device.type == "cuda":
        return "bf16" if dtype == torch.bfloat16 else "fp32"  # as the model trains; fp16 autocast has no twin
    return resolve_precision("auto", device)  # what `crnn ocr` runs on this CPU


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
# The CRNN-CTC task: what crnn_training.loop.fit runs
# ---------------------------------------------------------------------------------------------


@dataclass
class Window:
    """What the trainer saw since the last log line."""

    step0: int  # the step the window starts after
    first: bool = False  # the run's first window holds start-up stalls: its speed is not a rate
    t: float = field(default_factory=time.time)
    wait: float = 0.0  # seconds spent waiting for batches
    images: int = 0
    loss: torch.Tensor | float = 0.0  # summed on the device: no sync per step
    parts: dict[str, Any] = field(default_factory=dict)  # a guided run's loss terms (loss_ctc, loss_attention), summed
    n: int = 0


class CTCTask:
    """One CRNN training run: its model, optimiser, data, validation sets and outputs (rank 0 writes)."""

    def __init__(self, config: TrainConfig, model: CRNN, charset: Charset, preprocess: PreprocessConfig,
                 device: torch.device, dtype: torch.dtype | None, optimizer: torch.optim.Optimizer,
                 scaler: Any, world: int, rank: int, workers: int, threads: int) -> None:
        self.config, self.model, self.charset, self.preprocess = config, model, charset, preprocess
        self.device, self.dtype, self.optimizer, self.scaler = device, dtype, optimizer, scaler
        self.world, self.rank, self.workers, self.threads = world, rank, workers, threads
        self.master = rank == 0
        self.out = Path(config.out_dir)
        # The module the optimiser trains: the model, or the model with a guiding attention head (GTC), compiled
        # and/or DDP-wrapped by setup(); the loss of the config's decoder section (crnn_training.objectives).
        self.train_model: torch.nn.Module = model
        self.objective = make_objective(config, charset.num_classes)
        self.rnn_params = [p for n, p in model.named_parameters() if n.startswith(("rnn.", "encoder.rnn."))]
        self.precision = val_precision(config, device, dtype)
        self.metrics_log: MetricLog | None = None
        self.val_sets: dict[str, tuple[list[np.ndarray], list[str]]] = {}
        self.stream: BatchStream | None = None
        self.loader: Any = None
        self._batches: Iterator[dict[str, Any]] | None = None
        self.bar: Any = None
        self.budget = config.train.max_minutes * 60.0
        self.deadline = START + self.budget - 10.0 if self.budget > 0 else float("inf")  # refined by plan()
        self.eval_s, self.eval_s_max = 0.0, 0.0  # last and slowest evaluation
        self.spans: list[float] = []  # seconds per step of recent logging windows
        self.window = Window(0)
        self.grad_norm: torch.Tensor | float = 0.0
        self.empty_run = 0

    def say(self, msg: str) -> None:
        """Print on rank 0 (through the progress bar when there is one)."""
        if self.master:
            (self.bar.write if self.bar is not None else print)(msg)

    # --- data ------------------------------------------------------------------------------------

    def load_val_sets(self) -> None:
        """Render the synthetic validation set and read the validation folders (rank 0 only)."""
        t0 = time.time()
        val = self.config.val
        if val.synth_size > 0:
            self.val_sets["synth"] = render_synth_val(self.config, self.charset, self.preprocess, self.workers)
        for folder in val.folders:
            arrays, texts, _, problems = load_labeled_arrays(folder, self.charset, self.preprocess, val.max_per_folder,
                                                             val.holdout)
            report_problems(folder, problems)
            self.val_sets[folder_set_name(folder)] = (arrays, texts)
        self.say(f"[setup] validation sets {', '.join(f'{k}={len(v[1])}' for k, v in self.val_sets.items())} "
                 f"ready in {time.time() - t0:.1f}s")

    def start_data(self, step: int) -> None:
        """The training stream of this rank, from batch ``step`` on (a resumed run continues where it was)."""
        c = self.config
        sources = build_sources(c, self.charset, c.seed + 7919 * self.rank)
        self.stream = BatchStream(sources, [s.weight for s in c.data.sources], self.charset, self.preprocess,
                                  c.data.batch_size, c.data.pool_batches, c.seed, self.rank, start_step=step,
                                  equal_widths=c.data.equal_widths)
        self.loader = make_loader(self.stream, self.workers, c.data.prefetch_factor, self.device.type == "cuda", c.seed)
        self._batches = iter(self.loader)  # starts the workers (before the RNG state is set: see setup())

    def batches(self) -> Iterator[dict[str, Any]]:
        """Training batches; the time spent waiting for each is counted in the log window."""
        while True:
            t0 = time.time()
            batch = next(self._batches)
            self.window.wait += time.time() - t0
            yield batch

    def stop_data(self) -> None:
        """Close the data workers: told to stop, they drop the pool they are rendering.

        (The DataLoader's own shutdown waits up to 5 s for each busy worker: ~50 s with 15 workers.)
        """
        self.stream.stop.set()
        self._batches = self.loader = None
        for source in self.stream.sources:
            getattr(source, "close", lambda: None)()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # --- step ------------------------------------------------------------------------------------

    def train_step(self, batch: dict[str, Any], state: TrainState) -> int:
        """One AMP step of the run's objective (CTC, attention, GTC) on images (B, 1, 32, W); returns the images of all ranks."""
        state.counters["too_long"] += batch["too_long"]
        state.counters["bad"] += batch["bad"]
        n = len(batch["texts"])
        self.empty_run = 0 if n else self.empty_run + 1
        if self.empty_run >= 20:
            raise CRNNError("the data produced no usable sample in 20 batches in a row (see the [data] lines above)")
        if n:
            c, dtype = self.config, self.dtype
            images = batch["images"].to(self.device, non_blocking=True)
            if c.train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            lengths = CRNN.frames_for_width(batch["widths"])  # CPU: packing needs CPU lengths
            lr_f, beta1 = lr_factor(state.step, state.total_steps, c)
            set_lr(self.optimizer, c.optim.lr * lr_f, beta1)
            autocast = (lambda: torch.autocast(self.device.type, dtype=dtype)) if dtype else contextlib.nullcontext
            loss = self.objective(self.train_model, images, lengths, batch, autocast)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            clip = c.optim.grad_clip if c.optim.grad_clip > 0 else float("inf")
            self.grad_norm = torch.nn.utils.clip_grad_norm_(self.train_model.parameters(), clip)  # a GTC head's too
            if torch.isfinite(self.grad_norm) or self.scaler.is_enabled():  # fp16: the scaler skips bad steps itself
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                state.counters["nonfinite"] += 1
            self.window.loss = self.window.loss + loss.detach()
            for k, v in self.objective.parts.items():
                self.window.parts[k] = self.window.parts.get(k, 0.0) + v
            self.window.n += 1
        else:
            self.grad_norm = 0.0
        self.window.images += n * self.world
        return n * self.world

    # --- logging and the time budget ------------------------------------------------------------------

    def plan(self, state: TrainState, sec_per_step: float, img_per_s: float) -> tuple[int, bool]:
        """(total steps for the lr schedule, stop now) so that training plus evaluations end within budget."""
        t = self.config.train
        if self.budget <= 0:
            return t.max_steps, False
        # Before the first evaluation guess its cost: inference runs about 3x the training speed.
        n_val = sum(len(v[1]) for v in self.val_sets.values())
        eval_cost = 1.2 * self.eval_s_max if self.eval_s_max else n_val / max(1.0, 3.0 * img_per_s)
        final_cost = eval_cost + 5.0  # the final evaluation, saves and the plot
        self.deadline = START + self.budget - final_cost - 2.0
        left = self.deadline - time.time()
        steps_left = int(left / (sec_per_step + eval_cost / t.eval_every)) if left > 0 else 0
        return min(t.max_steps, state.step + max(steps_left, 0)), steps_left <= 0

    def log(self, state: TrainState) -> bool:
        """Every ``log_every`` steps: refit the schedule to the time budget, write a train record; True: stop."""
        stop = False
        step, win = state.step, self.window
        if step % self.config.train.log_every == 0 or step == state.total_steps:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.time() - win.t
            sec_per_step = dt / max(1, step - win.step0)
            img_per_s = win.images / dt
            if not win.first or self.budget <= 0:
                self.spans.append(sec_per_step)
            recent = self.spans[-3:]
            total_new, stop = self.plan(state, sum(recent) / len(recent) if recent else sec_per_step, img_per_s)
            if not self.spans and not stop:
                total_new = state.total_steps
            if self.world > 1:  # every rank must agree on the schedule and on when to stop
                flags = torch.tensor([total_new, int(stop)], device=self.device)
                torch.distributed.broadcast(flags, 0)
                total_new, stop = int(flags[0]), bool(flags[1])
            state.total_steps = max(total_new, step)
            if self.master:
                self.write_train_record(state, dt, img_per_s, sec_per_step)
            self.window = Window(step)
        if self.bar is not None:
            self.bar.update(1)
        return stop

    def write_train_record(self, state: TrainState, dt: float, img_per_s: float, sec_per_step: float) -> None:
        """One ``train`` record in metrics.jsonl (read by crnn plot and crnn compare) and one log line."""
        win, counters = self.window, state.counters
        rnn_grads = [p.grad.detach().float().norm() for p in self.rnn_params if p.grad is not None]
        rnn_norm = torch.linalg.vector_norm(torch.stack(rnn_grads)).item() if rnn_grads else 0.0
        rec = {"kind": "train", "step": state.step, "loss": float(win.loss / max(1, win.n)),
               **{k: float(v / max(1, win.n)) for k, v in win.parts.items()},
               "lr": self.optimizer.param_groups[0]["lr"], "grad_norm": float(self.grad_norm),
               "rnn_grad_norm": rnn_norm, "images_per_s": round(img_per_s, 1),
               "data_wait_frac": round(win.wait / dt, 3), "sec_per_step": round(sec_per_step, 4),
               "images_seen": state.images_seen, "elapsed_s": round(time.time() - START, 1), **counters}
        self.metrics_log.write(rec)
        if self.bar is not None:
            self.bar.total = state.total_steps
            self.bar.set_postfix_str(f"loss {rec['loss']:.3f} lr {rec['lr']:.1e} {img_per_s:.0f} img/s")
        self.say(f"step {state.step}/{state.total_steps} loss {rec['loss']:.3f} lr {rec['lr']:.2e} "
                 f"gn {rec['grad_norm']:.2f} rnn_gn {rnn_norm:.2f} {img_per_s:.0f} img/s "
                 f"wait {100 * rec['data_wait_frac']:.0f}% skipped(long) {counters['too_long']} bad {counters['bad']}")

    def out_of_time(self, state: TrainState) -> bool:
        """Past the deadline plan() set (single process: DDP ranks stop together at log steps)."""
        return self.budget > 0 and self.world == 1 and time.time() > self.deadline

    # --- evaluation ------------------------------------------------------------------------------

    def eval_due(self, state: TrainState) -> bool:
        """Every ``eval_every`` steps, but not at the last step (the final evaluation comes after the loop)."""
        return state.step % self.config.train.eval_every == 0 and state.step < state.total_steps

    def evaluate(self) -> dict[str, float]:
        """Metrics on every validation set as '<set>/<metric>', read exactly as `crnn ocr` reads images.

        The recognizer is the one users run (its kind's, from crnn.kinds.registry: 8-px width buckets, the fused model,
        greedy decoding), so the checkpoint kept as best is the best at what users get.
        """
        t0 = time.time()
        kind = kind_of(self.model)
        rec = kind.recognizer_class(Checkpoint(self.model, self.charset, self.preprocess, {}, kind.name), self.device,
                                    None, self.precision)  # a fused copy of the current weights
        self.model.train()  # from_model put the training model in eval mode
        results: dict[str, float] = {}
        for name, (arrays, texts) in self.val_sets.items():
            preds = rec.recognize_prepared(arrays, batch_size=self.config.val.batch_size, decoder="greedy")
            for k, v in compute_metrics([p.text for p in preds], texts).to_dict().items():
                results[f"{name}/{k}"] = v
        folders = [folder_set_name(f) for f in self.config.val.folders]
        if MEAN_SET in self.config.val.set_names():  # each folder once, whatever its size (ValSection.set_names)
            for metric in METRICS:
                results[f"{MEAN_SET}/{metric}"] = sum(results[f"{f}/{metric}"] for f in folders) / len(folders)
        self.eval_s = time.time() - t0
        self.eval_s_max = max(self.eval_s_max, self.eval_s)
        return results

    def validate(self, state: TrainState) -> bool:
        """Evaluate (rank 0), log, save best.safetensors when the chosen metric improves; True: stop early."""
        t = self.config.train
        early = False
        if self.master:
            results = self.evaluate()
            metric = self.config.val.best_metric
            if metric not in results:
                raise ConfigError(f"val.best_metric {metric!r} is not among {sorted(results)}")
            better = state.record_eval(results, metric, minimise=metric.endswith("/cer"))
            if better:
                save_checkpoint(self.out / "best.safetensors", self.model, self.charset, self.preprocess,
                                self.metadata(state, results), half=True)
            self.metrics_log.write({"kind": "val", "step": state.step, "images_seen": state.images_seen,
                                    "elapsed_s": round(time.time() - START, 1), "eval_s": round(self.eval_s, 2),
                                    **results})
            shown = "  ".join(f"{k} {v:.4f}" for k, v in results.items()
                              if k.endswith(("word_accuracy_protocol", "word_accuracy_case", "/cer")))
            self.say(f"[val] step {state.step}: {shown}  ({self.eval_s:.1f}s){'  *best*' if better else ''}")
            early = bool(t.early_stop) and state.bad_evals >= t.early_stop
        if self.world > 1 and t.early_stop:  # every rank stops at the same step
            flag = torch.tensor([int(early)], device=self.device)
            torch.distributed.broadcast(flag, 0)
            early = bool(flag[0])
        return early

    # --- checkpoints -----------------------------------------------------------------------------

    def metadata(self, state: TrainState, metrics: dict[str, float]) -> dict[str, Any]:
        """What best.safetensors records about the run."""
        return {"config": self.config.to_dict(), "step": state.step, "images_seen": state.images_seen,
                "metrics": metrics, "hardware": hardware(self.device, self.world, self.workers, self.threads),
                "wall_time_s": round(time.time() - START, 1), "git_commit": git_commit(),
                "skipped": dict(state.counters)}

    def save_due(self, state: TrainState) -> bool:
        """Every ``save_every`` steps (rank 0)."""
        return self.master and state.step % self.config.train.save_every == 0

    def head_state(self) -> dict[str, Any]:
        """A guiding attention head's weights for last.pt (GTC; never in best.safetensors), else nothing."""
        net = getattr(self.train_model, "module", self.train_model)
        head = getattr(getattr(net, "_orig_mod", net), "head", None)
        return {"aux_head": head.state_dict()} if head is not None else {}

    def save_last(self, state: TrainState) -> None:
        """last.pt: everything --resume needs to continue bit-identically (rank 0)."""
        if not self.master:
            return
        atomic_torch_save({
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), **self.head_state(),
            "scaler": self.scaler.state_dict(), **state.to_dict(), "rng": rng_state(), "charset": self.charset.chars,
            "config": self.config.to_dict(), "num_workers": self.workers, "world_size": self.world,
        }, self.out / "last.pt")


# ---------------------------------------------------------------------------------------------
# Setup and the run
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments of ``crnn train``."""
    p = argparse.ArgumentParser(prog="crnn train", description="Train a CRNN (CTC) on synthetic and labeled data.")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from RUN_DIR/last.pt")
    p.add_argument("--force", action="store_true",
                   help="start over in an out_dir that holds a run (its last.pt, best.safetensors, metrics.jsonl, ... "
                   "are replaced); without it such a folder is refused")
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


def load_run(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The config (a run folder's for --resume, overrides applied) and the resume state (None: a new run).

    Everything a run depends on is checked here, before any model or data work: the whole config, the run
    folder (one that holds a run needs --resume or --force) and the data paths.
    """
    if not args.resume:
        config = TrainConfig.from_yaml(args.config, args.overrides)
        check_run_folder(config.out_dir, option="out_dir", writes=RUN_OUTPUTS, force=args.force, resumable=True)
        check_data_paths(config)
        if args.init_from and not Path(args.init_from).is_file():
            raise ConfigError(f"--init-from {args.init_from}: no such checkpoint file")
        return config, None
    for given, what in ((args.config, "--config"), (args.init_from, "--init-from"), (args.force, "--force")):
        if given:
            raise ConfigError(f"--resume continues a run with its own config.yaml and weights: {what} does not apply "
                              "(change settings with key=value overrides)")
    if any(item.partition("=")[0].strip() == "out_dir" for item in args.overrides):
        raise ConfigError("--resume continues the run in its own folder: out_dir cannot be overridden")
    run = Path(args.resume)
    if not (run / "last.pt").is_file() or not (run / "config.yaml").is_file():
        raise ConfigError(f"{run}: no last.pt and config.yaml to resume from")
    check_run_folder(run, option="--resume", writes=RUN_OUTPUTS, holds_run=True)
    config = TrainConfig.from_dict(apply_overrides(load_yaml(run / "config.yaml"), args.overrides))
    config.out_dir = str(run)
    check_data_paths(config)
    return config, torch.load(run / "last.pt", map_location="cpu", weights_only=True)


def setup(args: argparse.Namespace) -> tuple[CTCTask, TrainState]:
    """Config, processes and device, model, optimiser, outputs and data of a run, ready for fit()."""
    # --- config, distributed, device ---------------------------------------------------------
    config, saved = load_run(args)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = pick_device(config.train.device, local_rank if world > 1 else None)
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    workers, threads = auto_threads(config, device, local_world)
    torch.set_num_threads(threads)
    single_threaded_cv2()  # before the first cv2 call and before any data worker forks
    dtype = amp_dtype(config, device)
    t = config.train

    # --- model, charset, optimiser -------------------------------------------------------------
    torch.manual_seed(config.seed)
    if saved is not None:
        check_resume(config, saved)
        charset = Charset(saved["charset"])
        model = build_network(config, charset)
        model.load_state_dict(saved["model"])
    elif args.init_from:
        check_init_from(config)
        model, charset = init_from(args.init_from, config)
    else:
        charset = Charset(default_charset(config))
        model = build_network(config, charset)
    config.charset = charset.chars
    resolve_renderer(config, charset.chars)  # the renderer writes what the model reads, at its height
    preprocess = config.data.preprocess(config.model.height)
    model.to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trained = trained_module(config, model)  # the model, or the model with a guiding attention head (GTC)
    if saved is not None and "aux_head" in saved:
        trained.head.load_state_dict(saved["aux_head"])
    optimizer = make_optimizer(trained, config)
    if device.type == "cuda" and dtype is not None:
        dtype = smoke_test(model, device, dtype, config)
    scaler = (torch.amp.GradScaler(device.type, enabled=dtype == torch.float16) if hasattr(torch.amp, "GradScaler")
              else torch.cuda.amp.GradScaler(enabled=dtype == torch.float16))  # torch < 2.3
    state = TrainState(total_steps=t.max_steps, counters={"too_long": 0, "bad": 0, "nonfinite": 0})
    task = CTCTask(config, model, charset, preprocess, device, dtype, optimizer, scaler, world, rank, workers, threads)
    task.train_model = trained
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        state = TrainState.from_dict(saved, t.max_steps)
        if saved.get("num_workers") not in (None, workers):
            task.say(f"[resume] data workers changed ({saved['num_workers']} -> {workers}): the batch order will differ")
    if t.compile:
        task.train_model = torch.compile(task.train_model, dynamic=True)
    if world > 1:
        task.train_model = torch.nn.parallel.DistributedDataParallel(
            task.train_model, device_ids=[device.index] if device.type == "cuda" else None)

    # --- data, outputs -----------------------------------------------------------------------------
    task.say(f"[setup] device {device} amp {dtype} world {world} workers {workers} threads {threads} "
             f"params {count_parameters(model):,} charset {charset.num_classes - 1} chars; "
             f"validation precision {task.precision}; out {task.out}")
    for path in config.sources_validated_on():
        task.say(f"[data] warning: {path} is both a training source and a validation folder: the run validates on "
                 "images it trains on (give the source a holdout and val.holdout the same value to split it)")
    for s in config.data.sources:  # a cache from another renderer would train on other images than fresh renders
        differ = renderer_differences(s.path, config) if s.type == "lmdb" else []
        if differ:
            task.say(f"[data] warning: {s.path} was rendered with other synth settings ({', '.join(differ)}) "
                     "than this run's renderer")
    if task.master:
        task.load_val_sets()
    task.start_data(state.step)
    if task.master:  # only now, with everything ready: a run that fails to start writes nothing
        task.out.mkdir(parents=True, exist_ok=True)
        if saved is None and args.force:
            gone = clear_run(task.out, RUN_OUTPUTS)
            if gone:
                task.say(f"[setup] --force: removed the old run's {', '.join(gone)} from {task.out}")
        save_yaml(config, task.out / "config.yaml")
        task.metrics_log = MetricLog(task.out, state.step if saved else None, t.tensorboard)

    # --- random state, progress bar ------------------------------------------------------------------
    if saved is not None:
        set_rng_state(saved["rng"])  # last: everything above may have drawn random numbers
    else:
        torch.manual_seed(config.seed + rank)  # each rank its own dropout noise
    if task.master and (t.progress == "on" or (t.progress == "auto" and sys.stderr.isatty())):
        from tqdm import tqdm

        task.bar = tqdm(total=state.total_steps, initial=state.step, dynamic_ncols=True, unit="step")
    task.window = Window(state.step, first=True)
    return task, state


def train(args: argparse.Namespace) -> int:
    """Set up, run the loop (crnn_training.loop.fit), plot and summarise; see the module docstring."""
    task, state = setup(args)
    t = task.config.train
    task.say(f"[train] from step {state.step} to {state.total_steps}"
             f"{f' (budget {t.max_minutes:g} min)' if task.budget else ''}")
    task.train_model.train()
    fit(task, state, halt_at_step=t.halt_at_step)
    if task.master:
        task.metrics_log.close()
        try:
            from crnn_training.plot import plot_run

            plot_run(task.out)
        except Exception as e:  # a plotting problem must not lose a finished run
            task.say(f"[plot] skipped: {e}")
        c = state.counters
        task.say(f"[done] {state.step} steps, {state.images_seen:,} images in {time.time() - START:.0f}s; best "
                 f"{task.config.val.best_metric} {state.best_value} at step {state.best_step}; skipped(long) "
                 f"{c['too_long']} bad {c['bad']} non-finite {c['nonfinite']}; {task.out / 'best.safetensors'}")
    if task.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
