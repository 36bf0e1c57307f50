"""``crnn compare``: evaluate several models on the same inputs and write a Markdown report with PNG charts.

Every model reads (a) a fixed synthetic test set rendered in memory, in three spacing classes (tight,
normal, wide) from the same seed, and (b) every labeled folder given. The report holds, per dataset, word
accuracy, CER and images/s; accuracy against word length and character spacing; the segmenter's own error
rate against the renderer's true boxes; a gallery of typical failures per model; and each model's
checkpoint metadata (architecture, parameters, images seen, training hardware).

With ``--runs-dir`` the models are the budget-matched set of :mod:`crnn_training.experiment` (the CRNN with
each recurrent head and the segmented baseline, same stream, same image count), trained first when
``--train-images`` is given; the report then adds the recurrent-head ablation and, for the recurrent
CRNNs, the vanishing-gradient chart of :mod:`crnn_training.gradient_flow`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crnn.reading.baseline_recognizer import BaselineRecognizer, to_uint8
from crnn.models.baseline.segment import SegmentConfig, segment, segmentation_stats
from crnn.errors import CRNNError
from crnn.machine import cpu_cores
from crnn.metrics import compute_metrics, normalize_protocol
from crnn.models.crnn import CRNN, count_parameters
from crnn.reading.precision import PRECISIONS, resolve_precision
from crnn.kinds.registry import get_kind
from crnn.reading.text_recognizer import TextRecognizer
from crnn_training.run_info import cpu_name, git_describe

SYNTH_SEED = 2_000_003  # a stream neither trainer uses (training seeds are small, validation uses 1_000_003)
SPACINGS: dict[str, dict[str, float]] = {
    "tight": {"p_tight_spacing": 1.0, "p_wide_spacing": 0.0},
    "normal": {"p_tight_spacing": 0.0, "p_wide_spacing": 0.0},
    "wide": {"p_tight_spacing": 0.0, "p_wide_spacing": 1.0},
}
LENGTH_BUCKETS = ("1-3", "4-6", "7-9", "10+")
GALLERY_SIZE = 16


# ---------------------------------------------------------------------------------------------
# bucketing helpers
# ---------------------------------------------------------------------------------------------


# The heading and lead of the same-budget table of each run set of crnn_training.experiment.
SET_SECTIONS: dict[str, tuple[str, str]] = {
    "heads": ("Recurrent-head ablation (CRNN, same budget)",
              "The same `small` backbone, data stream and image count; only the head between the conv features "
              "and the per-frame classifier changes."),
    "models": ("Backbones (CRNN, same budget)",
               "The same recurrent head, data stream and image count; only the backbone (and its mixing blocks and "
               "input height) changes."),
    "decoders": ("Decoders (same encoder, same budget)",
                 "The same encoder (backbone and recurrent layers), data stream and image count; only what reads its "
                 "frames changes: CTC, the attention decoder (teacher forced, or with scheduled sampling), or CTC "
                 "guided by an attention head during training only (GTC: the head is dropped for inference)."),
}


def length_bucket(n: int) -> str:
    """The word-length bucket ("1-3", "4-6", "7-9", "10+") of a length ``n`` (0 goes to "1-3")."""
    return "10+" if n >= 10 else LENGTH_BUCKETS[max(n - 1, 0) // 3]


def bucket_accuracy(predictions: Sequence[str], targets: Sequence[str], keys: Sequence[str],
                    order: Sequence[str]) -> dict[str, tuple[float, int]]:
    """Protocol word accuracy and sample count per key, in ``order`` (accuracy 0.0 for an empty bucket)."""
    out: dict[str, tuple[float, int]] = {}
    for k in order:
        pairs = [(p, t) for p, t, key in zip(predictions, targets, keys, strict=True) if key == k]
        hits = sum(normalize_protocol(p) == normalize_protocol(t) for p, t in pairs)
        out[k] = (hits / len(pairs) if pairs else 0.0, len(pairs))
    return out


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """One evaluation set: per model prepared arrays (same samples, each model's own preprocessing), targets, groups."""

    name: str
    texts: list[str]
    arrays: dict[str, list[np.ndarray]]
    spacing: list[str] = field(default_factory=list)  # synthetic only
    boxes: list[np.ndarray] = field(default_factory=list)  # synthetic only, true boxes in array coordinates


def render_synthetic(count: int, charset_chars: str, seed: int = SYNTH_SEED) -> list[tuple[np.ndarray, str, np.ndarray, str]]:
    """(gray image, text without spaces, true boxes, spacing class) of ``count`` words split over the spacing classes."""
    from crnn_synth_data import SynthConfig
    from crnn_synth_data.render import render_sample

    out = []
    per_class = max(1, count // len(SPACINGS))
    for spacing, knobs in SPACINGS.items():  # one class after another: the cached renderer is rebuilt 3 times
        config = SynthConfig.from_dict({"charset": charset_chars, **knobs})
        for i in range(per_class):  # the same indices in every class: same words and styles, other spacing
            s = render_sample(config, seed, i)
            gray = s.image if s.image.ndim == 2 else s.image.mean(axis=2).astype(np.uint8)
            out.append((gray, s.text, np.asarray(s.boxes, np.float32), spacing))
    return out


def reference_model(models: dict[str, TextRecognizer]) -> TextRecognizer:
    """The first baseline model (its segmenter is measured), else the first model."""
    return next((m for m in models.values() if isinstance(m, BaselineRecognizer)), next(iter(models.values())))


def synthetic_dataset(models: dict[str, TextRecognizer], count: int, seed: int = SYNTH_SEED) -> Dataset:
    """The fixed synthetic test set, prepared for every model (words the renderer could not box are dropped)."""
    from crnn_training.train_baseline import prepare_sample

    ref = reference_model(models)  # true boxes are scaled to this model's prepared arrays
    texts, spacing, boxes, keep = [], [], [], []
    samples = render_synthetic(count, ref.charset.chars, seed)
    for i, (gray, text, b, sp) in enumerate(samples):
        prepared = prepare_sample(gray, text, b, ref.charset, ref.preprocess)
        if prepared is None or not all(m.charset.supports(prepared[1]) for m in models.values()):
            continue
        keep.append(i)
        texts.append(prepared[1])
        boxes.append(prepared[2])
        spacing.append(sp)
    arrays = {name: [m.prepare(samples[i][0]) for i in keep] for name, m in models.items()}
    return Dataset("synthetic", texts, arrays, spacing, boxes)


def folder_dataset(models: dict[str, TextRecognizer], folder: str, limit: int = 0) -> Dataset:
    """A labeled folder read by crnn_training.data for every model; only samples every model could read are kept."""
    from crnn_training.data import load_labeled_arrays

    loaded = {name: load_labeled_arrays(folder, m.charset, m.preprocess, limit) for name, m in models.items()}
    common = set.intersection(*(set(paths) for _, _, paths, _ in loaded.values()))
    first = next(iter(loaded.values()))
    texts = [t for t, p in zip(first[1], first[2]) if p in common]
    arrays = {name: [a for a, p in zip(arr, paths) if p in common] for name, (arr, _, paths, _) in loaded.items()}
    return Dataset(Path(folder).name or folder, texts, arrays)


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


def run_model(model: TextRecognizer, arrays: list[np.ndarray], strip_spaces: bool) -> tuple[list[str], float]:
    """Predicted texts of one model on prepared arrays, and images per second."""
    model.recognize_prepared(arrays[:8], decoder="greedy")  # warm-up: first-call allocations are not the model's speed
    t0 = time.perf_counter()
    # Greedy: the report compares the networks, not the language model (the baseline has none).
    preds = [p.text for p in model.recognize_prepared(arrays, decoder="greedy")] if arrays else []
    seconds = time.perf_counter() - t0
    if strip_spaces:  # the synthetic targets have no spaces (the baseline never predicts one)
        preds = [p.replace(" ", "") for p in preds]
    return preds, len(arrays) / seconds if seconds > 0 else 0.0


def model_info(name: str, path: str, model: TextRecognizer) -> dict[str, Any]:
    """Architecture, parameters, images seen, training time and hardware from a loaded model's checkpoint."""
    meta = model.metadata or {}
    arch = get_kind(model.kind).summary(model.model.config)
    hw = meta.get("hardware")
    if isinstance(hw, dict):
        hardware = hw.get("gpu") if str(hw.get("device", "")).startswith("cuda") and hw.get("gpu") else f"{hw.get('cpu', 'CPU')}"
        hardware += f", {hw.get('cpu_cores', '?')} CPU cores"
    else:
        hardware = "not recorded"
    seen = meta.get("images_seen", meta.get("images"))
    wall = meta.get("wall_time_s", meta.get("elapsed_s"))
    return {"name": name, "path": path, "arch": arch, "params": count_parameters(model.model),
            "images_seen": int(seen) if isinstance(seen, (int, float)) else None,
            "train_minutes": float(wall) / 60 if isinstance(wall, (int, float)) else None,
            "steps": meta.get("step"), "hardware": hardware}


def pct(x: float) -> str:
    """A share as a percentage with one decimal."""
    return f"{100 * x:.1f} %"


def human(n: float | None) -> str:
    """A count as 1.2k / 4.21M, or 'not recorded'."""
    if n is None:
        return "not recorded"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(int(n))


def slug(name: str) -> str:
    """A file-name-safe version of a model name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "model"


# ---------------------------------------------------------------------------------------------
# charts
# ---------------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(path: Path, panels: dict[str, dict[str, dict[str, tuple[float, int]]]], title: str) -> None:
    """Grouped bars: one panel per dataset, groups = buckets, one bar per model (panels[ds][model][bucket])."""
    plt = _plt()
    n_models = max(len(m) for m in panels.values())
    legend_rows = -(-n_models // 4)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(3.4, 0.5 * n_models + 1.8) * len(panels) + 0.6,
                                                      2.8 + 0.25 * legend_rows), squeeze=False)
    for ax, (ds, per_model) in zip(axes[0], panels.items()):
        buckets = list(next(iter(per_model.values())))
        x, w = np.arange(len(buckets)), 0.8 / len(per_model)
        for j, (name, acc) in enumerate(per_model.items()):
            ax.bar(x + (j - (len(per_model) - 1) / 2) * w, [100 * acc[b][0] for b in buckets], w, label=name)
        ax.set_xticks(x, buckets)
        ax.set_ylim(0, 112 + 8 * legend_rows)  # headroom for the legend above the 100 % line
        ax.set_yticks(range(0, 101, 20))
        ax.set_title(ds, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=min(4, len(per_model)), loc="upper center", frameon=False)
    axes[0][0].set_ylabel("% of words")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def gallery(path: Path, items: list[tuple[np.ndarray, str, str]], title: str) -> None:
    """A grid of word images (prepared arrays) with predicted and true text under each."""
    plt = _plt()
    cols = 4
    rows = max(1, -(-len(items) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(8, 1.05 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (array, pred, truth) in zip(axes.flat, items):
        ax.imshow(to_uint8(array[:, :256]), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"pred: {pred[:22]!r}\ntrue: {truth[:22]!r}", fontsize=7, family="monospace")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def gradient_chart(path: Path, curves: dict[str, np.ndarray]) -> None:
    """Relative gradient norm ||dL_T/dh_{T-k}|| against k, one line per model, log scale."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for name, values in curves.items():
        ax.semilogy(np.arange(len(values)), values, label=name, lw=1.6)
    ax.set_xlabel("k (frames before the last frame; 1 frame = 4 px of a 32-px-high image)")
    ax.set_ylabel("||dL_T / dh_(T-k)||, relative to k=0")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.suptitle("gradient reaching the top layer's forward state k frames back (trained models)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def gradient_curves(models: dict[str, TextRecognizer], dataset: Dataset, names: list[str], width: int = 256,
                    count: int = 64, max_k: int = 48) -> dict[str, np.ndarray]:
    """Gradient-flow curves of the recurrent CRNNs among ``names`` on the first ``count`` synthetic words.

    Each word is resized to ``width`` px so a batch has one frame count (T = width / 4).
    """
    import copy

    import cv2

    from crnn_training.gradient_flow import hidden_gradient_norms

    out: dict[str, np.ndarray] = {}
    for name in names:
        m = models[name]
        if not isinstance(m.model, CRNN) or m.model.rnn is None:  # the vanishing-gradient study needs a CRNN's RNN
            continue
        arrays = dataset.arrays[name][:count]
        batch = torch.from_numpy(np.stack([cv2.resize(a, (width, a.shape[0]), interpolation=cv2.INTER_AREA)
                                           for a in arrays]))[:, None].float()
        out[name] = hidden_gradient_norms(copy.deepcopy(m.model), batch, max_k)
    return out


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _precision_used(asked: str) -> str:
    used = resolve_precision(asked, torch.device("cpu"))
    return used if used == asked else f"{asked} ({used} here)"


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def budget_note(infos: list[dict[str, Any]]) -> str:
    """A plain sentence on whether the models' training budgets (images seen) match."""
    seen = [i["images_seen"] for i in infos]
    if any(s is None for s in seen):
        return ("**Training budgets unknown**: not every checkpoint records how many images it saw, so this is "
                "not the budget-matched comparison issue 7 asks for.")
    lo, hi = min(seen), max(seen)
    if hi > 1.1 * lo:
        parts = ", ".join(f"{i['name']} {human(i['images_seen'])}" for i in infos)
        return (f"**The training budgets differ** ({parts} images seen, {hi / max(lo, 1):.0f}x apart). "
                "This is NOT a fair, budget-matched comparison; the gap below mixes the method "
                "with the budget. Budget-matched models are still to be trained.")
    return f"Training budgets match within 10 % ({human(lo)} to {human(hi)} images seen)."


def write_report(out: Path, charts: Path, infos: list[dict[str, Any]], datasets: list[Dataset],
                 results: dict[str, dict[str, tuple[list[str], float]]], seg: dict[str, dict[str, float]],
                 args: argparse.Namespace, heads: dict[str, str] | None = None,
                 gradients: dict[str, np.ndarray] | None = None, gallery_models: list[str] | None = None) -> None:
    """Write the Markdown report and its PNG charts.

    ``heads`` names the CRNNs of the recurrent-head ablation (model name -> head description);
    ``gradients`` holds their gradient-flow curves; ``gallery_models`` limits the failure galleries.
    """
    charts.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    rel = Path(os.path.relpath(charts, out.parent))
    names = [i["name"] for i in infos]
    # The segmenter's statistics belong with a segmented-character baseline; a set of CRNN runs alone (every model
    # a run of the set) leaves them out.
    baseline = not heads or any(n not in heads for n in names)
    L: list[str] = [f"# {args.title}", ""]
    L += [f"Generated by `crnn compare` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {git_describe()}; "
          f"evaluated on {cpu_name()}, {cpu_cores()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch thread(s), precision {_precision_used(args.precision)}.", "",
          "```", "crnn compare " + " ".join(args.argv), "```", "", "## Models", ""]
    L += _md_table(["model", "checkpoint", "architecture", "parameters", "images seen", "training time", "training hardware"],
                   [[i["name"], f"`{i['path']}`", i["arch"], f"{i['params'] / 1e6:.2f}M", human(i["images_seen"]),
                     f"{i['train_minutes']:.1f} min" if i["train_minutes"] is not None else "not recorded", i["hardware"]]
                    for i in infos])
    L += ["", budget_note(infos), ""]
    synth = next((d for d in datasets if d.name == "synthetic"), None)
    if synth is not None:
        n = {s: synth.spacing.count(s) for s in SPACINGS}
        L += [f"Synthetic test set: {len(synth.texts)} words rendered in memory with `synth_data` (seed {args.seed}, default "
              f"`SynthConfig`), the same indices in three spacing classes ({', '.join(f'{k} {v}' for k, v in n.items())}; "
              "tight = touching or overlapping characters, wide = gaps of 5-35 % of the font size). Targets and "
              "predictions have spaces removed (the baseline finds characters only). Real sets: "
              "labels as given.", ""]
    L += ["## Summary", ""]
    for d in datasets:
        acc = sorted(((compute_metrics(results[d.name][n][0], d.texts).word_accuracy_protocol, n) for n in names),
                     reverse=True)
        L += [f"- {d.name}: " + ", ".join(f"{n} {pct(a)}" for a, n in acc)
              + (f" (word accuracy, protocol): {acc[0][1]} leads by {100 * (acc[0][0] - acc[1][0]):.1f} points."
                 if len(acc) > 1 else ".")]
    if synth is not None and baseline:
        L += ["- Segmenter count match on synthetic words: " + ", ".join(f"{s} {pct(v['count_match'])}" for s, v in seg.items())
              + " (touching characters are where segmentation breaks)."]
    if not budget_note(infos).startswith("Training budgets match"):
        L += ["- Caveat: the training budgets are not matched (see above), so these gaps are not yet the method's alone."]
    if getattr(args, "notes", None):
        L += ["", Path(args.notes).read_text(encoding="utf-8").strip()]
    if heads:
        title, text = SET_SECTIONS.get(getattr(args, "set", "heads"), SET_SECTIONS["heads"])
        L += ["", f"## {title}", "", text + " Word accuracy under the benchmark protocol.", ""]
        ds_names = [d.name for d in datasets]
        params = {i["name"]: i["params"] for i in infos}
        rows = []
        for name, head in heads.items():
            metrics = [compute_metrics(results[d.name][name][0], d.texts) for d in datasets]
            speed = results[ds_names[0]][name][1] if ds_names else 0.0
            rows.append([name, head, f"{params[name] / 1e6:.2f}M", *(pct(m.word_accuracy_protocol) for m in metrics),
                         *(f"{m.cer:.3f}" for m in metrics), f"{speed:.0f}"])
        L += _md_table(["model", "head", "parameters", *(f"{d} acc" for d in ds_names), *(f"{d} CER" for d in ds_names),
                        f"images/s ({ds_names[0] if ds_names else '-'})"], rows)
        L += [""]
    if gradients:
        gradient_chart(charts / "gradient_flow.png", gradients)
        ks = [k for k in (1, 2, 5, 10, 20, 40) if all(k < len(v) for v in gradients.values())]
        L += ["### Vanishing gradients, measured", "",
              "For each trained recurrent CRNN: the loss at the last frame T (cross-entropy against the model's own "
              "best-path label there) differentiated with respect to the top recurrent layer's forward hidden state "
              "k frames earlier, relative to k = 0, geometric mean over 64 synthetic words resized to 256 px (64 "
              "frames); computed in float64 by `training/gradient_flow.py`.", "",
              f"![gradient flow]({rel / 'gradient_flow.png'})", ""]
        L += _md_table(["model", *(f"k={k}" for k in ks)], [[n, *(f"{v[k]:.1e}" for k in ks)] for n, v in gradients.items()])
        L += [""]
    L += ["", "## Accuracy per dataset", "",
          "Word accuracy under the benchmark protocol (lowercase, 0-9a-z) and case-sensitive; CER on the raw text; "
          "'wrong length' is the share of predictions with another number of characters than the label "
          "(for the baseline: mostly segmentation errors); images/s includes segmentation, batch 64.", ""]
    for d in datasets:
        rows = []
        for name in names:
            preds, speed = results[d.name][name]
            m = compute_metrics(preds, d.texts)
            wrong_len = np.mean([len(p) != len(t) for p, t in zip(preds, d.texts)]) if preds else 0.0
            rows.append([name, str(m.count), pct(m.word_accuracy_protocol), pct(m.word_accuracy_case),
                         f"{m.cer:.3f}", pct(float(wrong_len)), f"{speed:.0f}"])
        L += [f"### {d.name}", ""]
        L += _md_table(["model", "images", "word acc (protocol)", "word acc (case)", "CER", "wrong length", "images/s"], rows)
        L += [""]
    # accuracy vs word length
    by_len = {d.name: {name: bucket_accuracy(results[d.name][name][0], d.texts,
                                             [length_bucket(len(t)) for t in d.texts], LENGTH_BUCKETS)
                       for name in names} for d in datasets}
    bar_chart(charts / "length.png", by_len, "word accuracy (protocol) vs word length (characters)")
    L += ["## Accuracy vs word length", "", f"![accuracy vs word length]({rel / 'length.png'})", ""]
    for ds, per_model in by_len.items():
        L += [f"**{ds}** (protocol word accuracy, words in bucket)", ""]
        L += _md_table(["model", *LENGTH_BUCKETS],
                       [[name, *(f"{pct(a)} ({c})" for a, c in acc.values())] for name, acc in per_model.items()])
        L += [""]
    if synth is not None:
        by_sp = {name: bucket_accuracy(results["synthetic"][name][0], synth.texts, synth.spacing, list(SPACINGS))
                 for name in names}
        seg_panel = {"segmenter alone": {k: {s: (seg[s][k], int(seg[s]["words"])) for s in SPACINGS}
                                   for k in ("count_match", "exact")}} if baseline else {}
        bar_chart(charts / "spacing.png", {"models (synthetic)": by_sp, **seg_panel},
                  "synthetic words: word accuracy (protocol) by spacing"
                  + ("; the segmenter against the true boxes" if baseline else ""))
        L += ["## Accuracy vs character spacing (synthetic)", "", f"![accuracy vs spacing]({rel / 'spacing.png'})", ""]
        L += _md_table(["model", *SPACINGS], [[name, *(f"{pct(a)} ({c})" for a, c in acc.values())]
                                              for name, acc in by_sp.items()])
        L += [""]
    if synth is not None and baseline:
        L += ["", "### The segmenter alone, against the renderer's true boxes", "",
              "count match: words segmented into as many pieces as characters; exact: pieces match the true boxes "
              "one to one, in order, IoU >= 0.5; mean IoU: best IoU of each true box (true boxes span the glyph "
              "advance, segments are ink-tight, so this stays below 1 even when the segmentation is right).", ""]
        L += _md_table(["spacing", "words", "count match", "exact", "mean IoU"],
                       [[s, str(int(v["words"])), pct(v["count_match"]), pct(v["exact"]), f"{v['mean_iou']:.2f}"]
                        for s, v in seg.items()])
        L += [""]
    # Failure galleries come from the synthetic set: the report is committed, and benchmark images must
    # never be copied into the repository (study real errors with `crnn eval --errors` instead).
    real = [d for d in datasets if d.name == "synthetic"] or datasets
    L += ["## Typical failures", "", f"{GALLERY_SIZE} errors drawn at random (fixed seed) from "
          f"{', '.join(d.name for d in real)}, as each model sees the image (32 px high).", ""]
    for name in gallery_models or names:
        errs = [(d.arrays[name][i], p, t) for d in real for i, (p, t) in enumerate(zip(results[d.name][name][0], d.texts))
                if normalize_protocol(p) != normalize_protocol(t)]
        pick = np.random.default_rng(0).permutation(len(errs))[:GALLERY_SIZE]
        file = f"failures_{slug(name)}.png"
        gallery(charts / file, [errs[i] for i in sorted(pick)], f"{name}: typical errors")
        L += [f"**{name}** ({len(errs)} errors)", "", f"![{name} failures]({rel / file})", ""]
    out.write_text("\n".join(L).rstrip() + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# crnn compare
# ---------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crnn compare", description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="a model to compare (repeatable; CRNN or baseline checkpoint)")
    p.add_argument("--runs-dir", help="the budget-matched set of crnn_training.experiment in this folder (the CRNN "
                   "head ablation + the baseline); trained first with --train-images")
    p.add_argument("--train-images", type=int, default=0,
                   help="train the set into --runs-dir (runs already trained on this budget are kept); "
                   "--quick alone trains 3,000 images each into runs/compare-quick")
    p.add_argument("--train-config", default="configs/compare.yaml", help="preset of the CRNN runs")
    p.add_argument("--force", action="store_true", help="with --train-images: retrain run folders of --runs-dir that "
                   "hold a run not finished on this budget (without it they are refused)")
    p.add_argument("--set", default="heads", choices=("heads", "models", "decoders"),
                   help="the run set of --runs-dir: heads (issue 7's head ablation + baseline), models (issue 19's "
                   "backbones) or decoders (issue 20: CTC, attention decoder, GTC)")
    p.add_argument("--only", default="", help="comma-separated run slugs of the set to train and report (default: all)")
    p.add_argument("--lanes", type=int, default=1, help="runs trained at once")
    p.add_argument("--device", default="auto", help="training device (auto | cpu | cuda)")
    p.add_argument("--workers", type=int, default=1, help="rendering workers per training run")
    p.add_argument("--title", default="CRNN + CTC vs the segmented-character baseline", help="the report's heading")
    p.add_argument("--notes", help="a Markdown file of discussion inserted after the summary")
    p.add_argument("--data", action="append", default=[], metavar="DIR", help="labeled folder (repeatable)")
    p.add_argument("--synth-count", type=int, default=1000, help="synthetic test words (split over 3 spacing classes)")
    p.add_argument("--seed", type=int, default=SYNTH_SEED, help="seed of the synthetic test set")
    p.add_argument("--limit", type=int, default=0, help="at most N images per labeled folder (0: all)")
    p.add_argument("--quick", action="store_true", help="small budget: 60 synthetic words, 200 images per folder "
                   "(and, with no --model or --runs-dir, a 3,000-image training set)")
    p.add_argument("--out", help="the report (default docs/comparison.md; with --quick runs/compare-quick/comparison.md, "
                   "so a quick run never overwrites the committed report)")
    p.add_argument("--charts-dir", help="PNG charts (default: a folder named after --out, beside it)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (images/s are measured with these)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="inference precision of every model (as crnn ocr's)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``crnn compare``: evaluate every model on the same sets and write the report; 2 on bad input."""
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.synth_count, args.limit = min(args.synth_count, 60), args.limit or 200
        if not args.model and not args.runs_dir:
            args.runs_dir, args.train_images = "runs/compare-quick", args.train_images or 3000
    args.out = args.out or ("runs/compare-quick/comparison.md" if args.quick else "docs/comparison.md")
    args.charts_dir = args.charts_dir or str(Path(args.out).with_suffix(""))
    if args.train_images and not args.runs_dir:
        print("crnn compare: error: --train-images needs --runs-dir", file=sys.stderr)
        return 2
    if not args.model and not args.runs_dir:
        print("crnn compare: error: give --model NAME=CHECKPOINT (repeatable) or --runs-dir", file=sys.stderr)
        return 2
    specs = []
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            print(f"crnn compare: error: --model wants NAME=CHECKPOINT, got {spec!r}", file=sys.stderr)
            return 2
        specs.append((name, path))
    heads: dict[str, str] = {}
    if args.runs_dir:
        from crnn_training.experiment import RUN_SETS, train_all

        runs = tuple(r for r in RUN_SETS[args.set] if not args.only or r.slug in args.only.split(","))
        try:
            if args.train_images:
                train_all(args.runs_dir, args.train_images, config=args.train_config, lanes=args.lanes,
                          device=args.device, workers=args.workers, val_size=200 if args.quick else 1000, runs=runs,
                          force=args.force)
        except (CRNNError, OSError) as e:
            print(f"crnn compare: error: {e}", file=sys.stderr)
            return 2
        for run in runs:
            ckpt = Path(args.runs_dir) / run.slug / "best.safetensors"
            if ckpt.is_file():
                specs.append((run.label, str(ckpt)))
                if run.kind == "crnn":
                    heads[run.label] = run.head
            else:
                print(f"[compare] {run.slug}: no checkpoint in {ckpt.parent}, left out", file=sys.stderr)
        if not specs:
            print(f"crnn compare: error: no trained run in {args.runs_dir}", file=sys.stderr)
            return 2
    try:
        from crnn.kinds.loading import load_recognizer

        models = {name: load_recognizer(path, threads=args.threads, precision=args.precision) for name, path in specs}
        infos = [model_info(name, path, models[name]) for name, path in specs]
        datasets = [synthetic_dataset(models, args.synth_count, args.seed)] if args.synth_count > 0 else []
        datasets += [folder_dataset(models, folder, args.limit) for folder in args.data]
    except (CRNNError, ValueError, OSError) as e:
        print(f"crnn compare: error: {e}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, tuple[list[str], float]]] = {}
    for d in datasets:
        results[d.name] = {}
        for name, m in models.items():
            results[d.name][name] = run_model(m, d.arrays[name], strip_spaces=d.name == "synthetic")
            acc = compute_metrics(results[d.name][name][0], d.texts).word_accuracy_protocol
            print(f"[compare] {d.name:<10} {name:<12} {len(d.texts):>5} images  acc {pct(acc):>8}  "
                  f"{results[d.name][name][1]:.0f} img/s", file=sys.stderr)
    seg: dict[str, dict[str, float]] = {}
    synth = next((d for d in datasets if d.name == "synthetic"), None)
    if synth is not None:  # the segmenter of the first baseline model (default settings when there is none)
        ref = reference_model(models)
        config = ref.segmenter if isinstance(ref, BaselineRecognizer) else SegmentConfig()
        arrays = synth.arrays[next(n for n, m in models.items() if m is ref)]
        for s in SPACINGS:
            idx = [i for i, sp in enumerate(synth.spacing) if sp == s]
            seg[s] = segmentation_stats([segment(to_uint8(arrays[i]), config) for i in idx], [synth.boxes[i] for i in idx])
    gradients = gradient_curves(models, synth, list(heads)) if heads and synth is not None else {}
    main_pair = [n for n in models if n not in heads or n == next(iter(heads), None)]
    write_report(Path(args.out), Path(args.charts_dir), infos, datasets, results, seg, args, heads, gradients,
                 main_pair if heads else None)
    print(f"[compare] wrote {args.out} and charts in {args.charts_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
