"""Reading crops in any orientation (issue 18): which way a crop's text runs, and turning it upright.

A tiny CNN (``crnn.orientation_model``, weights ``weights/orientation.safetensors``) looks at the raw crop,
before the 32-px resize, and says how its text appears: upright (``"0"``), turned 90 / 180 / 270 degrees
clockwise, or ``"stacked"`` (upright letters one under the other). The crop is then turned upright
(``np.rot90``) or, for stacked letters, cut into letters laid side by side, and read as usual.

This module is torch-free (the image loaders of ``crnn ocr`` use it in processes without torch); the
classifier imports torch only when it is built, so ``--orientation none`` loads nothing of it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from crnn.errors import CheckpointError
from crnn.preprocess import ImageSource, PreprocessConfig, _describe, load_image, normalize

ORIENTATIONS = ("0", "90", "180", "270", "stacked")  # the classifier's classes, in output order
OrientationMode = Literal["auto", "none"]
ORIENTATION_MODES = ("auto", "none")
THUMB_SIZE = 64  # the classifier sees the crop in a THUMB_SIZE x THUMB_SIZE square
# The shipped classifier's weights, beside the recognizer's: crnn/weights/ in a wheel, weights/ in a clone.
_PACKAGE = Path(__file__).resolve().parent
DEFAULT_ORIENTATION_WEIGHTS = next(
    (p for p in (_PACKAGE / "weights" / "orientation.safetensors", _PACKAGE.parent / "weights" / "orientation.safetensors")
     if p.exists()),
    _PACKAGE.parent / "weights" / "orientation.safetensors",
)


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """Classifier input (THUMB_SIZE, THUMB_SIZE) float32 of a grayscale crop (H, W) uint8.

    The long side fills the square; the short side is scaled in proportion but kept at least half of it (a
    long word keeps legible letters), and the rest is 0. Pixels are standardised per crop, so dark-on-light
    and light-on-dark look alike in contrast.
    """
    s = THUMB_SIZE
    h, w = gray.shape
    if w >= h:
        nw, nh = s, int(np.clip(round(s * h / w), s // 2, s))
    else:
        nh, nw = s, int(np.clip(round(s * w / h), s // 2, s))
    small = cv2.resize(gray, (nw, nh), interpolation=cv2.INTER_AREA if max(h, w) > s else cv2.INTER_LINEAR)
    x = small.astype(np.float32)
    x = (x - x.mean()) / max(float(x.std()), 8.0)
    out = np.zeros((s, s), np.float32)
    top, left = (s - nh) // 2, (s - nw) // 2
    out[top : top + nh, left : left + nw] = x
    return out


def unstack(gray: np.ndarray) -> np.ndarray:
    """A crop of stacked letters (H, W) re-laid as one upright line: cut between letters, placed side by side.

    Letters are cut at the rows with the least ink (Otsu's threshold; the text is the side of the threshold
    with fewer pixels), at the expected number of letters for a crop of this height and width; each letter's
    rows then go to the right of the previous letter's, so n letters give about (H / n, n * W).
    """
    h, w = gray.shape
    n = int(round(h / max(w * 0.9, 1)))
    if n < 2:
        return gray
    _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary if binary.mean() < 0.5 else 1 - binary
    profile = np.convolve(ink.sum(axis=1).astype(np.float32), np.ones(3, np.float32) / 3, mode="same")
    cuts = [0]
    pitch = h / n
    for k in range(1, n):
        # The emptiest row within half a letter pitch of where the k-th cut is expected.
        lo, hi = int(k * pitch - pitch / 2), int(k * pitch + pitch / 2)
        lo, hi = max(lo, cuts[-1] + 1), min(hi, h - 1)
        if hi <= lo:
            continue
        cuts.append(lo + int(np.argmin(profile[lo:hi])))
    cuts.append(h)
    pieces = [gray[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
    height = max(p.shape[0] for p in pieces)
    padded = [cv2.copyMakeBorder(p, (height - p.shape[0]) // 2, height - p.shape[0] - (height - p.shape[0]) // 2,
                                 0, 0, cv2.BORDER_REPLICATE) for p in pieces]
    return np.ascontiguousarray(np.concatenate(padded, axis=1))


def turn_upright(gray: np.ndarray, orientation: str) -> np.ndarray:
    """The crop (H, W) as the recognizer reads it, given how its text appears (one of ORIENTATIONS)."""
    if orientation == "stacked":
        return unstack(gray)
    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}; expected one of {', '.join(ORIENTATIONS)}")
    # Text turned k quarter turns clockwise is undone by k turns counter-clockwise (np.rot90's direction).
    return np.ascontiguousarray(np.rot90(gray, int(orientation) // 90))


def _reduced(gray: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    # Kept for the turned readings: twice the model's height on the short side is enough for any of them
    # (the short side becomes the height, or a letter's width), and bounds what a loader process sends back.
    h, w = gray.shape
    limit = 2 * config.height
    if min(h, w) <= limit:
        return gray
    scale = limit / min(h, w)
    return cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


@dataclass
class OrientedCrop:
    """One crop ready for either reading: upright as today (``upright``, the exact model input), the classifier's
    ``thumb``, and a reduced copy of the crop (``gray``) to turn when the classifier says so."""

    upright: np.ndarray  # (32, W') float32: what `prepare` gives, bit for bit
    thumb: np.ndarray  # (THUMB_SIZE, THUMB_SIZE) float32
    gray: np.ndarray  # (h, w) uint8, short side at most 2 x the model's height

    def model_input(self, orientation: str, config: PreprocessConfig) -> np.ndarray:
        """Model input (32, W') float32 of the crop read as ``orientation`` says its text appears."""
        if orientation == "0":
            return self.upright
        turned = turn_upright(self.gray, orientation)
        try:
            return normalize(turned, config)
        except Exception:  # e.g. a turned crop beyond max_aspect: read it as it came
            return self.upright


def prepare_oriented(source: ImageSource, config: PreprocessConfig = PreprocessConfig()) -> OrientedCrop:
    """load_image then the three views of :class:`OrientedCrop`; raises InvalidImageError on bad input."""
    draft = 2 * config.height if config.jpeg_draft else None
    gray = load_image(source, config.max_pixels, draft)
    upright = normalize(gray, config, _describe(source))
    return OrientedCrop(upright, thumbnail(gray), _reduced(gray, config))


class OrientationClassifier:
    """Says how the text of crops appears (ORIENTATIONS), in batches of up to ``batch_size`` crops.

    A crop's answer does not depend on its batch: every crop is a 64 x 64 square (no padding), and the network
    has no layer that mixes the images of a batch (tested: the labels alone and in batches are the same).

    ``min_confidence``: a crop is turned only when the classifier gives its orientation at least this
    probability; otherwise it is read upright, as without the classifier.
    """

    def __init__(self, weights: str | os.PathLike | None = None, min_confidence: float | None = None,
                 batch_size: int = 64) -> None:
        from crnn.orientation_model import load_orientation_model  # torch, only now

        path = weights or DEFAULT_ORIENTATION_WEIGHTS
        self.model, classes, self.metadata = load_orientation_model(path)
        if classes != list(ORIENTATIONS) or self.model.input_size != THUMB_SIZE:
            raise CheckpointError(f"{path}: classes {classes} or input size {self.model.input_size} are not this "
                                  f"version's ({', '.join(ORIENTATIONS)}; {THUMB_SIZE} px)")
        self.batch_size = batch_size
        default = float(self.metadata.get("min_confidence", 0.5))
        self.min_confidence = default if min_confidence is None else min_confidence

    def probabilities(self, thumbs: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (N, len(ORIENTATIONS)) of classifier inputs (see :func:`thumbnail`)."""
        import torch

        out = np.zeros((len(thumbs), len(ORIENTATIONS)), np.float32)
        with torch.inference_mode():
            for start in range(0, len(thumbs), self.batch_size):
                x = torch.from_numpy(np.stack(thumbs[start : start + self.batch_size]).astype(np.float32))[:, None]
                out[start : start + len(x)] = torch.softmax(self.model(x), 1).numpy()
        return out

    def classify(self, thumbs: Sequence[np.ndarray]) -> list[str]:
        """The orientation of each crop ("0" unless the classifier is at least ``min_confidence`` sure of another)."""
        probs = self.probabilities(thumbs)
        labels = []
        for p in probs:
            k = int(p.argmax())
            labels.append(ORIENTATIONS[k] if k != 0 and p[k] >= self.min_confidence else "0")
        return labels

    def describe(self) -> dict[str, Any]:
        """The classifier's classes, threshold and training facts."""
        return {"classes": list(ORIENTATIONS), "min_confidence": self.min_confidence, **self.metadata}


def orient_crops(
    crops: Sequence[OrientedCrop], classifier: OrientationClassifier, config: PreprocessConfig
) -> tuple[list[np.ndarray], list[str]]:
    """Model inputs (32, W') of the crops, each read as the classifier says its text appears, and those orientations."""
    labels = classifier.classify([c.thumb for c in crops]) if crops else []
    return [c.model_input(o, config) for c, o in zip(crops, labels)], labels


def load_orientation(mode: str | None) -> OrientationClassifier | None:
    """The classifier for ``mode`` ("auto": the shipped one; "none" or None: no orientation step)."""
    if mode is None or mode == "none":
        return None
    if mode == "auto":
        return OrientationClassifier()
    raise ValueError(f"orientation must be one of {', '.join(ORIENTATION_MODES)}, got {mode!r}")
