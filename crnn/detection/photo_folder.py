"""Folders of whole photos with word-level ground truth: ``annotations.jsonl``, one line per photo,
``{"image": "img/x.jpg", "words": [{"polygon": [[x, y], ...] or "box": [x, y, w, h], "text": "..."}]}`` (the format
of ../shared/realtrain/SVT_train_full, whose boxes are axis-aligned, and of `crnn synth --scenes`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from crnn.detection.end_to_end_metric import TextBox

ANNOTATIONS = "annotations.jsonl"


def _polygon(word: dict) -> np.ndarray:
    if "polygon" in word:
        return np.asarray(word["polygon"], np.float32).reshape(-1, 2)
    x, y, w, h = (float(v) for v in word["box"])
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)


def read_photo_folder(folder: str | os.PathLike) -> list[tuple[Path, list[TextBox]]]:
    """Each photo's path and ground-truth words, in the file's order; a malformed line raises ValueError naming it."""
    root = Path(folder)
    path = root / ANNOTATIONS
    if not path.is_file():
        raise FileNotFoundError(f"{root} has no {ANNOTATIONS} (one JSON line per photo: image, words)")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                words = [TextBox(_polygon(w), str(w["text"])) for w in row.get("words", [])]
                out.append((root / row["image"], words))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: not a photo annotation ({e})") from None
    return out

