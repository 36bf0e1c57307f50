"""Orientation layouts of rendered words (issue 18): turned 90 / 180 / 270 degrees, or vertical stacked letters.

They are made from the renderer's output (image and per-character boxes), so every style, background and
degradation of the renderer carries over. Labels name how the text appears in the image, as
``crnn.reading.orientation`` classifies it: ``"90"`` is a word turned 90 degrees clockwise (read top to bottom, letter
tops facing right), ``"stacked"`` is upright letters one under the other.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from crnn_synth_data.config import SynthConfig

if TYPE_CHECKING:  # render.py imports this module to apply the layouts
    from crnn_synth_data.render import Sample, WordRenderer

LAYOUTS = ("0", "90", "180", "270", "stacked")  # the classes of crnn.io.oriented_crops.ORIENTATIONS, in that order


def choose_layout(config: SynthConfig, r: random.Random) -> str:
    """The layout of one sample under ``config``'s p_rotate_90 / 180 / 270 / p_stacked ("0" when all are off)."""
    shares = (config.p_rotate_90, config.p_rotate_180, config.p_rotate_270, config.p_stacked)
    if not any(shares):
        return "0"  # draws nothing: default streams stay as they were
    u = r.random()
    for layout, p in zip(LAYOUTS[1:], shares):
        if u < p:
            return layout
        u -= p
    return "0"


def rotate_sample(sample: Sample, quarter_turns: int) -> Sample:
    """``sample`` turned ``quarter_turns`` x 90 degrees clockwise, its boxes moved with it (still x0 < x1, y0 < y1)."""
    k = quarter_turns % 4
    if k == 0:
        return sample
    h, w = sample.image.shape[:2]
    image = np.ascontiguousarray(np.rot90(sample.image, -k))
    b = sample.boxes.astype(np.float32)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    if k == 1:  # clockwise: (x, y) -> (h - y, x)
        boxes = np.stack([h - y1, x0, h - y0, x1], axis=1)
    elif k == 2:
        boxes = np.stack([w - x1, h - y1, w - x0, h - y0], axis=1)
    else:  # counter-clockwise: (x, y) -> (y, w - x)
        boxes = np.stack([y0, w - x1, y1, w - x0], axis=1)
    return replace(sample, image=image, boxes=boxes.astype(np.float32))


def stack_letters(sample: Sample, r: random.Random) -> Sample:
    """``sample``'s letters cut from its image and stacked top to bottom, each centred, in reading order.

    Each letter keeps the line's full band (so letters keep their relative sizes and baseline), with a
    random gap and margin; strips are padded to one width by repeating their edges, so the background goes on.
    """
    img, boxes = sample.image, sample.boxes
    h, w = img.shape[:2]
    if len(boxes) < 2:
        return sample
    band0 = int(max(0, np.floor(boxes[:, 1].min()) - 1))
    band1 = int(min(h, np.ceil(boxes[:, 3].max()) + 1))
    band_h = band1 - band0
    gap = int(r.uniform(0.0, 0.3) * band_h)  # rows between letters: touching to loose
    margin = int(r.uniform(0.05, 0.3) * band_h)  # left and right of the widest letter
    cuts = [(int(max(0, np.floor(x0) - 1)), int(min(w, np.ceil(x1) + 1))) for x0, _, x1, _ in boxes]
    if band_h < 1 or any(b <= a for a, b in cuts):
        return sample
    width = max(b - a for a, b in cuts) + 2 * margin
    pieces, out_boxes, y = [], [], 0
    for (a, b), (x0, y0, x1, y1) in zip(cuts, boxes):
        strip = img[band0:band1, a:b]
        left = (width - (b - a)) // 2
        strip = cv2.copyMakeBorder(strip, 0, gap, left, width - (b - a) - left, cv2.BORDER_REPLICATE)
        pieces.append(strip)
        out_boxes.append([left + x0 - a, y + y0 - band0, left + x1 - a, y + y1 - band0])
        y += strip.shape[0]
    pad = int(r.uniform(0.0, 0.3) * band_h)
    image = cv2.copyMakeBorder(np.concatenate(pieces, axis=0), pad, max(0, pad - gap), 0, 0, cv2.BORDER_REPLICATE)
    out = np.asarray(out_boxes, np.float32) + np.array([0, pad, 0, pad], np.float32)
    return replace(sample, image=np.ascontiguousarray(image), boxes=out)


def apply_layout(sample: Sample, layout: str, r: random.Random) -> Sample:
    """``sample`` in ``layout`` (one of LAYOUTS)."""
    if layout == "stacked":
        return stack_letters(sample, r)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    return rotate_sample(sample, int(layout) // 90)


def orient_sample(sample: Sample, config: SynthConfig, r: random.Random) -> Sample:
    """``sample`` in a layout drawn from ``config`` (unchanged, and nothing drawn, when the layouts are off)."""
    layout = choose_layout(config, r)
    return sample if layout == "0" else apply_layout(sample, layout, r)


def render_in_layout(renderer: WordRenderer, seed: int, index: int, layout: str) -> Sample:
    """Sample ``index`` of stream ``seed`` rendered upright, then put in ``layout`` (the same word in every layout).

    The layout's own draws come from a generator seeded by (seed, index, layout), so the upright render is the
    renderer's and a layout's image is the same in any process.
    """
    sample = renderer.render(seed, index)
    r = random.Random(f"{seed}/{index}/{layout}")
    return apply_layout(sample, layout, r)
