"""``crnn self-label``: read a folder of unlabeled word crops and write the readings it trusts as a labeled folder.

Self-training (docs/adaptation.md): a recognizer reads the crops, and those whose confidence P(text | image) reaches
a threshold become training labels (labels.tsv + copies of the images, a folder any `crnn train` folder source and
`crnn eval` read). The threshold is chosen on held-out *labeled* data with ``--calibrate``: the lowest confidence at
which the readings kept are still right at least ``--target-precision`` of the time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crnn.checkpoints.shipped import model_help
from crnn.decoding.ctc_decode import DECODERS, DEFAULT_DECODER
from crnn.errors import ConfigError, CRNNError
from crnn.io.labeled_folder import LABELS_FILE, LabeledFolder
from crnn.io.inputs import IMAGE_EXTENSIONS
from crnn.reading.precision import PRECISIONS
from crnn_training.holdout import in_part, select_part

READINGS_FILE = "readings.tsv"  # every reading, kept or not, with its confidence (for review)
SUMMARY_FILE = "self_label.json"  # how the folder was made


@dataclass(frozen=True)
class Reading:
    """One crop's reading: its path relative to the folder read, the text and its confidence P(text | image)."""

    rel: str
    text: str
    confidence: float


def matches(prediction: str, truth: str, match: str) -> bool:
    """Whether a reading counts as right: ``exact``, or ``nocase`` (labels like SVT's carry no case)."""
    return prediction == truth if match == "exact" else prediction.casefold() == truth.casefold()


def list_images(root: Path, holdout: float = 0.0) -> list[str]:
    """Image paths under ``root`` (recursive, sorted), relative to it; ``holdout`` > 0 leaves out the held-out part
    (crnn_training.holdout: the images a training run with the same holdout validates on)."""
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return [r for r in rels if in_part(r, holdout, "train")] if holdout > 0 else rels


def read_crops(recognizer: Any, root: Path, rels: Sequence[str], decoder: str, batch_size: int,
               chunk: int = 512) -> tuple[list[Reading], list[str]]:
    """Readings of the crops ``rels`` under ``root``, and the problems of the crops that could not be read."""
    readings: list[Reading] = []
    problems: list[str] = []
    from crnn.reading.text_recognizer import FailedImage

    for start in range(0, len(rels), chunk):
        part = rels[start:start + chunk]
        preds = recognizer.recognize([str(root / r) for r in part], batch_size=batch_size, decoder=decoder,
                                     errors="return")
        for rel, p in zip(part, preds):
            if isinstance(p, FailedImage):
                problems.append(f"{rel}: {p.error}")
            else:
                readings.append(Reading(rel, p.text, float(p.confidence)))
        print(f"[self-label] read {min(start + chunk, len(rels))}/{len(rels)} crops of {root}", file=sys.stderr)
    return readings, problems


@dataclass(frozen=True)
class Calibration:
    """The threshold a target precision asks for, and what it keeps of the calibration readings."""

    threshold: float
    kept: int
    correct: int
    total: int

    @property
    def precision(self) -> float:
        """Share of the kept readings that are right."""
        return self.correct / self.kept if self.kept else 1.0

    @property
    def coverage(self) -> float:
        """Share of the readings kept."""
        return self.kept / self.total if self.total else 0.0


def choose_threshold(confidences: Sequence[float], correct: Sequence[bool], target: float) -> Calibration:
    """The lowest threshold whose kept readings (confidence >= it) are right at least ``target`` of the time.

    The readings are ranked by confidence and the longest prefix that meets the target wins (so the precision at the
    threshold, not a local dip below it, decides); ties share one threshold. None meets it: threshold above 1.
    """
    order = sorted(range(len(confidences)), key=lambda i: -confidences[i])
    best = Calibration(1.0 + 1e-9, 0, 0, len(order))
    hits = 0
    for k, i in enumerate(order, 1):
        hits += bool(correct[i])
        tied = k < len(order) and confidences[order[k]] == confidences[i]
        if not tied and hits >= target * k:
            best = Calibration(confidences[i], k, hits, len(order))
    return best


def precision_table(confidences: Sequence[float], correct: Sequence[bool],
                    thresholds: Sequence[float] = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)) -> list[Calibration]:
    """Kept readings and their precision at a few thresholds (printed by --calibrate)."""
    rows = []
    for t in thresholds:
        kept = [c for c, _ in zip(confidences, correct) if c >= t]
        rows.append(Calibration(t, len(kept), sum(ok for c, ok in zip(confidences, correct) if c >= t),
                                len(confidences)))
    return rows


