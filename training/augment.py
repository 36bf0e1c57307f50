"""Augmentations for real word crops (a folder or LMDB source's ``augment: real``): a few real photos made many.

Real crops already carry a camera's blur, noise and compression, so each step is mild and most samples pass
through only some of them; the geometry (perspective, rotation, shear, crop jitter) is what a detector's box or
a user's hand cropping varies. Renders need none of this: the renderer degrades them itself (synth.*).
"""

from __future__ import annotations

import os
import random
from typing import Any

import cv2
import numpy as np


def _albumentations() -> Any:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its import otherwise asks PyPI for a newer version
    import albumentations as A

    return A


def build_real_pipeline() -> Any:
    """The albumentations Compose applied to gray (H, W) uint8 crops."""
    A = _albumentations()
    border = cv2.BORDER_REPLICATE  # a crop's own edge, not a black frame the model would learn to read
    return A.Compose([
        # Crop jitter: a box a little tighter or looser than the annotated one (share of each side); tighter by at
        # most 2%: SVT's boxes are already tight and more cuts letters off, which teaches the model to invent them.
        A.CropAndPad(percent=(-0.02, 0.08), keep_size=False, sample_independently=True, border_mode=border, p=0.6),
        A.Perspective(scale=(0.02, 0.06), keep_size=True, fit_output=True, border_mode=border, p=0.3),
        A.Affine(rotate=(-4, 4), shear={"x": (-10, 10), "y": (0, 0)}, fit_output=True, border_mode=border, p=0.3),
        A.OneOf([
            A.GaussianBlur(blur_limit=0, sigma_limit=(0.3, 1.2)),
            A.MotionBlur(blur_limit=(3, 5)),
        ], p=0.2),
        A.Downscale(scale_range=(0.5, 0.9), p=0.15),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.2),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=(-0.3, 0.2), p=0.4),
        A.InvertImg(p=0.1),  # light text on dark and dark on light are both common in photos
        A.ImageCompression(quality_range=(30, 90), p=0.25),
    ])


class RealCropAugmenter:
    """A gray crop through :func:`build_real_pipeline`, deterministic given the sample's seed."""

    def __init__(self) -> None:
        self.pipeline = build_real_pipeline()

    def __call__(self, gray: np.ndarray, seed: int) -> np.ndarray:
        """The augmented (H', W') uint8 crop of a gray (H, W) uint8 ``gray``; the same seed gives the same result."""
        # Generators per sample keep a pool a pure function of its seeds (resume exactness), whatever came before.
        self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = self.pipeline(image=gray)["image"]
        return out if out.ndim == 2 else out[..., 0]
