"""crnn-ocr: scene text recognition with a CRNN (convolutional + recurrent network, CTC loss)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it. Resolved on first use (PEP 562), so that importing a
# torch-free part of the package (crnn.cli, crnn.commands.ocr, crnn.io.preprocess) does not import torch: `crnn ocr`
# starts its image-decoding processes before torch is loaded.
_EXPORTS: dict[str, str] = {
    "DEFAULT_CHARS": "crnn.charset",
    "Charset": "crnn.charset",
    "Checkpoint": "crnn.checkpoints.checkpoint",
    "load_checkpoint": "crnn.kinds.loading",
    "save_checkpoint": "crnn.kinds.loading",
    "CheckpointError": "crnn.errors",
    "ConfigError": "crnn.errors",
    "CRNNError": "crnn.errors",
    "InvalidImageError": "crnn.errors",
    "ModelChoiceError": "crnn.errors",
    "ModelNotShippedError": "crnn.errors",
    "UnknownModelError": "crnn.errors",
    "UnsupportedCharacterError": "crnn.errors",
    "CRNN": "crnn.models.crnn",
    "ModelConfig": "crnn.models.crnn",
    "build_model": "crnn.models.crnn",
    "FailedImage": "crnn.reading.text_recognizer",
    "OnnxRecognizer": "crnn.reading.onnx_recognizer",
    "DetectedText": "crnn.detection.detector",
    "TextDetector": "crnn.detection.detector",
    "load_detector": "crnn.detection.registry",
    "PhotoReader": "crnn.detection.photo_reader",
    "PhotoReading": "crnn.detection.photo_reader",
    "read_photo": "crnn.detection.photo_reader",
    "Prediction": "crnn.prediction",
    "PreprocessConfig": "crnn.io.preprocess",
    "load_image": "crnn.io.preprocess",
    "prepare": "crnn.io.preprocess",
    "Recognizer": "crnn.reading.recognizer",
    "ModelKind": "crnn.checkpoints.kind",
    "load_recognizer": "crnn.kinds.loading",
    "register": "crnn.kinds.registry",
    "SHIPPED_MODELS": "crnn.checkpoints.shipped",
    "TextRecognizer": "crnn.reading.text_recognizer",
}

__all__ = [
    "CRNN",
    "CRNNError",
    "Charset",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "DEFAULT_CHARS",
    "DetectedText",
    "FailedImage",
    "InvalidImageError",
    "ModelChoiceError",
    "ModelConfig",
    "ModelNotShippedError",
    "OnnxRecognizer",
    "PhotoReader",
    "PhotoReading",
    "Prediction",
    "PreprocessConfig",
    "ModelKind",
    "Recognizer",
    "SHIPPED_MODELS",
    "TextDetector",
    "TextRecognizer",
    "UnknownModelError",
    "UnsupportedCharacterError",
    "build_model",
    "load_checkpoint",
    "load_detector",
    "load_image",
    "load_recognizer",
    "prepare",
    "read_photo",
    "register",
    "save_checkpoint",
    "__version__",
]

if TYPE_CHECKING:
    from crnn.charset import DEFAULT_CHARS, Charset
    from crnn.checkpoints.checkpoint import Checkpoint
    from crnn.checkpoints.kind import ModelKind
    from crnn.detection.detector import DetectedText, TextDetector
    from crnn.detection.registry import load_detector
    from crnn.detection.photo_reader import PhotoReader, PhotoReading, read_photo
    from crnn.checkpoints.shipped import SHIPPED_MODELS
    from crnn.errors import (
        CheckpointError,
        ConfigError,
        CRNNError,
        InvalidImageError,
        ModelChoiceError,
        ModelNotShippedError,
        UnknownModelError,
        UnsupportedCharacterError,
    )
    from crnn.io.preprocess import PreprocessConfig, load_image, prepare
    from crnn.kinds.loading import load_checkpoint, load_recognizer, save_checkpoint
    from crnn.kinds.registry import register
    from crnn.models.crnn import CRNN, ModelConfig, build_model
    from crnn.prediction import Prediction
    from crnn.reading.onnx_recognizer import OnnxRecognizer
    from crnn.reading.recognizer import Recognizer
    from crnn.reading.text_recognizer import FailedImage, TextRecognizer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'crnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