def calibrate(recognizer: Any, folders: Sequence[str], holdout: float, match: str, target: float, decoder: str,
              batch_size: int) -> Calibration:
    """Read the labeled ``folders`` (their held-out parts when ``holdout`` > 0), print the precision table and return
    the threshold that ``target`` asks for."""
    confidences: list[float] = []
    correct: list[bool] = []
    for folder in folders:
        labeled = LabeledFolder.read(folder, recognizer.charset)
        items = select_part(labeled.items, holdout, "val") if holdout > 0 else labeled.items
        truth = dict(items)
        readings, problems = read_crops(recognizer, labeled.root, [rel for rel, _ in items], decoder, batch_size)
        for p in problems[:5]:
            print(f"[self-label] skipped: {p}", file=sys.stderr)
        ok = [matches(r.text, truth[r.rel], match) for r in readings]
        print(f"[calibrate] {folder}{' (held-out part)' if holdout > 0 else ''}: {len(readings)} crops, "
              f"{sum(ok)} read right ({match})", file=sys.stderr)
        confidences += [r.confidence for r in readings]
        correct += ok
    if not confidences:
        raise ConfigError("--calibrate: the labeled folders hold no readable crop")
    print(f"[calibrate] threshold  kept  precision ({match}), of {len(confidences)} labeled crops", file=sys.stderr)
    for row in precision_table(confidences, correct):
        print(f"[calibrate] {row.threshold:9.2f}  {100 * row.coverage:5.1f}%  {100 * row.precision:6.2f}%",
              file=sys.stderr)
    chosen = choose_threshold(confidences, correct, target)
    if chosen.kept == 0:
        raise ConfigError(f"--target-precision {target}: no threshold reaches it on the calibration folders")
    print(f"[calibrate] --target-precision {target}: threshold {chosen.threshold:.4f} keeps "
          f"{100 * chosen.coverage:.1f}% at precision {100 * chosen.precision:.2f}%", file=sys.stderr)
    return chosen


def write_labeled_folder(out: Path, root: Path, readings: Sequence[Reading], threshold: float,
                         summary: dict[str, Any]) -> int:
    """Copy the crops read with confidence >= ``threshold`` into ``out`` (same relative paths) and write labels.tsv,
    readings.tsv (every reading) and self_label.json; returns how many were kept."""
    out.mkdir(parents=True, exist_ok=True)
    kept = [r for r in readings if r.confidence >= threshold and r.text.strip()]
    kept_paths = {r.rel for r in kept}
    for r in kept:
        target = out / r.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / r.rel, target)  # copies: the folder stands alone (no link into the source to break)
    # Written last: a folder without labels.tsv is no labeled folder, so an interrupted run is never trained on.
    with open(out / READINGS_FILE, "w", encoding="utf-8") as f:
        f.write("path\ttext\tconfidence\tkept\n")
        for r in readings:
            f.write(f"{r.rel}\t{r.text}\t{r.confidence:.6f}\t{int(r.rel in kept_paths)}\n")
    (out / SUMMARY_FILE).write_text(json.dumps({**summary, "threshold": threshold, "read": len(readings),
                                                "kept": len(kept)}, indent=2) + "\n", encoding="utf-8")
    tmp = out / f".{LABELS_FILE}.tmp"
    tmp.write_text("".join(f"{r.rel}\t{r.text}\n" for r in kept), encoding="utf-8")
    os.replace(tmp, out / LABELS_FILE)
    return len(kept)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crnn self-label",
        description="Read unlabeled word crops and write the readings above a confidence threshold as a labeled folder "
                    "(labels.tsv + copies of the images) for `crnn train`; --calibrate picks the threshold on "
                    "held-out labeled crops.")
    p.add_argument("images", nargs="?", metavar="IMAGES_DIR", help="folder of word crops (searched recursively)")
    p.add_argument("--out", metavar="DIR", help="the labeled folder to write (must not hold one, unless --force)")
    p.add_argument("--threshold", type=float, help="keep readings whose confidence P(text|image) is at least this")
    p.add_argument("--calibrate", action="append", metavar="LABELED_DIR",
                   help="labeled folder(s) to choose the threshold on (repeatable): the lowest threshold whose kept "
                   "readings reach --target-precision; never a test set")
    p.add_argument("--target-precision", type=float, default=0.95, help="with --calibrate (default 0.95)")
    p.add_argument("--match", choices=("nocase", "exact"), default="nocase",
                   help="when a calibration reading counts as right: nocase (default; labels like SVT's carry no "
                   "case) or exact")
    p.add_argument("--holdout", type=float, default=0.0,
                   help="the held-out share of crnn train's folder sources (e.g. 0.15): --calibrate reads only the "
                   "held-out part of its folders, and IMAGES_DIR's held-out part is left out (same hash of the path)")
    p.add_argument("--weights", default=None, help="checkpoint (.safetensors or .onnx); default: the shipped model")
    p.add_argument("--model", metavar="NAME", help=model_help())
    p.add_argument("--backend", choices=("torch", "onnx", "auto"), default="auto", help="as crnn ocr's")
    p.add_argument("--decoder", choices=DECODERS, default=DEFAULT_DECODER,
                   help=f"as crnn ocr's (default {DEFAULT_DECODER}); use the same for --calibrate and the labeling")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="the backend's intra-op threads")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="as crnn ocr's")
    p.add_argument("--force", action="store_true", help="replace a labeled folder already at --out")
    return p


