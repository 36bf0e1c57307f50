"""Train the segmented-character baseline: ``python -m crnn_training.train_baseline --out DIR --minutes 10``.

Read top to bottom: data (synthetic words cut at the renderer's true character boxes, with box jitter),
the fixed validation set (scored end to end with the automatic segmenter), the loop (cross-entropy,
AdamW, a time or step budget), checkpoints. Outputs in ``--out``: best.safetensors (model_type "baseline",
best end-to-end synthetic word accuracy) and log.jsonl (one line per evaluation).

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
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from crnn.baseline.model import BaselineConfig, SegCharModel, collate_crops
from crnn.baseline.recognizer import BaselineRecognizer, to_uint8, word_crops
from crnn.baseline.segment import SegmentConfig, binarize, segment, segmentation_stats
from crnn.charset import DEFAULT_CHARS, Charset
from crnn.checkpoint import save_checkpoint
from crnn.errors import CRNNError
from crnn.preprocess import PreprocessConfig, normalize
from crnn_synth_data import SynthConfig
from crnn_synth_data.dataset import SyntheticWordDataset
from crnn_training.data import single_threaded_cv2, worker_init
from crnn_training.train import git_commit, hardware, pick_device

VAL_SEED = 1_000_003  # a seed the training stream never uses (as in training/config.py)


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m crnn_training.train_baseline", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder (best.safetensors, log.jsonl)")
    p.add_argument("--minutes", type=float, default=10.0,
                   help="wall-clock budget, start-up and evaluations included (0: none; then --max-steps is required)")
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop after this many steps; the lr schedule follows steps when set (0: the time budget alone)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--jitter", type=float, default=2.0, help="box jitter, in pixels of the 32-px-high input")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=int, default=500)
    p.add_argument("--eval-every", type=float, default=120.0, help="seconds between evaluations")
    p.add_argument("--eval-every-steps", type=int, default=0, help="also evaluate every N steps (0: by time only)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers rendering words")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the trainer")
    p.add_argument("--device", default="auto", help="auto (CUDA if present) | cpu | cuda | cuda:N")
    p.add_argument("--synth", default="{}", metavar="JSON",
                   help='renderer overrides as a JSON object (e.g. {"words_file": "words.txt"}), as crnn_training.train\'s synth section')
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--binarize", choices=("otsu", "sauvola", "both"), default=SegmentConfig.binarize)
    p.add_argument("--split-ratio", type=float, default=SegmentConfig.split_ratio)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, log and save the best checkpoint; returns the last log record."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.minutes <= 0 and args.max_steps <= 0:
        parser.error("give a budget: --minutes > 0 or --max-steps > 0")
    try:
        synth_overrides = json.loads(args.synth)
        if not isinstance(synth_overrides, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        parser.error(f"--synth: {e}")
    start = time.time()  # the budget counts from here: the validation set and every evaluation included
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    single_threaded_cv2()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    charset = Charset(DEFAULT_CHARS)
    preprocess = PreprocessConfig()
    segmenter = SegmentConfig(binarize=args.binarize, split_ratio=args.split_ratio)
    synth = SynthConfig.from_dict({**synth_overrides, "charset": charset.chars})
    device = pick_device(args.device)
    config = BaselineConfig(num_classes=charset.num_classes, cell=args.cell, hidden_size=args.hidden)
    model = SegCharModel(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    log = open(out / "log.jsonl", "a", encoding="utf-8")

    def record(rec: dict[str, Any]) -> None:
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()

    # The validation set and the segmenter's own error rate on it (fixed, so measured once).
    val = validation_set(synth, args.val_size, charset, preprocess)
    seg = segmentation_stats([segment(to_uint8(a), segmenter) for a, _, _ in val], [b for _, _, b in val])
    record({"event": "segmenter", **{f"seg_{k}": v for k, v in seg.items()}, **segmenter.to_dict()})
    params = sum(p.numel() for p in model.parameters())
    hw = hardware(device, 1, args.workers, args.threads)
    record({"event": "start", "params": params, **config.to_dict(), "val_words": len(val), "device": str(device)})

    stream = CropStream(synth, args.seed, charset, preprocess, config.crop_size, args.jitter)
    loader = DataLoader(stream, batch_size=args.batch_size, collate_fn=_Collate(config.crop_size),
                        num_workers=args.workers, worker_init_fn=worker_init if args.workers else None,
                        persistent_workers=args.workers > 0, pin_memory=device.type == "cuda")
    budget = args.minutes * 60.0 if args.minutes > 0 else float("inf")
    best, step, images, last_eval, losses = -1.0, 0, 0, time.time(), []
    rec: dict[str, Any] = {}
    model.train()
    for crops, lengths, targets in loader:
        # Warm-up then cosine decay over the step budget, else over the time budget.
        frac = step / args.max_steps if args.max_steps else min(1.0, (time.time() - start) / budget)
        lr = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        crops, lengths, targets = (t.to(device, non_blocking=True) for t in (crops, lengths, targets))
        loss = SegCharModel.loss(model(crops, lengths), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        images += len(lengths)
        losses.append(loss.detach())
        done = time.time() - start >= budget or (args.max_steps and step >= args.max_steps)
        if done or time.time() - last_eval >= args.eval_every or (args.eval_every_steps and step % args.eval_every_steps == 0):
            rec = {"event": "eval", "step": step, "images": images, "loss": float(torch.stack(losses).mean()),
                   "lr": lr, "elapsed_s": round(time.time() - start, 1),
                   **evaluate(model, val, charset, preprocess, segmenter)}
            losses, last_eval = [], time.time()
            if rec["e2e_word_accuracy"] > best:
                best = rec["e2e_word_accuracy"]
                meta = {**rec, "images_seen": images, "segmenter_stats": seg, "hardware": hw, "git_commit": git_commit(),
                        "wall_time_s": round(time.time() - start, 1), "train_args": vars(args),
                        "data": {"stream": "synth", "seed": args.seed, "synth": synth_overrides}}
                save_checkpoint(out / "best.safetensors", model, charset, preprocess,
                                {**meta, "segmenter": segmenter.to_dict()}, half=True)
                rec["saved"] = "best.safetensors"
            record(rec)
        if done:
            break
    log.close()
    return {**rec, "best_e2e_word_accuracy": best, **{f"seg_{k}": v for k, v in seg.items()}}


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
