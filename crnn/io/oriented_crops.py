"""Crops in any orientation, as images (issue 18): the orientation classifier's view of a crop, and a crop turned
upright or its stacked letters laid side by side (torch-free: the image loaders of ``crnn ocr`` prepare these in
processes without torch). The classifier and the reading that confirms a turn are crnn/reading/orientation.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from crnn.io.preprocess import ImageSource, PreprocessConfig, _describe, load_image, normalize

ORIENTATIONS = ("0", "90", "180", "270", "stacked")  # the classifier's classes, in output order
THUMB_HEIGHT, THUMB_WIDTH = 32, 128  # the classifier's input, long side horizontal (see classifier_input)


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
