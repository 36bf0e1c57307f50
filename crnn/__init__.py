"""crnn-ocr: scene text recognition with a CRNN (convolutional + recurrent network, CTC loss)."""

from crnn.charset import DEFAULT_CHARS, Charset
from crnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crnn.errors import CheckpointError, ConfigError, CRNNError, InvalidImageError, UnsupportedCharacterError
from crnn.model import CRNN, ModelConfig, build_model
from crnn.prediction import Prediction
from crnn.preprocess import PreprocessConfig, load_image, prepare
from crnn.recognizer import Recognizer

__version__ = "0.1.0"

__all__ = [
    "CRNN",
    "DEFAULT_CHARS",
    "CRNNError",
    "Charset",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "InvalidImageError",
    "ModelConfig",
    "Prediction",
    "PreprocessConfig",
    "Recognizer",
    "UnsupportedCharacterError",
    "build_model",
    "load_checkpoint",
    "prepare",
    "save_checkpoint",
    "__version__",
]
