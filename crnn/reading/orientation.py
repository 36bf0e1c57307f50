"""Reading crops in any orientation (issue 18): which way a crop's text runs, and turning it upright.

A tiny CNN (``crnn.models.orientation``, weights ``weights/orientation.safetensors``) looks at the raw crop,
before the 32-px resize, and says how its text appears: upright (``"0"``), turned 90 / 180 / 270 degrees
clockwise, or ``"stacked"`` (upright letters one under the other). The crop is then turned upright
(``np.rot90``) or, for stacked letters, cut into letters laid side by side, and read as usual. A turn is kept
only when the recognizer reads the turned crop more confidently than the crop as it came (``read_oriented``):
the classifier proposes, the recognizer's own evidence confirms.

This module is torch-free (the image loaders of ``crnn ocr`` use it in processes without torch); the
classifier imports torch only when it is built, so ``--orientation none`` loads nothing of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import cv2
import numpy as np

from crnn.errors import CheckpointError
from crnn.io.preprocess import ImageSource, PreprocessConfig, _describe, load_image, normalize

ORIENTATIONS = ("0", "90", "180", "270", "stacked")  # the classifier's classes, in output order
OrientationMode = Literal["auto", "none"]
ORIENTATION_MODES = ("auto", "none")
THUMB_HEIGHT, THUMB_WIDTH = 32, 128  # the classifier's input, long side horizontal (see classifier_input)
# The shipped classifier's weights, beside the recognizer's: crnn/weights/ in a wheel, weights/ in a clone.
_PACKAGE = Path(__file__).resolve().parents[1]  # crnn/, the package (this module is in a sub-package)
DEFAULT_ORIENTATION_WEIGHTS = next(
    (p for p in (_PACKAGE / "weights" / "orientation.safetensors", _PACKAGE.parent / "weights" / "orientation.safetensors")
     if p.exists()),
    _PACKAGE.parent / "weights" / "orientation.safetensors",
)


def classifier_input(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """The classifier's view (THUMB_HEIGHT, THUMB_WIDTH) float32 of a grayscale crop (H, W) uint8, and whether
    the crop is taller than wide.

    A tall crop is first turned 90 degrees counter-clockwise, so the network always sees the long side
    horizontal, at the resolution the recognizer reads (32 px high): it only has to tell the text's turn
    within that frame (see OrientationClassifier.classify). The crop keeps its aspect ratio (width at most
    THUMB_WIDTH, the rest 0); pixels are standardised per crop, so either polarity looks alike in contrast.
    """
    tall = gray.shape[0] > gray.shape[1]
    g = np.rot90(gray, 1) if tall else gray
    h, w = g.shape
    nh = THUMB_HEIGHT
    nw = int(round(w * nh / h))
    if nw > THUMB_WIDTH:
        nw, nh = THUMB_WIDTH, max(1, int(round(h * THUMB_WIDTH / w)))
    nw = max(1, nw)
    small = cv2.resize(np.ascontiguousarray(g), (nw, nh), interpolation=cv2.INTER_AREA if h > nh else cv2.INTER_LINEAR)
    x = small.astype(np.float32)
    x = (x - x.mean()) / max(float(x.std()), 8.0)
    out = np.zeros((THUMB_HEIGHT, THUMB_WIDTH), np.float32)
    top, left = (THUMB_HEIGHT - nh) // 2, (THUMB_WIDTH - nw) // 2
    out[top : top + nh, left : left + nw] = x
    return out, tall


def from_frame(label: str, tall: bool) -> str:
    """The crop's orientation from the one the network saw in its long-side-horizontal frame."""
    if not tall or label == "stacked":
        return label
    # The frame turned the crop 90 degrees counter-clockwise, i.e. took 90 off the text's clockwise turn.
    return str((int(label) + 90) % 360)


def to_frame(orientation: str, tall: bool) -> str:
    """The class the network should see for a crop of ``orientation`` (the inverse of from_frame; training)."""
    if not tall or orientation == "stacked":
        return orientation
    return str((int(orientation) - 90) % 360)


