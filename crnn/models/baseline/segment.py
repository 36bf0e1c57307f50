"""Character segmentation from the image alone: binarise, connected components, merge, split, order.

The classic front end of a segment-then-classify recogniser. Every step is a fixed rule (no learning),
which is the point of the baseline: its errors are the errors of any rule that must find character
boundaries before knowing which characters it is looking at.
"""

from __future__ import annotations

from typing import Literal, get_args

import cv2
import numpy as np
from pydantic import ConfigDict

from crnn.config import Config

Binarization = Literal["otsu", "sauvola", "both"]
BINARIZATIONS: tuple[str, ...] = get_args(Binarization)


class SegmentConfig(Config):
    """Knobs of :func:`segment`; stored in baseline checkpoints so evaluation segments as training did."""

    model_config = ConfigDict(frozen=True)  # hashable; used as a default argument
    kind = "segmenter"

    binarize: Binarization = "otsu"  # "both": ink under both; otsu scored best on synthetic words
    sauvola_window: float = 0.5  # local window side, as a share of the image height (odd, >= 3 px)
    sauvola_k: float = 0.2
    # merge_overlap and min_piece were chosen on 600 synthetic words (seed 3000017, not the report's test
    # seed) from a grid with the shipped baseline's classifier: end-to-end 33.8% -> 35.7% (was 0.5 / 0.25).
    merge_overlap: float = 0.3  # merge two components overlapping by this share of the narrower one
    split_ratio: float = 1.25  # split a component wider than this times the text height (W, M stay whole)
    min_piece: float = 0.3  # narrowest piece a split may leave, as a share of the text height
    min_area: float = 0.003  # smallest kept component, as a share of height**2 (noise below)


def otsu_threshold(gray: np.ndarray) -> float:
    """Otsu's global threshold of a uint8 image (H, W): pixels > t are the bright class."""
    t, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t)


def text_is_dark(gray: np.ndarray) -> bool:
    """Whether the text of a uint8 word image (H, W) is darker than its background.

    The border of a word crop is mostly background, so the Otsu class that holds most border pixels is the
    background; when the border is split evenly (text touching the crop edges) the smaller class overall
    is taken as the text, since strokes cover less area than the background around them.
    """
    bright = gray > otsu_threshold(gray)
    border = np.concatenate([bright[0], bright[-1], bright[:, 0], bright[:, -1]])
    share = float(border.mean())
    if abs(share - 0.5) > 0.15:
        return share > 0.5
    return float(bright.mean()) > 0.5


def sauvola_mask(dark_text: np.ndarray, window: int, k: float, r: float = 128.0) -> np.ndarray:
    """Sauvola foreground (H, W) bool of a uint8 image with dark text: pixel < mean * (1 + k (std / r - 1))."""
    x = dark_text.astype(np.float64)
    # Box filters give local mean and variance in O(1) per pixel; reflected borders avoid a dark frame.
    mean = cv2.boxFilter(x, -1, (window, window), borderType=cv2.BORDER_REFLECT)
    sq = cv2.boxFilter(x * x, -1, (window, window), borderType=cv2.BORDER_REFLECT)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    return x < mean * (1.0 + k * (std / r - 1.0))


def binarize(gray: np.ndarray, config: SegmentConfig = SegmentConfig()) -> np.ndarray:
    """Text mask (H, W) bool of a uint8 word image of either polarity."""
    dark = gray if text_is_dark(gray) else 255 - gray
    otsu = dark <= otsu_threshold(dark)
    if config.binarize == "otsu":
        return otsu
    window = max(3, int(round(config.sauvola_window * gray.shape[0])) | 1)
    sauvola = sauvola_mask(dark, window, config.sauvola_k)
    if config.binarize == "sauvola":
        return sauvola
    # Otsu alone misses text on uneven backgrounds, Sauvola alone turns background texture into specks;
    # their intersection keeps the pixels both agree are ink.
    return otsu & sauvola


def _merge_overlapping(groups: list[list[int]], boxes: np.ndarray, overlap: float) -> list[list[int]]:
    # Union components whose x-ranges overlap by `overlap` of the narrower one (dots of i and j, accents,
    # strokes broken by binarisation), until nothing changes.
    merged = True
    while merged:
        merged = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                ba, bb = boxes[groups[a]], boxes[groups[b]]
                ax0, ax1 = ba[:, 0].min(), ba[:, 2].max()
                bx0, bx1 = bb[:, 0].min(), bb[:, 2].max()
                inter = min(ax1, bx1) - max(ax0, bx0)
                if inter > overlap * min(ax1 - ax0, bx1 - bx0):
                    groups[a] = groups[a] + groups[b]
                    del groups[b]
                    merged = True
                    break
            if merged:
                break
    return groups


