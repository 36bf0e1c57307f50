"""Typed exceptions of the crnn library; each boundary (CLI, API) catches CRNNError once."""

from __future__ import annotations


class CRNNError(Exception):
    """Base class of every error the library raises on purpose."""


class InvalidImageError(CRNNError, ValueError):
    """An input could not be read as an image (empty, corrupt, wrong type, too large or too small)."""


class UnsupportedCharacterError(CRNNError, ValueError):
    """A text holds characters that the charset cannot encode."""


class CheckpointError(CRNNError):
    """A weights file is missing, unreadable or not a crnn-ocr checkpoint."""


class ConfigError(CRNNError, ValueError):
    """A configuration holds an unknown key or a value of the wrong type."""


class LoaderError(CRNNError):
    """An image-decoding worker process died (e.g. a decoder crashed), so a run cannot go on."""


class LexiconFileError(CRNNError, ValueError):
    """A lexicon file (a word list, or per-image lexicons) is unreadable or has a malformed line."""


class ShardFolderError(CRNNError):
    """A `crnn ocr --ray` job cannot start: a manifest without a path column, or an output folder that is a file
    or holds the shards of other inputs or options."""


class ExportError(CRNNError):
    """A model cannot be exported (its kind has no exporter, or the asked format is not supported)."""


class BackendError(CRNNError):
    """The asked inference backend cannot run these weights (e.g. onnxruntime not installed, or an .onnx file given
    to the torch backend)."""


class BackgroundSourceError(CRNNError, ValueError):
    """A folder cannot be a source of background images (a labeled text data set, or no images at all)."""


class DecoderOptionError(CRNNError, ValueError):
    """A decoding option does not apply to the model's kind (e.g. a lexicon for the attention decoder)."""


class OutputPathError(CRNNError, ValueError):
    """A path a command would write cannot be written safely (a folder, a device or FIFO, a missing parent
    folder, no permission, or an existing file that needs --force)."""


class NoFontsError(CRNNError, RuntimeError):
    """The renderer found no usable font (the bundled library missing and no other font folder given)."""


class UnknownModelError(ConfigError):
    """A shipped model's name (``--model NAME``) not in the table of shipped models (crnn.checkpoints.shipped)."""

    def __init__(self, message: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.names = names  # the names there are


class ModelChoiceError(ConfigError):
    """Both a shipped model's name (``--model``) and a weights file (``--weights``) were given: they choose the same
    thing, so one must go."""


class ModelNotShippedError(CheckpointError):
    """A shipped model's name is known, but its file (for the asked backend) is not in this install's weights folder."""
