"""The camera-side degradations as one albumentations pipeline, seeded per sample."""

from __future__ import annotations

import os
import random
from typing import Any

import cv2
import numpy as np

from crnn_synth_data.config import SynthConfig


def _albumentations() -> Any:
    # Its import otherwise asks PyPI for a newer version: a network call in every worker process.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations as A
    except ImportError:
        raise ImportError(
            "synth_data needs albumentations for its degradations: pip install 'crnn-ocr[synth]' "
            "(or install the albumentations wheel shipped with the training box)"
        ) from None
    return A


def build_pipeline(config: SynthConfig) -> Any:
    """The albumentations Compose of blur, distortion, downscale, noise, brightness/contrast and JPEG."""
    A = _albumentations()
    c = config
    p_any_blur = min(1.0, c.p_blur + c.p_motion_blur)
    blur_w = c.p_blur / p_any_blur if p_any_blur else 1.0
    transforms = [
        # Shape distortion first, on the sharp image, like a wavy surface.
        A.OneOf(
            [
                A.ElasticTransform(alpha=2.0, sigma=5.0, interpolation=cv2.INTER_LINEAR),
                A.GridDistortion(num_steps=5, distort_limit=(-0.15, 0.15), interpolation=cv2.INTER_LINEAR),
            ],
            p=c.p_distort,
        ),
        A.OneOf(
            [
                A.GaussianBlur(blur_limit=0, sigma_limit=tuple(c.blur_sigma), p=blur_w),
                A.MotionBlur(blur_limit=(3, 5), p=1.0 - blur_w),
            ],
            p=p_any_blur,
        ),
        A.Downscale(
            scale_range=tuple(c.downscale_range),
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
            p=c.p_downscale,
        ),
        A.GaussNoise(std_range=tuple(c.noise_std), per_channel=False, p=c.p_noise),
        # Mild: strong shifts saturate one end and erase the text that colour contrast put there.
        A.RandomBrightnessContrast(brightness_limit=0.12, contrast_limit=(-0.25, 0.15), p=c.p_brightness_contrast),
        A.ImageCompression(quality_range=tuple(c.jpeg_quality), p=c.p_jpeg),
    ]
    return A.Compose(transforms)


class Degrader:
    """Applies the pipeline to (H, W, 3) uint8 images with the sample's own random generators."""

    def __init__(self, config: SynthConfig) -> None:
        self.pipeline = build_pipeline(config)
        self._bound: tuple[int, int] | None = None

    def __call__(self, image: np.ndarray, r: random.Random, rng: np.random.Generator) -> np.ndarray:
        """The degraded image (same shape); deterministic given the states of ``r`` and ``rng``."""
        # All transforms share the caller's generators (per-transform seeds would correlate their
        # draws); binding them is costly, so it is done only when the generator objects change.
        if self._bound != (id(r), id(rng)):
            self.pipeline.set_random_state(rng, r)
            self._bound = (id(r), id(rng))
        return self.pipeline(image=image)["image"]
