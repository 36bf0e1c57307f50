"""The training loop both trainers share, and the run's state in one object.

A *task* knows a model family: its batches, its optimiser step, its validation and its files (the CRNN with
CTC in ``train.py``, the segmented-character baseline in ``train_baseline.py``). :func:`fit` knows the order
of things, the same for both: data -> step -> logging -> evaluation -> checkpointing, until the step budget,
the time budget or early stopping ends the run; then one last evaluation and save.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from crnn.errors import ConfigError


@dataclass
class TrainState:
    """Where a run stands: steps, images, the best evaluation so far, skip counters (saved in last.pt)."""

    total_steps: int  # the schedule's length; a time budget refits it as the run goes
    step: int = 0
    images_seen: int = 0
    best_value: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0  # evaluations since the last improvement (early stopping)
    last_eval_step: int | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def record_eval(self, metrics: dict[str, float], metric: str, minimise: bool) -> bool:
        """Note an evaluation; True when ``metrics[metric]`` beats the best so far (the first always does)."""
        value = metrics[metric]
        better = self.best_value is None or (value < self.best_value if minimise else value > self.best_value)
        if better:
            self.best_value, self.best_step, self.best_metrics, self.bad_evals = value, self.step, metrics, 0
        else:
            self.bad_evals += 1
        return better

    def to_dict(self) -> dict[str, Any]:
        """The state's part of last.pt (the keys last.pt has always had)."""
        return {"schedule": {"total_steps": self.total_steps}, "step": self.step, "images_seen": self.images_seen,
                "best": {"value": self.best_value, "step": self.best_step, "metrics": self.best_metrics,
                         "bad_evals": self.bad_evals},
                "counters": dict(self.counters)}

    @classmethod
    def from_dict(cls, saved: dict[str, Any], max_steps: int) -> TrainState:
        """The state saved by :meth:`to_dict`; ``max_steps`` (maybe lowered by an override) caps the schedule."""
        best = saved["best"]
        return cls(total_steps=min(saved["schedule"]["total_steps"], max_steps), step=saved["step"],
                   images_seen=saved["images_seen"], best_value=best["value"], best_step=best["step"],
                   best_metrics=best["metrics"], bad_evals=best["bad_evals"], counters=dict(saved["counters"]))


class Task(Protocol):
    """What :func:`fit` needs from a model family."""

    def batches(self) -> Iterator[Any]:
        """Training batches, endlessly."""

    def train_step(self, batch: Any, state: TrainState) -> int:
        """One optimiser step on ``batch``; returns the images it trained on (all ranks together)."""

    def log(self, state: TrainState) -> bool:
        """Log the step when due (and refit ``state.total_steps`` to a time budget); True: stop now."""

    def eval_due(self, state: TrainState) -> bool:
        """Whether to evaluate after this step."""

    def validate(self, state: TrainState) -> bool:
        """Evaluate, log, save the best checkpoint when the metric improved; True: stop early."""

    def save_due(self, state: TrainState) -> bool:
        """Whether to save the resume state after this step."""

    def save_last(self, state: TrainState) -> None:
        """Save the resume state (nothing for a task that cannot resume)."""

    def out_of_time(self, state: TrainState) -> bool:
        """Whether the time budget is spent (checked after every step)."""

    def stop_data(self) -> None:
        """Stop producing batches (the run is over)."""


def fit(task: Task, state: TrainState, halt_at_step: int = 0) -> TrainState:
    """Train until ``state.total_steps`` or a stop, then evaluate the last step (unless just done) and save.

    ``halt_at_step`` is a testing aid: the process dies right after that step, like a killed one.
    """
    batches = task.batches()
    stop = False
    while state.step < state.total_steps and not stop:
        batch = next(batches)  # data
        state.images_seen += task.train_step(batch, state)  # step
        state.step += 1
        stop = task.log(state)  # logging (and the time budget's plan)
        if task.eval_due(state) and not stop:  # evaluation (and the best checkpoint)
            stop = task.validate(state)
            state.last_eval_step = state.step
        if task.save_due(state):  # checkpointing (the resume state)
            task.save_last(state)
        # Between log steps too: one slow window must not overrun the budget.
        stop = stop or task.out_of_time(state)
        if halt_at_step and state.step == halt_at_step:
            os._exit(3)  # die like a killed process, without any clean-up
    task.stop_data()  # first: told to stop, data workers drop their work and shut down quickly
    del batches
    if state.last_eval_step != state.step:
        task.validate(state)
        state.last_eval_step = state.step
    task.save_last(state)
    return state


# ---------------------------------------------------------------------------------------------
# Helpers of both trainers
# ---------------------------------------------------------------------------------------------


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


def set_lr(optimizer: torch.optim.Optimizer, lr: float, beta1: float | None = None) -> None:
    """Set every parameter group's learning rate (and AdamW's beta1 when given)."""
    for g in optimizer.param_groups:
        g["lr"] = lr
        if beta1 is not None and "betas" in g:
            g["betas"] = (beta1, g["betas"][1])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file, then rename: a kill never leaves a half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """Every RNG the trainer draws from, as plain containers (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    py = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [list(py[1]), py[0], py[2]],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(int, np_state[2:4]),
                       float(np_state[4])]}
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
