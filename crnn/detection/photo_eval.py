"""End-to-end evaluation of full-photo OCR on a folder of photos with word polygons (crnn.detection.photo_folder):
detection and end-to-end P/R/F under the ICDAR 2015 generic protocol for the words of the CTC split, the same lines
split by character count, the CTC split without inferred spaces, and the lines scored as they come; and the time per
photo. What `crnn eval --photos` prints (crnn_training.evaluate_photos) and benchmarks/eval_photos.py runs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from crnn.detection.end_to_end_metric import TextBox, end_to_end
from crnn.detection.photo_folder import read_photo_folder
from crnn.detection.photo_image import load_photo
from crnn.detection.photo_reader import PhotoReader
from crnn.errors import InvalidImageError


def evaluate_photo_folder(reader: PhotoReader, folder: str | os.PathLike, limit: int | None = None,
                          progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Scores of ``reader`` (its split; the same readings split by character count; with the CTC split and inferred
    spaces, the same split without them) on ``folder``."""
    photos = read_photo_folder(folder)[:limit]
    naive = reader.with_split("chars")
    as_read = reader.with_space_prob(None) if reader.split == "ctc" and reader.space_prob is not None else None
    runs: dict[str, list[tuple[list[TextBox], list[TextBox]]]] = {"words": [], "words_char_count": [], "lines": []}
    if as_read is not None:
        runs["words_read_spaces"] = []
    seconds = {"load": 0.0, "detect": 0.0, "recognize": 0.0}
    failed = 0
    words = lines = 0
    for i, (path, truth) in enumerate(photos):
        try:
            t0 = time.perf_counter()
            rgb = load_photo(path, reader.preprocess.max_pixels)
            t1 = time.perf_counter()
            regions = reader.detector.detect(rgb)
            t2 = time.perf_counter()
            reading = reader.read_regions(rgb, regions)
            t3 = time.perf_counter()
        except InvalidImageError:
            failed += 1
            continue
        seconds["load"] += t1 - t0
        seconds["detect"] += t2 - t1
        seconds["recognize"] += t3 - t2
        words += len(reading.words)
        lines += len(reading.lines)
        runs["words"].append((truth, [TextBox(w.polygon, w.text) for w in reading.words]))
        other = naive.read_regions(rgb, regions)
        runs["words_char_count"].append((truth, [TextBox(w.polygon, w.text) for w in other.words]))
        if as_read is not None:
            plain = as_read.read_regions(rgb, regions)
            runs["words_read_spaces"].append((truth, [TextBox(w.polygon, w.text) for w in plain.words]))
        runs["lines"].append((truth, [TextBox(x.polygon, x.text) for x in reading.lines]))
        if progress is not None:
            progress(i + 1)
    n = len(photos) - failed
    total = sum(seconds.values())
    return {
        "folder": os.fspath(folder), "photos": n, "failed": failed, "words_read": words, "lines_read": lines,
        "split": reader.split, "space_prob": reader.space_prob, "min_confidence": reader.min_confidence,
        "decoder": reader.decoder,
        "scores": {k: end_to_end(v).to_dict() for k, v in runs.items()},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "photos_per_s": round(n / total, 3) if total else None,
        "words_per_s": round(words / total, 1) if total else None,
    }

