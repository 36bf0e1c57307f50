"""The contract every text detector keeps (TextDetector), what it returns (DetectedText), and how a kind is
described and added (DetectorKind, register_detector); crnn.detection.registry holds the built-in kinds and looks
kinds up by name (as crnn.kinds.registry does for recognizer kinds)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


DEFAULT_DETECTOR = "ppocr-v6-small"


@dataclass(frozen=True)
class DetectedText:
    """One text region of a photo: a quadrilateral (4, 2) float32 in photo pixels, clockwise from its top-left
    corner, and the detector's score in [0, 1]."""

    polygon: np.ndarray
    score: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``polygon`` as [[x, y], ...], ``score``)."""
        return {"polygon": np.round(self.polygon, 1).tolist(), "score": round(float(self.score), 4)}


@runtime_checkable
class TextDetector(Protocol):
    """Finds the text regions (lines or words) of a photo.

    ``detect`` takes one photo (H, W, 3) uint8 RGB and returns its regions, in any order; a photo without text
    gives an empty list. A photo's result never depends on other calls (no state between photos).
    """

    name: str  # the registry name of its kind

    def detect(self, image: np.ndarray) -> list[DetectedText]:
        """The text regions of one RGB photo (H, W, 3) uint8."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the detector is (model file, input size, thresholds), for reports."""
        ...


@dataclass(frozen=True)
class DetectorKind:
    """One detector kind: its name, how to describe it in messages, and how to build it (keyword options)."""

    name: str
    title: str
    build: Callable[..., TextDetector]


_DETECTORS: dict[str, DetectorKind] = {}


def register_detector(kind: DetectorKind) -> DetectorKind:
    """Add a detector kind; registering another kind under a taken name is an error."""
    old = _DETECTORS.get(kind.name)
    if old is not None and old != kind:
        raise ValueError(f"detector kind {kind.name!r} is already registered")
    _DETECTORS[kind.name] = kind
    return kind