def _letter_rows(ink: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) rows of each letter of a stack: runs of rows with ink, with small runs (an i's dot, specks)
    merged into the nearer neighbour."""
    profile = ink.mean(axis=1)
    inked = profile > max(0.02, 0.2 * float(np.percentile(profile, 90)))
    runs: list[list[int]] = []
    for y, on in enumerate(inked):
        if on and runs and runs[-1][1] == y:
            runs[-1][1] = y + 1
        elif on:
            runs.append([y, y + 1])
    while len(runs) > 1:
        heights = [b - a for a, b in runs]
        k = int(np.argmin(heights))
        if heights[k] >= 0.4 * float(np.median(heights)):
            break
        gap_up = runs[k][0] - runs[k - 1][1] if k > 0 else None
        gap_down = runs[k + 1][0] - runs[k][1] if k + 1 < len(runs) else None
        j = k - 1 if gap_down is None or (gap_up is not None and gap_up <= gap_down) else k + 1
        a, b = min(runs[k][0], runs[j][0]), max(runs[k][1], runs[j][1])
        runs[min(j, k)] = [a, b]
        del runs[max(j, k)]
    return [(a, b) for a, b in runs]


def unstack(gray: np.ndarray) -> np.ndarray:
    """A crop of stacked letters (H, W) re-laid as one upright line: cut between letters, placed side by side.

    Letters are the runs of rows with ink (Otsu's threshold; the text is the side with fewer pixels), cut
    halfway through the gaps between them; each letter's rows then go to the right of the previous letter's,
    so n letters give about (H / n, n * W). Touching letters (no gap) stay together.
    """
    _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary if binary.mean() < 0.5 else 1 - binary
    rows = _letter_rows(ink)
    if len(rows) < 2:
        return gray
    cuts = [0] + [(b + a) // 2 for (_, b), (a, _) in zip(rows, rows[1:])] + [gray.shape[0]]
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
    input (``thumb``, ``tall``), and a reduced copy of the crop (``gray``) to turn when the classifier says so."""

    upright: np.ndarray  # (32, W') float32: what `prepare` gives, bit for bit
    thumb: np.ndarray  # (THUMB_HEIGHT, THUMB_WIDTH) float32
    tall: bool  # taller than wide (the thumb shows it turned 90 degrees counter-clockwise)
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
    return OrientedCrop(upright, *classifier_input(gray), _reduced(gray, config))


class OrientationClassifier:
    """Says how the text of crops appears (ORIENTATIONS), in batches of up to ``batch_size`` crops.

    A crop's answer does not depend on its batch: every crop is a 64 x 64 square (no padding), and the network
    has no layer that mixes the images of a batch (tested: the labels alone and in batches are the same).

    ``min_confidence``: a crop is turned only when the classifier gives its orientation at least this
    probability; otherwise it is read upright, as without the classifier.
    """

    def __init__(self, weights: str | os.PathLike | None = None, min_confidence: float | None = None,
                 batch_size: int = 64) -> None:
        from crnn.models.orientation import load_orientation_model  # torch, only now

        path = weights or DEFAULT_ORIENTATION_WEIGHTS
        self.model, classes, self.metadata = load_orientation_model(path)
        if classes != list(ORIENTATIONS) or self.model.input_size != (THUMB_HEIGHT, THUMB_WIDTH):
            raise CheckpointError(f"{path}: classes {classes} or input size {self.model.input_size} are not this "
                                  f"version's ({', '.join(ORIENTATIONS)}; {THUMB_HEIGHT}x{THUMB_WIDTH} px)")
        self.batch_size = batch_size
        default = float(self.metadata.get("min_confidence", 0.5))
        self.min_confidence = default if min_confidence is None else min_confidence

    def probabilities(self, thumbs: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (N, len(ORIENTATIONS)) of classifier inputs, in their long-side-horizontal frame
        (see :func:`classifier_input`)."""
        import torch

        out = np.zeros((len(thumbs), len(ORIENTATIONS)), np.float32)
        with torch.inference_mode():
            for start in range(0, len(thumbs), self.batch_size):
                x = torch.from_numpy(np.stack(thumbs[start : start + self.batch_size]).astype(np.float32))[:, None]
                out[start : start + len(x)] = torch.softmax(self.model(x), 1).numpy()
        return out

    def classify(self, thumbs: Sequence[np.ndarray], tall: Sequence[bool]) -> list[str]:
        """The orientation of each crop from its :func:`classifier_input` ("0" unless the classifier is at least
        ``min_confidence`` sure of another)."""
        probs = self.probabilities(thumbs)
        labels = []
        for p, t in zip(probs, tall):
            k = int(p.argmax())
            label = from_frame(ORIENTATIONS[k], t)
            labels.append(label if label != "0" and p[k] >= self.min_confidence else "0")
        return labels

    def describe(self) -> dict[str, Any]:
        """The classifier's classes, threshold and training facts."""
        return {"classes": list(ORIENTATIONS), "min_confidence": self.min_confidence, **self.metadata}


def orient_crops(
    crops: Sequence[OrientedCrop], classifier: OrientationClassifier, config: PreprocessConfig
) -> tuple[list[np.ndarray], list[str]]:
    """Model inputs (32, W') of the crops, each read as the classifier says its text appears, and those orientations."""
    labels = classifier.classify([c.thumb for c in crops], [c.tall for c in crops]) if crops else []
    return [c.model_input(o, config) for c, o in zip(crops, labels)], labels


class _Reading(Protocol):
    confidence: float


ReadingT = TypeVar("ReadingT", bound=_Reading)


def confirm_turn(turned: _Reading, upright: _Reading) -> bool:
    """Whether to keep a crop turned: only when its turned reading is more confident than its upright one.

    The classifier sees a 32 x 128 thumbnail; the recognizer sees the text. An upright word the classifier takes
    for upside down reads well as it came and badly turned, so the turn is dropped; a word really turned reads
    badly as it came. Ties keep the crop as it came (what ``--orientation none`` reads).
    """
    return turned.confidence > upright.confidence


def read_oriented(
    read: Callable[[list[np.ndarray]], list[ReadingT]], crops: Sequence[OrientedCrop],
    classifier: OrientationClassifier, config: PreprocessConfig,
) -> tuple[list[ReadingT], list[str]]:
    """Each crop read as the classifier says its text appears, the turn confirmed by :func:`confirm_turn`, and the
    orientation used ("0" where the turn was not confirmed). ``read`` maps model inputs (32, W') to readings with a
    ``confidence``, in order; crops the classifier would turn are read twice, the others once."""
    arrays, labels = orient_crops(crops, classifier, config)
    readings = read(arrays) if crops else []
    turned = [i for i, label in enumerate(labels) if label != "0"]
    if turned:
        keep_confirmed_turns(readings, labels, dict(zip(turned, read([crops[i].upright for i in turned]))))
    return readings, labels


def keep_confirmed_turns(readings: list[ReadingT] | dict[int, ReadingT], labels: list[str] | list[str | None],
                         uprights: dict[int, ReadingT]) -> None:
    """In place: where a turned crop's reading (``readings[i]``) is not confirmed against its reading as it came
    (``uprights[i]``, :func:`confirm_turn`), take the upright reading and the orientation "0"."""
    for i, upright in uprights.items():
        if not confirm_turn(readings[i], upright):
            readings[i], labels[i] = upright, "0"


def load_orientation(mode: str | None) -> OrientationClassifier | None:
    """The classifier for ``mode`` ("auto": the shipped one; "none" or None: no orientation step)."""
    if mode is None or mode == "none":
        return None
    if mode == "auto":
        return OrientationClassifier()
    raise ValueError(f"orientation must be one of {', '.join(ORIENTATION_MODES)}, got {mode!r}")
