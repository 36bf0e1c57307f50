"""crnn-ocr: scene text recognition with a CRNN (convolutional + recurrent network, CTC loss)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it. Resolved on first use (PEP 562), so that importing a
# torch-free part of the package (crnn.cli, crnn.ocr, crnn.preprocess) does not import torch: `crnn ocr`
# starts its image-decoding processes before torch is loaded.
_EXPORTS: dict[str, str] = {
    "DEFAULT_CHARS": "crnn.charset",
    "Charset": "crnn.charset",
    "Checkpoint": "crnn.checkpoint",
    "load_checkpoint": "crnn.checkpoint",
    "save_checkpoint": "crnn.checkpoint",
    "CheckpointError": "crnn.errors",
    "ConfigError": "crnn.errors",
    "CRNNError": "crnn.errors",
    "InvalidImageError": "crnn.errors",
    "UnsupportedCharacterError": "crnn.errors",
    "DetectedText": "crnn.detection.detector",
    "TextDetector": "crnn.detection.detector",
    "load_detector": "crnn.detection.detector",
    "PhotoReader": "crnn.detection.photo_reader",
    "PhotoReading": "crnn.detection.photo_reader",
    "read_photo": "crnn.detection.photo_reader",
    "CRNN": "crnn.model",
    "ModelConfig": "crnn.model",
    "build_model": "crnn.model",
    "FailedImage": "crnn.text_recognizer",
    "OnnxRecognizer": "crnn.onnx_recognizer",
    "Prediction": "crnn.prediction",
    "PreprocessConfig": "crnn.preprocess",
    "load_image": "crnn.preprocess",
    "prepare": "crnn.preprocess",
    "Recognizer": "crnn.recognizer",
    "ModelKind": "crnn.registry",
    "load_recognizer": "crnn.text_recognizer",
    "register": "crnn.registry",
    "TextRecognizer": "crnn.text_recognizer",
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
    "ModelConfig",
    "OnnxRecognizer",
    "PhotoReader",
    "PhotoReading",
    "Prediction",
    "PreprocessConfig",
    "ModelKind",
    "Recognizer",
    "TextDetector",
    "TextRecognizer",
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
    from crnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from crnn.detection.detector import DetectedText, TextDetector, load_detector
    from crnn.detection.photo_reader import PhotoReader, PhotoReading, read_photo
    from crnn.errors import CheckpointError, ConfigError, CRNNError, InvalidImageError, UnsupportedCharacterError
    from crnn.model import CRNN, ModelConfig, build_model
    from crnn.onnx_recognizer import OnnxRecognizer
    from crnn.prediction import Prediction
    from crnn.preprocess import PreprocessConfig, load_image, prepare
    from crnn.recognizer import Recognizer
    from crnn.registry import ModelKind, register
    from crnn.text_recognizer import FailedImage, TextRecognizer, load_recognizer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'crnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
