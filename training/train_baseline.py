"""Train the segmented-character baseline: ``python -m crnn_training.train_baseline --out DIR --minutes 10``.

Settings: ``--config FILE.yaml`` (``configs/baseline.yaml``; training/config.py ``BaselineTrainConfig``), then
the flags below, then ``key=value`` overrides. Read top to bottom: data (synthetic words cut at the renderer's
true character boxes, with box jitter), the fixed validation set (scored end to end with the automatic
segmenter, through ``BaselineRecognizer`` as users run it), :class:`BaselineTask` (cross-entropy, AdamW, a
time or step budget) run by the loop the CRNN trainer uses (:func:`crnn_training.loop.fit`), checkpoints.
Outputs in ``out``: best.safetensors (model_type "baseline", best end-to-end synthetic word accuracy) and
log.jsonl (one line per evaluation). A folder that holds a run is refused unless ``--force`` (then the old
run's files are removed once the new run is set up; crnn_training.run_folder).

The word stream is the CRNN trainer's: sample ``i`` of seed ``--seed`` is the same rendered image in both
(``crnn_training.train`` with ``seed`` and one synthetic source renders samples 0, 1, 2, ... of that seed), so
``--max-steps`` x ``--batch-size`` words here and ``train.max_steps`` x ``data.batch_size`` there are the
same images: the budget-matched comparison of issue 7.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from typing import IO
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from crnn.models.baseline.model import BaselineConfig, SegCharModel, collate_crops
from crnn.reading.baseline_recognizer import BaselineRecognizer, to_uint8, word_crops
from crnn.models.baseline.segment import SegmentConfig, binarize, segment, segmentation_stats
from crnn.charset import DEFAULT_CHARS, Charset
from crnn.kinds.loading import save_checkpoint
from crnn.config import apply_overrides, load_yaml
from crnn.errors import ConfigError, CRNNError, OutputPathError
from crnn.io.preprocess import PreprocessConfig, normalize
from crnn_synth_data import SynthConfig
from crnn_synth_data.dataset import SyntheticWordDataset
from crnn_training.config import BaselineTrainConfig
from crnn_training.data import single_threaded_cv2, worker_init
from crnn_training.loop import TrainState, fit, pick_device, set_lr
from crnn_training.run_folder import check_run_folder, clear_run
from crnn_training.run_info import git_commit, hardware

VAL_SEED = BaselineTrainConfig().val_seed  # a seed the training stream never uses
RUN_OUTPUTS = ("best.safetensors", "log.jsonl")  # what a run writes into --out (--force replaces these)


def prepare_sample(image: np.ndarray, text: str, boxes: np.ndarray, charset: Charset,
                   preprocess: PreprocessConfig) -> tuple[np.ndarray, str, np.ndarray] | None:
    """Prepared array (H', W') in [-1, 1], text without spaces and its boxes (N, 4) scaled to the array; None if unusable."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    chars = text.replace(" ", "")  # the renderer boxes every non-space character; spaces get no segment
    if not chars or len(chars) != len(boxes) or not charset.supports(chars):
        return None
    try:
        array = normalize(gray, preprocess)
    except CRNNError:
        return None
    sx, sy = array.shape[1] / gray.shape[1], array.shape[0] / gray.shape[0]
    return array, chars, np.asarray(boxes, np.float32) * np.array([sx, sy, sx, sy], np.float32)


