"""The detector kinds by name: the built-in ones (registered by importing their modules, which import no optional
package) and any added with register_detector; the photo reader and the commands look kinds up here."""

from __future__ import annotations

from typing import Any

import crnn.detection.ppocr_detector  # noqa: F401  (registers "ppocr-v6-small"; onnxruntime loads only when built)
from crnn.detection.detector import _DETECTORS, DEFAULT_DETECTOR, DetectorKind, TextDetector
from crnn.errors import BackendError


def detector_kinds() -> dict[str, DetectorKind]:
    """Every registered detector kind by name."""
    return dict(_DETECTORS)


def load_detector(name: str = DEFAULT_DETECTOR, **options: Any) -> TextDetector:
    """A detector of kind ``name`` built with ``options``; BackendError for an unknown kind or a missing extra."""
    kind = _DETECTORS.get(name)
    if kind is None:
        raise BackendError(f"unknown text detector {name!r} (known: {', '.join(sorted(_DETECTORS))})")
    return kind.build(**options)
