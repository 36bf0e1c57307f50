"""``crnn eval``: a checkpoint's accuracy, CER and calibration on labeled folders.

(Validation during training runs the same crnn.reading.recognizer.Recognizer, see crnn_training.train.CTCTask.evaluate.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crnn.checkpoints.shipped import model_help
from crnn.decoding.ctc_decode import DECODERS, DEFAULT_DECODER
from crnn.errors import CRNNError
from crnn.io.labeled_folder import MAX_NAMED_PROBLEMS
from crnn.metrics import CalibrationBin, calibration, compute_metrics
from crnn.output_files import check_output_file, replaced_atomically
from crnn.reading.precision import PRECISIONS
from crnn.reading.text_recognizer import TextRecognizer


# ---------------------------------------------------------------------------------------------
# crnn eval
# ---------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crnn eval", description="Evaluate a checkpoint on labeled folders (labels.tsv: path<TAB>text), or full-photo "
        "OCR on photo folders (--photos)."
    )
    p.add_argument("--weights", default=None, help="checkpoint (.safetensors, or .onnx for --backend onnx); default: the shipped model")
    p.add_argument("--model", metavar="NAME", help=model_help())
    p.add_argument("--backend", choices=("torch", "onnx", "auto"), default="auto",
                   help="as crnn ocr's: auto (default: onnx where installed and an .onnx file is at hand), torch, onnx")
    p.add_argument("--data", action="append", metavar="DIR", help="labeled folder (repeatable)")
    p.add_argument("--photos", action="append", metavar="DIR",
                   help="instead of --data: a folder of whole photos with word polygons (annotations.jsonl, as "
                   "`crnn synth --scenes` writes; repeatable): detection and end-to-end P/R/F (ICDAR 2015 generic, "
                   "IoU > 0.5) of `crnn ocr --detect` (the detect extra; docs/photos.md)")
    p.add_argument("--detector", default="ppocr-v6-small", help="--photos: the text detector's kind")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="--photos: drop lines whose mean character confidence is below this (default 0.5)")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.add_argument("--errors", metavar="OUT.tsv", help="write mispredictions (path, target, prediction, confidence)")
    p.add_argument("--calibration", action="store_true",
                   help="also print each folder's reliability table: accuracy (case-sensitive) per confidence bin")
    p.add_argument("--decoder", choices=DECODERS, default=DEFAULT_DECODER,
                   help=f"default {DEFAULT_DECODER}: beam search with the shipped character language model "
                   "(docs/language_model.md); greedy: the network's best path alone; beam: prefix beam search alone")
    p.add_argument("--beam-width", type=int, default=10)
    p.add_argument("--lm-weight", type=float, default=None, help="--decoder lm: the language model's weight")
    p.add_argument("--lexicon", metavar="FILE", help="one word list (a word a line) for every image (docs/lexicon.md)")
    p.add_argument("--lexicons", action="append", metavar="FILE",
                   help="per-image lexicons, lines relative_path<TAB>word,word,... (paths as in labels.tsv); "
                   "one per --data, in the same order")
    p.add_argument("--lexicon-case", choices=("image", "keep"), default="image",
                   help="image (default): a lexicon word in the case the image shows; keep: as the lexicon spells it")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=0, help="evaluate at most N images (or photos) per folder")
    p.add_argument("--holdout", type=float, default=0.0,
                   help="read only each folder's held-out part: the share a `crnn train` folder source with the same "
                   "holdout never trains on (e.g. 0.15; docs/adaptation.md)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="the backend's intra-op threads (default: its own, one per core)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="as crnn ocr's (auto: bf16 on a CPU with native bf16, else fp32)")
    return p


def evaluate_folder(
    recognizer: TextRecognizer, folder: str, args: argparse.Namespace, lexicon: Any = None,
    image_lexicons: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[list[str]], list[CalibrationBin]]:
    """One result row for a labeled folder, its mispredictions as (path, target, prediction, confidence), and
    its reliability table (a confidence is P(text | image), so it is checked against the exact text).

    ``lexicon`` (a Lexicon) constrains every image; ``image_lexicons`` (relative path -> Lexicon, from
    crnn.decoding.lexicon.read_image_lexicons) gives each image its own.
    """
    from crnn_training.data import load_labeled_arrays

    arrays, texts, paths, problems = load_labeled_arrays(folder, recognizer.charset, recognizer.preprocess, args.limit,
                                                         getattr(args, "holdout", 0.0))
    for p in problems[:MAX_NAMED_PROBLEMS]:
        print(f"[eval] skipped: {p}", file=sys.stderr)
    if image_lexicons is not None:
        lexicon = [image_lexicons.get(os.path.normpath(os.path.relpath(p, folder))) for p in paths]
        missing = sum(lex is None for lex in lexicon)
        if missing:
            print(f"[eval] {missing} images of {folder} have no line in its --lexicons file: read without a lexicon",
                  file=sys.stderr)
    t0 = time.perf_counter()
    preds = recognizer.recognize_prepared(
        arrays, batch_size=args.batch_size, decoder=args.decoder, beam_width=args.beam_width, lexicon=lexicon,
        lm_weight=args.lm_weight,
    ) if arrays else []
    seconds = time.perf_counter() - t0
    metrics = compute_metrics([p.text for p in preds], texts)
    ece, table = calibration([p.confidence for p in preds], [p.text == t for p, t in zip(preds, texts)])
    row = {"folder": folder, **metrics.to_dict(), "ece": round(ece, 4), "skipped": len(problems),
           "images_per_s": round(len(arrays) / seconds, 1) if seconds > 0 and arrays else 0.0}
    if lexicon is not None:
        # How many readings a large lexicon left as read (no word near them).
        row["not_in_lexicon"] = sum(p.in_lexicon is False for p in preds)
    errors = [[path, t, p.text, f"{p.confidence:.4f}"] for path, t, p in zip(paths, texts, preds) if p.text != t]
    return row, errors, table


def format_calibration(folder: str, table: list[CalibrationBin]) -> str:
    """A folder's reliability table as aligned text: per confidence bin, images, mean confidence, accuracy."""
    lines = [f"{Path(folder).name or folder}: confidence bin, images, mean confidence, accuracy (case-sensitive)"]
    for b in table:
        lines.append(f"  [{b.low:.1f}, {b.high:.1f})  {b.count:>6}  {b.mean_confidence:>6.3f}  {b.accuracy:>6.3f}")
    return "\n".join(lines)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The results as an aligned text table."""
    head = (f"{'folder':<32} {'count':>6} {'skipped':>7} {'acc(proto)':>10} {'acc(case)':>9} {'CER':>7} {'1-NED':>7} "
            f"{'ECE':>6} {'img/s':>8}")
    lines = [head]
    for r in rows:
        lines.append(
            f"{Path(r['folder']).name or r['folder']:<32} {r['count']:>6} {r['skipped']:>7} "
            f"{100 * r['word_accuracy_protocol']:>9.2f}% {100 * r['word_accuracy_case']:>8.2f}% "
            f"{r['cer']:>7.4f} {r['one_minus_ned']:>7.4f} {r['ece']:>6.3f} {r['images_per_s']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``crnn eval``: one row per labeled folder; exit code 2 on a bad checkpoint or folder."""
    args = _parser().parse_args(argv)
    if args.photos:
        from crnn_training.evaluate_photos import evaluate_photos

        return evaluate_photos(args)
    if not args.data:
        print("crnn eval: error: give --data DIR (labeled crops) or --photos DIR (photos with word polygons)",
              file=sys.stderr)
        return 2
    if args.lexicons and (len(args.lexicons) != len(args.data) or args.lexicon):
        print("crnn eval: error: give one --lexicons file per --data folder (in the same order), and not with "
              "--lexicon", file=sys.stderr)
        return 2
    if not 0.0 <= args.holdout < 1.0:
        print(f"crnn eval: error: --holdout {args.holdout}: must be in [0, 1)", file=sys.stderr)
        return 2
    if args.lm_weight is not None and (args.decoder != "lm" or not args.lm_weight >= 0):
        print("crnn eval: error: --lm-weight needs --decoder lm and a value >= 0", file=sys.stderr)
        return 2
    try:
        # Before any work: a path --errors cannot be written is found now, not after the whole evaluation.
        errors_file = check_output_file(args.errors, option="--errors") if args.errors else None
        from crnn.kinds.loading import load_recognizer

        # The checkpoint's model_type picks the recognizer (crnn.kinds.registry: CRNN, baseline, ...).
        recognizer = load_recognizer(args.weights, device=args.device, threads=args.threads, precision=args.precision,
                                     backend=args.backend, model=args.model)
        lexicon = None
        if args.lexicon:
            from crnn.commands.ocr_output import load_lexicon

            lexicon = load_lexicon(args.lexicon, recognizer.charset, args.lexicon_case, prog="crnn eval")
        # Every lexicon file is read before any folder, so a bad line stops the run at once.
        from crnn.decoding.lexicon import dropped_report, read_image_lexicons

        per_image = []
        for f in args.lexicons or []:
            per_image.append(read_image_lexicons(f, recognizer.charset, args.lexicon_case))
            note = dropped_report(per_image[-1].values())
            if note:
                print(f"crnn eval: warning: --lexicons {f}: {note}", file=sys.stderr)
        rows, errors, tables = [], [], []
        for i, folder in enumerate(args.data):
            row, errs, table = evaluate_folder(recognizer, folder, args, lexicon, per_image[i] if per_image else None)
            rows.append(row)
            errors.extend(errs)
            tables.append(table)
    except (CRNNError, ValueError) as e:
        print(f"crnn eval: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        if args.calibration:
            for row, table in zip(rows, tables):
                row["calibration"] = [asdict(b) for b in table]
        print(json.dumps({"weights": str(args.weights) if args.weights else None, "model": args.model,
                          "decoder": args.decoder, "results": rows}, indent=2))
    else:
        print(format_table(rows))
        if args.calibration:
            for folder, table in zip(args.data, tables):
                print(format_calibration(folder, table))
    if errors_file is not None:
        # After the results are printed, and atomically: a write that fails loses neither them nor the old file.
        try:
            with replaced_atomically(errors_file, option="--errors") as tmp, open(tmp, "w", encoding="utf-8") as f:
                f.write("path\ttarget\tprediction\tconfidence\n")
                for e in errors:
                    f.write("\t".join(x.replace("\t", " ").replace("\n", " ") for x in e) + "\n")
        except (CRNNError, OSError) as e:
            why = e if isinstance(e, CRNNError) else f"--errors {errors_file}: {e.strerror or e}"
            print(f"crnn eval: error: {why}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
