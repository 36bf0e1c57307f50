"""``crnn eval --photos DIR``: full-photo OCR scored on folders of photos with word polygons (crnn.detection.photo_folder):
detection and end-to-end precision / recall / F under the ICDAR 2015 generic protocol (IoU > 0.5, don't-care
``###``, case-insensitive, one-to-one), through crnn.detection.photo_eval, for the words of the CTC split, the same
lines split by character count, the CTC split without the inferred spaces (crnn.detection.word_split.infer_spaces),
and the lines as they come."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crnn.errors import CRNNError

SPLITS = (("words", "words (CTC split)"), ("words_read_spaces", "words (CTC, read spaces)"),
          ("words_char_count", "words (char-count split)"), ("lines", "lines as read"))
CROP_ONLY = ("lexicon", "lexicons", "errors", "calibration")  # options of labeled crop folders, not of photos


def photo_problem(args: argparse.Namespace) -> str | None:
    """Why these `crnn eval` options cannot run with ``--photos`` (a usage error), or None."""
    if args.data:
        return "give --data (labeled crops) or --photos (photo folders), not both"
    used = [f"--{name}" for name in CROP_ONLY if getattr(args, name)] + (["--holdout"] if args.holdout else [])
    if used:
        return f"{', '.join(used)}: not options of --photos"
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        return f"--min-confidence {args.min_confidence}: must be in [0, 1]"
    return None


def format_photo_table(results: list[dict[str, Any]]) -> str:
    """Each folder's scores as aligned text: detection and end-to-end P/R/F per way of reading, then speed."""
    lines = []
    for r in results:
        lines.append(f"{Path(r['folder']).name or r['folder']}: {r['photos']} photos ({r['failed']} unreadable), "
                     f"{r['lines_read']} lines, {r['words_read']} words read; {r['photos_per_s']} photos/s, "
                     f"{r['words_per_s']} words/s")
        lines.append(f"  {'':26} {'det P':>6} {'det R':>6} {'det F':>6} {'e2e P':>6} {'e2e R':>6} {'e2e F':>6}")
        for key, title in SPLITS:
            if key not in r["scores"]:  # the CTC split without inferred spaces: only when they are inferred
                continue
            d, e = r["scores"][key]["detection"], r["scores"][key]["end_to_end"]
            lines.append(f"  {title:26} {d['precision']:6.1f} {d['recall']:6.1f} {d['f']:6.1f} "
                         f"{e['precision']:6.1f} {e['recall']:6.1f} {e['f']:6.1f}")
    return "\n".join(lines)


def evaluate_photos(args: argparse.Namespace) -> int:
    """``crnn eval --photos``: a table (or JSON) per photo folder; exit 2 on a bad option, checkpoint or folder."""
    problem = photo_problem(args)
    if problem:
        print(f"crnn eval: error: {problem}", file=sys.stderr)
        return 2
    from crnn.detection.photo_eval import evaluate_photo_folder
    from crnn.detection.photo_reader import MIN_LINE_CONFIDENCE, PhotoReader
    from crnn.detection.registry import load_detector
    from crnn.kinds.loading import load_recognizer
    from crnn.machine import cpu_cores

    on_cpu = not args.device.startswith("cuda")
    try:
        detector = load_detector(args.detector, threads=args.threads or cpu_cores())
        # One thread reads a photo's few crops faster than two on a shared CPU (benchmarks/eval_photos.py).
        recognizer = load_recognizer(args.weights, device=args.device, threads=1 if on_cpu else args.threads,
                                     precision=args.precision, backend=args.backend, model=args.model)
        reader = PhotoReader(detector, recognizer, decoder=args.decoder, beam_width=args.beam_width,
                             batch_size=args.batch_size,
                             min_confidence=MIN_LINE_CONFIDENCE if args.min_confidence is None else args.min_confidence)
        results = [evaluate_photo_folder(reader, folder, args.limit or None) for folder in args.photos]
    except (CRNNError, ValueError, OSError) as e:  # FileNotFoundError (no annotations.jsonl) is an OSError
        print(f"crnn eval: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"weights": str(args.weights) if args.weights else None, "model": args.model, "detector": detector.describe(),
                          "decoder": args.decoder, "results": results}, indent=2))
    else:
        print(format_photo_table(results))
    return 0