def tighten_boxes(array: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """True boxes (N, 4) shrunk horizontally to the ink columns inside each.

    The renderer's boxes span each glyph's advance (neighbours overlap), while the segmenter returns
    ink-tight boxes; training on ink-tight crops keeps the crops of training and evaluation alike.
    """
    cols = np.nonzero(binarize(to_uint8(array)).any(axis=0))[0]
    out = boxes.copy()
    for b in out:
        inside = cols[(cols >= math.floor(b[0])) & (cols < math.ceil(b[2]))]
        if len(inside):
            b[0], b[2] = inside[0], inside[-1] + 1
    return out


def jitter_boxes(boxes: np.ndarray, width: int, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Boxes (N, 4) with x0 and x1 each moved by up to ``jitter`` px, kept inside the image and >= 1 px wide."""
    out = boxes.copy()
    out[:, [0, 2]] += rng.uniform(-jitter, jitter, size=(len(out), 2)).astype(np.float32)
    out[:, 0] = np.clip(out[:, 0], 0, width - 1)
    out[:, 2] = np.clip(np.maximum(out[:, 2], out[:, 0] + 1), 1, width)
    return out


class CropStream(IterableDataset):
    """Training examples (crops (N, S, S), class ids (N,)) from the synthetic stream, cut at jittered true boxes."""

    def __init__(self, synth: SynthConfig, seed: int, charset: Charset, preprocess: PreprocessConfig,
                 crop_size: int, jitter: float) -> None:
        super().__init__()
        self.words = SyntheticWordDataset(synth, seed=seed)
        self.charset, self.preprocess, self.crop_size, self.jitter = charset, preprocess, crop_size, jitter
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        for s in self.words:
            prepared = prepare_sample(s.image, s.text, s.boxes, self.charset, self.preprocess)
            if prepared is None:
                continue
            array, chars, boxes = prepared
            boxes = jitter_boxes(tighten_boxes(array, boxes), array.shape[1], self.jitter, rng)
            yield word_crops(array, boxes, self.crop_size), np.array(self.charset.encode(chars), np.int64)


def collate(batch: list[tuple[np.ndarray, np.ndarray]], crop_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crops (B, N, 1, S, S), counts (B,) and targets (B, N) padded with 0 (ignored by the loss)."""
    crops, lengths = collate_crops([c for c, _ in batch], crop_size)
    targets = torch.zeros(len(batch), crops.shape[1], dtype=torch.long)
    for i, (_, ids) in enumerate(batch):
        targets[i, : len(ids)] = torch.from_numpy(ids)
    return crops, lengths, targets


class _Collate:
    def __init__(self, crop_size: int) -> None:
        self.crop_size = crop_size

    def __call__(self, batch: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return collate(batch, self.crop_size)


def validation_set(synth: SynthConfig, size: int, charset: Charset, preprocess: PreprocessConfig,
                   seed: int = VAL_SEED) -> list[tuple[np.ndarray, str, np.ndarray]]:
    """A fixed list of (prepared array, text without spaces, true boxes in array coordinates)."""
    out = []
    for s in SyntheticWordDataset(synth, seed=seed, length=size):
        prepared = prepare_sample(s.image, s.text, s.boxes, charset, preprocess)
        if prepared is not None:
            out.append(prepared)
    return out


def evaluate(model: SegCharModel, val: list[tuple[np.ndarray, str, np.ndarray]], charset: Charset,
             preprocess: PreprocessConfig, segmenter: SegmentConfig) -> dict[str, float]:
    """End-to-end word accuracy (automatic segmenter) and oracle accuracy (true boxes) on the validation set."""
    was_training = model.training
    device = next(model.parameters()).device
    rec = BaselineRecognizer.from_model(model, charset, preprocess, segmenter, device=device)
    try:
        preds = rec.recognize_prepared([a for a, _, _ in val])
        e2e = float(np.mean([p.text == t for p, (_, t, _) in zip(preds, val)]))
        # Oracle: the same classifier given the true (ink-tightened) boxes, to separate the segmenter's
        # errors from the classifier's.
        size = model.config.crop_size
        correct = 0
        with torch.inference_mode():
            for start in range(0, len(val), 64):
                chunk = val[start : start + 64]
                crops, lengths = collate_crops([word_crops(a, tighten_boxes(a, b), size) for a, _, b in chunk], size)
                logits = model(crops.to(device), lengths.to(device))
                logits[..., 0] = float("-inf")
                for row, n, (_, t, _) in zip(logits.argmax(-1), lengths.tolist(), chunk):
                    correct += int(charset.decode(row[:n].tolist()) == t)
    finally:
        model.train(was_training)
    return {"e2e_word_accuracy": e2e, "oracle_word_accuracy": correct / max(1, len(val))}


class BaselineTask:
    """A baseline run for crnn_training.loop.fit: evaluates by time (and steps), logs at each evaluation, no resume."""

    def __init__(self, config: BaselineTrainConfig, model: SegCharModel, charset: Charset,
                 preprocess: PreprocessConfig, segmenter: SegmentConfig, device: torch.device,
                 val: list[tuple[np.ndarray, str, np.ndarray]], meta: dict[str, Any], log: IO[str], start: float) -> None:
        self.config, self.model, self.charset, self.preprocess = config, model, charset, preprocess
        self.segmenter, self.device, self.val, self.meta, self.log_file, self.start = segmenter, device, val, meta, log, start
        self.out = Path(config.out)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.budget = config.minutes * 60.0 if config.minutes > 0 else float("inf")
        self.losses: list[torch.Tensor] = []
        self.last_eval = time.time()
        self.record: dict[str, Any] = {}  # the last evaluation's

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Crops (B, N, 1, S, S), counts (B,), targets (B, N) from the synthetic stream, endlessly."""
        c = self.config
        stream = CropStream(c.synth, c.seed, self.charset, self.preprocess, self.model.config.crop_size, c.jitter)
        loader = DataLoader(stream, batch_size=c.batch_size, collate_fn=_Collate(self.model.config.crop_size),
                            num_workers=c.workers, worker_init_fn=worker_init if c.workers else None,
                            persistent_workers=c.workers > 0, pin_memory=self.device.type == "cuda")
        return iter(loader)

    def lr(self, step: int) -> float:
        """Warm-up, then cosine decay over the step budget (else over the time budget)."""
        c = self.config
        frac = step / c.max_steps if c.max_steps else min(1.0, (time.time() - self.start) / self.budget)
        return c.lr * min(1.0, (step + 1) / max(1, c.warmup_steps)) * 0.5 * (1 + math.cos(math.pi * frac))

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], state: TrainState) -> int:
        """One cross-entropy step over every crop of the batch; returns the words trained on."""
        set_lr(self.optimizer, self.lr(state.step))
        crops, lengths, targets = (t.to(self.device, non_blocking=True) for t in batch)
        loss = SegCharModel.loss(self.model(crops, lengths), targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.losses.append(loss.detach())
        return len(lengths)

    def log(self, state: TrainState) -> bool:
        """Nothing between evaluations (each evaluation writes one line)."""
        return False

    def eval_due(self, state: TrainState) -> bool:
        """Every ``eval_every`` seconds, and every ``eval_every_steps`` steps when set."""
        c = self.config
        return (time.time() - self.last_eval >= c.eval_every
                or bool(c.eval_every_steps and state.step % c.eval_every_steps == 0))

    def validate(self, state: TrainState) -> bool:
        """Score the validation set end to end, log one line, keep the best checkpoint; never stops early."""
        rec = {"event": "eval", "step": state.step, "images": state.images_seen,
               "loss": float(torch.stack(self.losses).mean()), "lr": self.optimizer.param_groups[0]["lr"],
               "elapsed_s": round(time.time() - self.start, 1),
               **evaluate(self.model, self.val, self.charset, self.preprocess, self.segmenter)}
        self.losses, self.last_eval = [], time.time()
        if state.record_eval(rec, "e2e_word_accuracy", minimise=False):
            meta = {**rec, **self.meta, "images_seen": state.images_seen, "git_commit": git_commit(),
                    "wall_time_s": round(time.time() - self.start, 1)}
            save_checkpoint(self.out / "best.safetensors", self.model, self.charset, self.preprocess,
                            {**meta, "segmenter": self.segmenter.to_dict()}, half=True)
            rec["saved"] = "best.safetensors"
        write_record(self.log_file, rec)
        self.record = rec
        return False

    def save_due(self, state: TrainState) -> bool:
        """Never: the baseline's runs are short and do not resume."""
        return False

    def save_last(self, state: TrainState) -> None:
        """Nothing to save (no resume)."""

    def out_of_time(self, state: TrainState) -> bool:
        """Whether the wall-clock budget (counted from start-up) is spent."""
        return time.time() - self.start >= self.budget

    def stop_data(self) -> None:
        """Nothing to stop: the DataLoader's workers end with the process."""


def write_record(log: IO[str], rec: dict[str, Any]) -> None:
    """Print one record as key=value and append it to log.jsonl."""
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()), flush=True)
    log.write(json.dumps(rec) + "\n")
    log.flush()


# Flags of the command line (kept from before the config file) and the config key each one sets.
FLAGS: dict[str, tuple[type, str]] = {
    "--out": (str, "output folder (best.safetensors, log.jsonl)"),
    "--minutes": (float, "wall-clock budget, start-up and evaluations included (0: none; then --max-steps is required)"),
    "--max-steps": (int, "stop after this many steps; the lr schedule follows steps when set (0: the time budget alone)"),
    "--batch-size": (int, "words per batch"),
    "--lr": (float, "peak learning rate"),
    "--weight-decay": (float, "AdamW weight decay"),
    "--jitter": (float, "box jitter, in pixels of the 32-px-high input"),
    "--seed": (int, "the synthetic stream's seed"),
    "--val-size": (int, "validation words"),
    "--eval-every": (float, "seconds between evaluations"),
    "--eval-every-steps": (int, "also evaluate every N steps (0: by time only)"),
    "--workers": (int, "DataLoader workers rendering words"),
    "--threads": (int, "torch intra-op threads of the trainer"),
    "--device": (str, "auto (CUDA if present) | cpu | cuda | cuda:N"),
    "--cell": (str, "lstm | gru"),
    "--hidden": (int, "recurrent units per direction"),
    "--binarize": (str, "the segmenter's binarisation: otsu | sauvola | both"),
    "--split-ratio": (float, "the segmenter's split ratio"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m crnn_training.train_baseline", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML config (configs/baseline.yaml holds every key with its default)")
    for flag, (kind, text) in FLAGS.items():
        p.add_argument(flag, type=kind, default=None, help=text)
    p.add_argument("--synth", default=None, metavar="JSON",
                   help='renderer settings as a JSON object (e.g. {"words_file": "words.txt"}), as crnn_training.train\'s synth section')
    p.add_argument("--force", action="store_true",
                   help="start over in an --out folder that holds a run (its best.safetensors and log.jsonl are "
                   "replaced); without it such a folder is refused")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. hidden=64")
    return p


def load_config(argv: list[str] | None) -> BaselineTrainConfig:
    """The config of a command line: the --config file (or the defaults), then the flags, then key=value overrides."""
    return _load(argv)[0]


def _load(argv: list[str] | None, check_out: bool = False) -> tuple[BaselineTrainConfig, bool]:
    """(config, --force) of a command line; with ``check_out`` the --out folder is checked too (exit 2 if refused)."""
    parser = _parser()
    args = parser.parse_intermixed_args(argv)
    try:
        data = load_yaml(args.config) if args.config else {}
        for flag in FLAGS:
            value = getattr(args, flag[2:].replace("-", "_"))
            if value is not None:
                data[flag[2:].replace("-", "_")] = value
        if args.synth is not None:
            synth = json.loads(args.synth)
            if not isinstance(synth, dict):
                raise ConfigError("--synth: not a JSON object")
            data["synth"] = {**data.get("synth", {}), **synth}
        config = BaselineTrainConfig.from_dict(apply_overrides(data, args.overrides))
        if check_out:
            check_run_folder(config.out, option="--out", writes=RUN_OUTPUTS, force=args.force)
        return config, args.force
    except (ConfigError, OutputPathError, ValueError) as e:  # json's errors are ValueErrors
        parser.error(str(e))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, log and save the best checkpoint; returns the last log record."""
    config, force = _load(argv, check_out=True)
    start = time.time()  # the budget counts from here: the validation set and every evaluation included
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    single_threaded_cv2()
    out = Path(config.out)
    charset = Charset(DEFAULT_CHARS)
    preprocess = PreprocessConfig()
    segmenter = SegmentConfig(binarize=config.binarize, split_ratio=config.split_ratio)
    config.synth.charset = charset.chars  # the renderer writes the baseline's classes
    device = pick_device(config.device)
    arch = BaselineConfig(num_classes=charset.num_classes, cell=config.cell, hidden_size=config.hidden)
    model = SegCharModel(arch).to(device)

    # The validation set and the segmenter's own error rate on it (fixed, so measured once).
    val = validation_set(config.synth, config.val_size, charset, preprocess, config.val_seed)
    seg = segmentation_stats([segment(to_uint8(a), segmenter) for a, _, _ in val], [b for _, _, b in val])
    # The run folder only now, with everything ready: a run that fails to start leaves an old one as it was.
    out.mkdir(parents=True, exist_ok=True)
    if force and (gone := clear_run(out, RUN_OUTPUTS)):
        print(f"--force: removed the old run's {', '.join(gone)} from {out}", file=sys.stderr)
    log = open(out / "log.jsonl", "w", encoding="utf-8")
    write_record(log, {"event": "segmenter", **{f"seg_{k}": v for k, v in seg.items()}, **segmenter.to_dict()})
    params = sum(p.numel() for p in model.parameters())
    write_record(log, {"event": "start", "params": params, **arch.to_dict(), "val_words": len(val), "device": str(device)})

    meta = {"segmenter_stats": seg, "hardware": hardware(device, 1, config.workers, config.threads),
            "train_args": config.to_dict(), "data": {"stream": "synth", "seed": config.seed, "synth": config.to_dict()["synth"]}}
    task = BaselineTask(config, model, charset, preprocess, segmenter, device, val, meta, log, start)
    state = TrainState(total_steps=config.max_steps or sys.maxsize)
    model.train()
    fit(task, state)
    log.close()
    best = state.best_value if state.best_value is not None else -1.0
    return {**task.record, "best_e2e_word_accuracy": best, **{f"seg_{k}": v for k, v in seg.items()}}


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
