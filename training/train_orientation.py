"""``crnn train-orientation``: train crnn.reading.orientation's classifier on rendered words in every layout (CPU, minutes).

Each rendered word is used in all five layouts (upright, turned 90 / 180 / 270 degrees, stacked letters), so the
classes are balanced and the network cannot tell them apart by the word. Validation uses another seed; the
threshold stored with the weights (``min_confidence``) is the lowest at which at most ``--max-upright-turned``
of the validation's upright words would be turned.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from crnn.io.oriented_crops import ORIENTATIONS, classifier_input, from_frame, to_frame
from crnn_synth_data.config import SynthConfig
from crnn_synth_data.orientation import apply_layout
from crnn_synth_data.render import WordRenderer

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "weights" / "orientation.safetensors"
# Renders of many sizes: real crops come at any resolution, and the classifier sees them resized to 64 px.
RENDER_HEIGHTS = (32, 48, 64)


def render_set(count: int, seed: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classifier inputs (N, 32, 128) float32, labels in the network's frame (N,) int64 and whether each crop is
    tall (N,) bool, of ``count`` words, each in every layout.

    A one-letter word has no stacked layout (it would be the upright image). A third of the words get loose
    crops above and below (edges repeated) before their layouts are made, so that short upright words taller
    than wide are seen as upright, and turned words as often have loose ends.
    """
    first = WordRenderer(SynthConfig(height=RENDER_HEIGHTS[0]))
    renderers = [first] + [WordRenderer(SynthConfig(height=h), fonts=first.fonts) for h in RENDER_HEIGHTS[1:]]
    thumbs, labels, talls = [], [], []
    start = time.time()
    for index in range(count):
        renderer = renderers[index % len(renderers)]
        try:
            sample = renderer.render(seed, index)
        except OSError as e:  # a font file that cannot be opened now (e.g. being reinstalled): skip the word
            print(f"skipped word {index}: {e}", file=sys.stderr)
            continue
        r = random.Random(f"{seed}/{index}/pad")
        if r.random() < 1 / 3:
            h = sample.image.shape[0]
            top, bottom = int(h * r.uniform(0.1, 1.0)), int(h * r.uniform(0.1, 1.0))
            image = cv2.copyMakeBorder(sample.image, top, bottom, 0, 0, cv2.BORDER_REPLICATE)
            sample = replace(sample, image=image, boxes=sample.boxes + np.array([0, top, 0, top], np.float32))
        for k, layout in enumerate(ORIENTATIONS):
            if layout == "stacked" and len(sample.boxes) < 2:
                continue
            thumb, tall = classifier_input(apply_layout(sample, layout, random.Random(f"{seed}/{index}/{layout}")).image)
            thumbs.append(thumb)
            labels.append(ORIENTATIONS.index(to_frame(layout, tall)))
            talls.append(tall)
        if progress and (index + 1) % 1000 == 0:
            print(f"rendered {index + 1}/{count} words ({time.time() - start:.0f} s)", file=sys.stderr)
    return np.stack(thumbs), np.asarray(labels, np.int64), np.asarray(talls, bool)


def final_labels(probs: np.ndarray, tall: np.ndarray) -> list[str]:
    """Each crop's orientation (in the crop's frame) from the network's argmax, before any threshold."""
    return [from_frame(ORIENTATIONS[int(k)], bool(t)) for k, t in zip(probs.argmax(1), tall)]


def pick_threshold(probs: np.ndarray, truth: list[str], tall: np.ndarray, max_upright_turned: float) -> float:
    """The lowest min_confidence (of 0.5, 0.55, ..., 0.99) turning at most that share of the upright words."""
    found = final_labels(probs, tall)
    upright = [i for i, o in enumerate(truth) if o == "0"]
    for t in [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99]:
        turned = sum(found[i] != "0" and probs[i].max() >= t for i in upright) / max(1, len(upright))
        if turned <= max_upright_turned:
            return t
    return 0.99


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crnn train-orientation", description=__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=5000, help="rendered words for training (each in 5 layouts)")
    p.add_argument("--val-words", type=int, default=600, help="rendered words for validation (another seed)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0, help="render and training seed (validation uses seed + 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--max-upright-turned", type=float, default=0.005,
                   help="share of validation upright words the stored threshold may turn (default 0.005)")
    p.add_argument("--init", help="start from these orientation weights (to train further)")
    p.add_argument("--cache", help="keep the rendered crops in this .npz (reused when it exists: same --words, --seed)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"weights file (default {DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (e.g. the shipped weights)")
    return p


def _check(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot run (checked before minutes of rendering), or None."""
    from crnn.errors import OutputPathError
    from crnn.output_files import check_output_file

    for name in ("words", "val_words", "epochs", "batch_size", "threads"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}"
    if not args.lr > 0:
        return f"--lr must be positive, got {args.lr}"
    if not 0 <= args.max_upright_turned <= 1:
        return f"--max-upright-turned must be between 0 and 1, got {args.max_upright_turned}"
    if args.init and not Path(args.init).is_file():
        return f"--init {args.init}: no such file"
    try:
        check_output_file(args.out, option="--out", overwrite=args.force)
        if args.cache and not Path(args.cache).is_file():
            check_output_file(args.cache, option="--cache", overwrite=False)  # written once, then reused
    except OutputPathError as e:
        return str(e)
    return None


def main(argv: list[str] | None = None) -> int:
    """Render, train, validate, pick the threshold and write the weights; exit 0 (2 on bad arguments)."""
    args = _parser().parse_args(argv)
    problem = _check(args)
    if problem:
        print(f"crnn train-orientation: error: {problem}", file=sys.stderr)
        return 2
    import torch

    from crnn.checkpoints.orientation_file import save_orientation_model
    from crnn.models.orientation import OrientationNet

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        data = np.load(cache)
        x_train, y_train, x_val, y_val, t_val = (data[k] for k in ("x_train", "y_train", "x_val", "y_val", "t_val"))
    else:
        x_train, y_train, _ = render_set(args.words, args.seed, progress=True)
        x_val, y_val, t_val = render_set(args.val_words, args.seed + 1)
        if cache is not None:
            with open(cache, "xb") as f:  # at exactly this path (np.savez would add .npz to a name without it)
                np.savez(f, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, t_val=t_val)
    print(f"rendered {len(y_train)} + {len(y_val)} crops in {time.time() - t0:.0f} s", file=sys.stderr)

    model = OrientationNet()
    if args.init:
        from crnn.checkpoints.orientation_file import load_orientation_model

        model = load_orientation_model(args.init)[0]
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
    truth = final_labels(np.eye(len(ORIENTATIONS))[y_val], t_val)
    found = final_labels(probs, t_val)
    threshold = pick_threshold(probs, truth, t_val, args.max_upright_turned)
    per_class = {name: round(float(np.mean([f == o for f, o in zip(found, truth) if o == name])), 4)
                 for name in ORIENTATIONS}
    metadata = {
        "min_confidence": threshold,
        "validation_accuracy": per_class,
        "init": Path(args.init).name if args.init else None, "train_words": args.words, "val_words": args.val_words, "epochs": args.epochs, "seed": args.seed,
        "render_heights": list(RENDER_HEIGHTS), "wall_time_s": round(time.time() - t0),
        "upright_turned_at_threshold": round(sum(f != "0" and p.max() >= threshold for f, o, p in zip(found, truth, probs)
                                                 if o == "0") / max(1, truth.count("0")), 4),
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