def _tight_box(mask: np.ndarray, x_offset: int = 0) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min() + x_offset, ys.min(), xs.max() + 1 + x_offset, ys.max() + 1], np.float32)


def _split(mask: np.ndarray, text_h: float, config: SegmentConfig) -> list[np.ndarray]:
    # Recursive cut at the emptiest column (minimum of the vertical projection profile) of a too-wide
    # component, never leaving a piece narrower than min_piece * text_h; returns boxes in mask coordinates.
    box = _tight_box(mask)
    if box is None:
        return []
    x0, x1 = int(box[0]), int(box[2])
    width = x1 - x0
    lo = max(1, int(round(config.min_piece * text_h)))
    if width <= config.split_ratio * text_h or width < 2 * lo:
        return [box]
    profile = mask[:, x0:x1].sum(axis=0).astype(np.float64)
    # Among equal minima prefer the one nearest the middle: two touching letters meet near their centre.
    centre = (width - 1) / 2.0
    candidates = np.arange(lo, width - lo + 1)
    costs = profile[np.clip(candidates, 0, width - 1)] + 1e-3 * np.abs(candidates - centre)
    cut = x0 + int(candidates[int(np.argmin(costs))])
    left, right = mask.copy(), mask.copy()
    left[:, cut:] = False
    right[:, :cut] = False
    return _split(left, text_h, config) + _split(right, text_h, config)


def segment(gray: np.ndarray, config: SegmentConfig = SegmentConfig()) -> np.ndarray:
    """Character boxes (N, 4) float32 x0, y0, x1, y1 (x1, y1 exclusive), left to right, of a uint8 word image (H, W)."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"segment needs a (H, W) uint8 image, got {gray.shape} {gray.dtype}")
    h = gray.shape[0]
    mask = binarize(gray, config)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    min_area = max(2.0, config.min_area * h * h)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    if not keep:
        return np.zeros((0, 4), np.float32)
    comp_boxes = np.zeros((n, 4), np.float32)
    for i in keep:
        x, y, w, hh = stats[i, :4]
        comp_boxes[i] = (x, y, x + w, y + hh)
    groups = _merge_overlapping([[i] for i in keep], comp_boxes, config.merge_overlap)
    # Text height: the tallest group (a capital, an ascender, an i with its dot) rather than a typical one,
    # so that an all-lowercase word's x-height does not make every 'm' and 'w' look like two letters.
    heights = [comp_boxes[g][:, 3].max() - comp_boxes[g][:, 1].min() for g in groups]
    text_h = float(max(heights))
    out: list[np.ndarray] = []
    for g in groups:
        gmask = np.isin(labels, g)
        out.extend(_split(gmask, text_h, config))
    boxes = np.stack(out).astype(np.float32)
    return boxes[np.argsort((boxes[:, 0] + boxes[:, 2]) / 2, kind="stable")]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (N, M) of boxes a (N, 4) and b (M, 4), x0, y0, x1, y1."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def segmentation_stats(predicted: list[np.ndarray], truth: list[np.ndarray], iou_min: float = 0.5) -> dict[str, float]:
    """The segmenter's error rate against true boxes, over words (lists of (N, 4) boxes).

    count_match: share of words with as many segments as characters; exact: share of words whose
    segments match the true boxes one to one in order with IoU >= iou_min; mean_iou: mean over true
    boxes of the best IoU with any predicted box.
    """
    count = exact = 0
    ious: list[float] = []
    for p, t in zip(predicted, truth):
        if len(t) == 0:
            continue
        iou = box_iou(t, p) if len(p) else np.zeros((len(t), 1))
        ious.extend(iou.max(axis=1).tolist())
        if len(p) == len(t):
            count += 1
            exact += int(np.all(np.diag(iou) >= iou_min))
    words = sum(1 for t in truth if len(t))
    return {
        "words": float(words),
        "count_match": count / words if words else 0.0,
        "exact": exact / words if words else 0.0,
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
    }
