"""Distractors painted on the background: lines, poles, frames and sign edges (SynthTIGER's clutter)."""

from __future__ import annotations

import random

import cv2
import numpy as np


def clutter_mask(r: random.Random, h: int, w: int) -> np.ndarray:
    """A (H, W) uint8 mask of one to three distractors, drawn with OpenCV's anti-aliased primitives."""
    mask = np.zeros((h, w), np.uint8)
    for _ in range(r.choice((1, 1, 2, 3))):
        kind = r.randrange(4)
        t = max(1, int(h * r.uniform(0.02, 0.08)))
        if kind == 0:  # a straight line across (cables, rails, sign stripes)
            y0, y1 = r.uniform(0, h), r.uniform(0, h)
            cv2.line(mask, (0, int(y0)), (w - 1, int(y1)), 255, t, cv2.LINE_AA)
        elif kind == 1:  # a pole or post: a thick vertical bar near an edge
            x = int(r.choice((r.uniform(0, 0.12), r.uniform(0.88, 1.0))) * w)
            cv2.rectangle(mask, (x, 0), (x + max(2, int(h * r.uniform(0.1, 0.35))), h), 255, -1)
        elif kind == 2:  # the frame of a sign around the text
            m = int(h * r.uniform(0.02, 0.12))
            cv2.rectangle(mask, (m, m), (w - 1 - m, h - 1 - m), 255, t, cv2.LINE_AA)
        else:  # the corner of another panel
            x, y = int(r.uniform(0, w)), int(r.uniform(0, h))
            cv2.rectangle(mask, (x, y) if r.random() < 0.5 else (0, 0), (x + w, y + h) if r.random() < 0.5 else (x, y), 255, t)
    return mask