def check_args(args: argparse.Namespace) -> None:
    """ConfigError for options that do not fit together, before any model is loaded."""
    if args.threshold is None and not args.calibrate:
        raise ConfigError("give --threshold T or --calibrate LABELED_DIR (with --target-precision)")
    if args.threshold is not None and args.calibrate:
        raise ConfigError("--threshold and --calibrate both choose the threshold: give one")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold {args.threshold}: must be in [0, 1]")
    if not 0.0 < args.target_precision <= 1.0:
        raise ConfigError(f"--target-precision {args.target_precision}: must be in (0, 1]")
    if not 0.0 <= args.holdout < 1.0:
        raise ConfigError(f"--holdout {args.holdout}: must be in [0, 1)")
    if (args.images is None) != (args.out is None):
        raise ConfigError("IMAGES_DIR and --out go together (--calibrate alone only prints the threshold)")
    if args.threshold is not None and args.images is None:
        raise ConfigError("--threshold needs IMAGES_DIR and --out")
    if args.images is not None:
        if not Path(args.images).is_dir():
            raise ConfigError(f"{args.images}: no such folder")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out}: is a file, not a folder")
        if (out / LABELS_FILE).exists() and not args.force:
            raise ConfigError(f"--out {out}: holds a labeled folder; give --force to replace it")
        if out.resolve() == Path(args.images).resolve():
            raise ConfigError("--out must be another folder than IMAGES_DIR")
    for folder in args.calibrate or []:
        if not (Path(folder) / LABELS_FILE).is_file():
            raise ConfigError(f"--calibrate {folder}: not a labeled folder (no {LABELS_FILE})")


def main(argv: list[str] | None = None) -> int:
    """``crnn self-label``: exit code 0, or 2 with one line on a bad option, folder or checkpoint."""
    args = _parser().parse_args(argv)
    try:
        check_args(args)
        from crnn.kinds.loading import load_recognizer

        recognizer = load_recognizer(args.weights, threads=args.threads, precision=args.precision, backend=args.backend,
                                     model=args.model)
        threshold, calibration = args.threshold, None
        if args.calibrate:
            calibration = calibrate(recognizer, args.calibrate, args.holdout, args.match, args.target_precision,
                                    args.decoder, args.batch_size)
            threshold = calibration.threshold
        if args.images is None:
            print(f"{threshold:.6f}")
            return 0
        root, out = Path(args.images), Path(args.out)
        rels = list_images(root, args.holdout)
        if not rels:
            raise ConfigError(f"{root}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        readings, problems = read_crops(recognizer, root, rels, args.decoder, args.batch_size)
        for p in problems[:5]:
            print(f"[self-label] skipped: {p}", file=sys.stderr)
        if args.force and out.is_dir():
            for name in (LABELS_FILE, READINGS_FILE, SUMMARY_FILE):
                (out / name).unlink(missing_ok=True)
        summary = {"images": str(root), "weights": args.weights or "shipped", "model": args.model,
                   "decoder": args.decoder, "holdout_left_out": args.holdout, "unreadable": len(problems),
                   "calibration": None if calibration is None else {
                       "folders": args.calibrate, "target_precision": args.target_precision, "match": args.match,
                       "precision": round(calibration.precision, 4), "coverage": round(calibration.coverage, 4)}}
        kept = write_labeled_folder(out, root, readings, threshold, summary)
    except (CRNNError, OSError) as e:
        print(f"crnn self-label: error: {e}", file=sys.stderr)
        return 2
    print(f"crnn self-label: kept {kept} of {len(readings)} readings (confidence >= {threshold:.4f}) in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
