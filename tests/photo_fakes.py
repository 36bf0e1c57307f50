"""Fakes for full-photo tests: a detector that boxes a photo's ink (registered as FAKE), and rendered line photos."""

from __future__ import annotations

import cv2
import numpy as np

from crnn.detection.detector import DetectedText, DetectorKind, register_detector
from tests.word_images import render_word

FAKE = "fake-ink-box"


class InkBoxDetector:
    """A fake detector: one region, the box around the photo's dark pixels (a few px of margin); none without ink."""

    name = FAKE

    def __init__(self, threads: int | None = None) -> None:
        pass

    def detect(self, image: np.ndarray) -> list[DetectedText]:
        ys, xs = np.nonzero(image.min(axis=2) < 128)
        if len(xs) == 0 or image.shape[0] < 8:
            return []
        x0, y0, x1, y1 = xs.min() - 4, ys.min() - 3, xs.max() + 5, ys.max() + 4
        return [DetectedText(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32), 0.9)]

    def describe(self) -> dict:
        return {"detector": FAKE}


register_detector(DetectorKind(FAKE, "ink box (tests)", InkBoxDetector))


def line_photo(words: list[str], gap: int = 24, scale: int = 1) -> np.ndarray:
    """A white RGB photo with ``words`` rendered side by side on one line (line_photo_with_boxes without the boxes)."""
    return line_photo_with_boxes(words, gap, scale)[0]


def line_photo_with_boxes(words: list[str], gap: int = 24, scale: int = 1) -> tuple[np.ndarray, list[list[list[float]]]]:
    """A white RGB photo with ``words`` rendered side by side on one line, and each word's ink box as a polygon."""
    crops = [render_word(w, height=32, size=24) for w in words]
    photo = np.full((120, 40 + sum(c.shape[1] for c in crops) + gap * (len(crops) - 1)), 255, np.uint8)
    x, boxes = 20, []
    for c in crops:
        photo[40 : 40 + c.shape[0], x : x + c.shape[1]] = c
        ys, xs = np.nonzero(c < 128)
        x0, y0, x1, y1 = (scale * float(v) for v in (x + xs.min(), 40 + ys.min(), x + xs.max() + 1, 40 + ys.max() + 1))
        boxes.append([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        x += c.shape[1] + gap
    rgb = np.repeat(photo[:, :, None], 3, axis=2)
    return (cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale > 1 else rgb), boxes
