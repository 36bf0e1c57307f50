"""Full-photo OCR on folders of photos with word polygons (crnn.detection): detection and end-to-end P/R/F (ICDAR 2015
generic protocol) of the CTC word split against the character-count split and the lines as they come, and photos/s.

    python benchmarks/eval_photos.py FOLDER [FOLDER ...] [--limit N] [--threads 2] [--json OUT]

FOLDER holds annotations.jsonl (``crnn synth --scenes``, or ../shared/realtrain/SVT_train_full: recall only, SVT
labels only some words of each photo). Needs ``crnn-ocr[detect]``. Speed depends on the machine: print its CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from crnn.detection.detector import DEFAULT_DETECTOR
from crnn.detection.registry import load_detector
from crnn.detection.photo_eval import evaluate_photo_folder
from crnn.detection.photo_reader import MIN_LINE_CONFIDENCE, PhotoReader
from crnn.kinds.loading import load_recognizer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--limit", type=int, help="first N photos of each folder")
    p.add_argument("--threads", type=int, default=2, help="the detector's ONNX Runtime threads")
    # One torch thread reads a photo's few small crops faster than two: measured here on a shared 2-core machine,
    # a 32 x 128 crop took 18 ms with 1 thread and 121 ms with 2 (the second thread waits on a busy core).
    p.add_argument("--recognizer-threads", type=int, default=1, help="the recognizer's torch threads")
    p.add_argument("--weights", help="recognizer checkpoint (default: the shipped model)")
    p.add_argument("--decoder", default=None, help="greedy, beam or lm (default: the recognizer's default)")
    p.add_argument("--min-confidence", type=float, default=MIN_LINE_CONFIDENCE)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    detector = load_detector(DEFAULT_DETECTOR, threads=args.threads)
    recognizer = load_recognizer(args.weights, threads=args.recognizer_threads)
    options = {"decoder": args.decoder} if args.decoder else {}
    reader = PhotoReader(detector, recognizer, min_confidence=args.min_confidence, **options)
    results = []
    for folder in args.folders:
        r = evaluate_photo_folder(reader, folder, args.limit)
        results.append(r)
        print(f"\n{folder}: {r['photos']} photos, {r['lines_read']} lines, {r['words_read']} words read; "
              f"{r['photos_per_s']} photos/s, {r['words_per_s']} words/s (seconds: {r['seconds']})")
        print(f"{'':24} {'det P':>6} {'det R':>6} {'det F':>6} {'e2e P':>6} {'e2e R':>6} {'e2e F':>6}")
        for name, s in r["scores"].items():
            d, e = s["detection"], s["end_to_end"]
            print(f"{name:24} {d['precision']:6.1f} {d['recall']:6.1f} {d['f']:6.1f} "
                  f"{e['precision']:6.1f} {e['recall']:6.1f} {e['f']:6.1f}")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"\nCPU: {cpu}; detector threads {args.threads}, recognizer threads {args.recognizer_threads}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "threads": args.threads, "recognizer_threads": args.recognizer_threads,
                                          "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
