"""``crnn train-orientation``: train crnn.orientation's classifier on rendered words in every layout (CPU, minutes).

Each rendered word is used in all five layouts (upright, turned 90 / 180 / 270 degrees, stacked letters), so the
classes are balanced and the network cannot tell them apart by the word. Validation uses another seed; the
threshold stored with the weights (``min_confidence``) is the lowest at which at most ``--max-upright-turned``
of the validation's upright words would be turned.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from crnn.orientation import ORIENTATIONS, thumbnail
from crnn_synth_data.config import SynthConfig
from crnn_synth_data.orientation import render_in_layout
from crnn_synth_data.render import WordRenderer

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "weights" / "orientation.safetensors"
# Renders of many sizes: real crops come at any resolution, and the classifier sees them resized to 64 px.
RENDER_HEIGHTS = (32, 48, 64)


def render_set(count: int, seed: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Classifier inputs (count x 5, 64, 64) float32 and labels (count x 5,) int64: each word in every layout."""
    first = WordRenderer(SynthConfig(height=RENDER_HEIGHTS[0]))
    renderers = [first] + [WordRenderer(SynthConfig(height=h), fonts=first.fonts) for h in RENDER_HEIGHTS[1:]]
    thumbs, labels = [], []
    index = 0
    done = 0
    start = time.time()
    while done < count:
        renderer = renderers[index % len(renderers)]
        layouts = [render_in_layout(renderer, seed, index, layout) for layout in ORIENTATIONS]
        index += 1
        if len(layouts[0].boxes) < 2:  # one letter: "stacked" would be the upright image
            continue
        for k, sample in enumerate(layouts):
            thumbs.append(thumbnail(sample.image))
            labels.append(k)
        done += 1
        if progress and done % 1000 == 0:
            print(f"rendered {done}/{count} words ({time.time() - start:.0f} s)", file=sys.stderr)
    return np.stack(thumbs), np.asarray(labels, np.int64)


def pick_threshold(probs: np.ndarray, labels: np.ndarray, max_upright_turned: float) -> float:
    """The lowest min_confidence (of 0.5, 0.55, ..., 0.99) turning at most that share of the upright words."""
    upright = probs[labels == 0]
    for t in [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99]:
        k = upright.argmax(1)
        turned = ((k != 0) & (upright.max(1) >= t)).mean()
        if turned <= max_upright_turned:
            return t
    return 0.99


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crnn train-orientation", description=__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=6000, help="rendered words for training (each in 5 layouts)")
    p.add_argument("--val-words", type=int, default=600, help="rendered words for validation (another seed)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0, help="render and training seed (validation uses seed + 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--max-upright-turned", type=float, default=0.005,
                   help="share of validation upright words the stored threshold may turn (default 0.005)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"weights file (default {DEFAULT_OUT})")
    return p


def main(argv: list[str] | None = None) -> int:
    """Render, train, validate, pick the threshold and write the weights; exit 0."""
    args = _parser().parse_args(argv)
    import torch

    from crnn.orientation_model import OrientationNet, save_orientation_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    x_train, y_train = render_set(args.words, args.seed, progress=True)
    x_val, y_val = render_set(args.val_words, args.seed + 1)
    print(f"rendered {len(y_train)} + {len(y_val)} crops in {time.time() - t0:.0f} s", file=sys.stderr)

    model = OrientationNet()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (len(y_train) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=max(1, steps))
    xt, yt = torch.from_numpy(x_train)[:, None], torch.from_numpy(y_train)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(yt), generator=g)
        total = 0.0
        for b in range(len(yt) // args.batch_size):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size]
            x = xt[idx]
            # Either polarity (the standardised crop negated): light text on dark is as common as dark on light.
            flip = (torch.rand(len(idx), 1, 1, 1, generator=g) < 0.5).float() * 2 - 1
            loss = torch.nn.functional.cross_entropy(model(x * flip), yt[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        probs = _probs(model, x_val)
        acc = (probs.argmax(1) == y_val).mean()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / max(1, len(yt) // args.batch_size):.4f}, "
              f"validation accuracy {acc:.4f} ({time.time() - t0:.0f} s)", file=sys.stderr)

    probs = _probs(model, x_val)
    threshold = pick_threshold(probs, y_val, args.max_upright_turned)
    per_class = {name: float((probs[y_val == k].argmax(1) == k).mean()) for k, name in enumerate(ORIENTATIONS)}
    metadata = {
        "min_confidence": threshold,
        "validation_accuracy": per_class,
        "train_words": args.words, "val_words": args.val_words, "epochs": args.epochs, "seed": args.seed,
        "render_heights": list(RENDER_HEIGHTS), "wall_time_s": round(time.time() - t0),
    }
    path = save_orientation_model(args.out, model, list(ORIENTATIONS), metadata)
    print(f"validation accuracy per class {per_class}; min_confidence {threshold}; wrote {path}")
    return 0


def _probs(model: object, x: np.ndarray) -> np.ndarray:
    import torch

    model.eval()  # type: ignore[attr-defined]
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(x)[:, None]), 1).numpy()  # type: ignore[operator]


if __name__ == "__main__":
    sys.exit(main())
