"""The contract every text detector keeps (TextDetector), what it returns (DetectedText), and the registry of
detector kinds, which the photo reader looks kinds up in by name (as crnn.registry does for recognizer kinds).

Imports neither onnxruntime nor rapidocr: a kind's module is imported on its first lookup, so `import crnn` and
the default install stay as they were."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from crnn.errors import BackendError

# The modules that register the built-in detector kinds; imported on the first lookup.
BUILTIN_DETECTOR_MODULES: tuple[str, ...] = ("crnn.detection.ppocr_detector",)
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
_builtins_loaded = False


def register_detector(kind: DetectorKind) -> DetectorKind:
    """Add a detector kind; registering another kind under a taken name is an error."""
    old = _DETECTORS.get(kind.name)
    if old is not None and old != kind:
        raise ValueError(f"detector kind {kind.name!r} is already registered")
    _DETECTORS[kind.name] = kind
    return kind


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_DETECTOR_MODULES:
            importlib.import_module(module)  # registers; needs no optional package to import


def detector_kinds() -> dict[str, DetectorKind]:
    """Every registered detector kind by name."""
    _load_builtins()
    return dict(_DETECTORS)


def load_detector(name: str = DEFAULT_DETECTOR, **options: Any) -> TextDetector:
    """A detector of kind ``name`` built with ``options``; BackendError for an unknown kind or a missing extra."""
    _load_builtins()
    kind = _DETECTORS.get(name)
    if kind is None:
        raise BackendError(f"unknown text detector {name!r} (known: {', '.join(sorted(_DETECTORS))})")
    return kind.build(**options)
