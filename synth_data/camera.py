"""The camera chain: optics on a supersampled image, then the sensor at a low resolution (street-view crops)."""

from __future__ import annotations

import random
import cv2
import numpy as np

from crnn_synth_data.config import SynthConfig
from crnn_synth_data.degrade import _albumentations


class Camera:
    """Optical blurs (defocus, zoom, motion) at high resolution and the sensor's low resolution, gamma,
    lighting and noise; every step a SynthConfig probability, every draw from the sample's generators."""

    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        A = _albumentations()
        c = config
        # Radii in pixels of the supersampled image (2-4x): about 0.5-2 output pixels.
        self.optics = A.Compose([
            A.Defocus(radius=(2, 6), alias_blur=(0.1, 0.4), p=c.p_defocus),
            A.ZoomBlur(max_factor=(1.01, 1.08), step_factor=(0.01, 0.02), p=c.p_zoom_blur),
            A.MotionBlur(blur_limit=(5, 13), p=c.p_camera_motion),
        ])
        self.sensor = A.Compose([
            A.RandomGamma(gamma_limit=(60, 160), p=c.p_gamma),
            A.OneOf([
                A.Illumination(mode="linear", intensity_range=(0.05, 0.2)),  # shadow / highlight across the crop
                A.Illumination(mode="corner", intensity_range=(0.05, 0.2), effect_type="darken"),  # vignetting
                A.Illumination(mode="gaussian", intensity_range=(0.05, 0.2), sigma_range=(0.2, 0.8)),  # spot light
            ], p=c.p_lighting),
            A.ISONoise(color_shift=(0.01, 0.05), intensity=(0.1, 0.5), p=c.p_sensor_noise),
        ])
        self.sensor_on = c.p_gamma > 0 or c.p_lighting > 0 or c.p_sensor_noise > 0
        self.optics_on = c.p_defocus > 0 or c.p_zoom_blur > 0 or c.p_camera_motion > 0
        self._bound: tuple[int, int] | None = None

    def _bind(self, r: random.Random, rng: np.random.Generator) -> None:
        if self._bound != (id(r), id(rng)):
            self.optics.set_random_state(rng, r)
            self.sensor.set_random_state(rng, r)
            self._bound = (id(r), id(rng))

    def __call__(
        self, image: np.ndarray, r: random.Random, rng: np.random.Generator, size: tuple[int, int], text_height: float,
    ) -> np.ndarray:
        """``image`` (h, w, 3) uint8, possibly supersampled, through the chain to ``size`` (width, height);
        ``text_height`` is the text's height in output pixels (the low-resolution step aims at 8-20 px)."""
        c = self.config
        self._bind(r, rng)
        supersampled = image.shape[0] != size[1]
        if supersampled and self.optics_on:
            image = self.optics(image=image)["image"]
        if supersampled:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        low = c.p_lowres > 0 and r.random() < c.p_lowres
        small = None
        if low:
            k = r.uniform(*c.lowres_text_height) / max(text_height, 1.0)
            if k < 0.95:
                small = (max(2, round(size[0] * k)), max(2, round(size[1] * k)))
                image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        if self.sensor_on:
            image = self.sensor(image=image)["image"]
        if small is not None:
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR if r.random() < 0.7 else cv2.INTER_CUBIC)
        return image
