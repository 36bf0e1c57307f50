"""Any kind by name: checkpoints loaded and saved by their header's ``model_type``, recognizers on either backend.

Imports no torch at module level: ``load_recognizer(backend="onnx")`` must run where torch is not installed. The
registry (crnn/kinds/registry.py), which imports every built-in kind and so torch, is imported when a torch
model is loaded or saved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crnn.checkpoints.header import default_weights_path, read_header
from crnn.checkpoints.shipped import check_model_choice
from crnn.errors import CheckpointError
from crnn.reading.backend import resolve_backend, shipped_file
from crnn.reading.onnx_recognizer import OnnxRecognizer

if TYPE_CHECKING:
    import torch
    from torch import nn

    from crnn.charset import Charset
    from crnn.checkpoints.checkpoint import Checkpoint
    from crnn.io.preprocess import PreprocessConfig
    from crnn.reading.text_recognizer import RecognizerFactory, TextRecognizer

# The recognizer class of each backend other than torch (whose class is the checkpoint kind's, crnn.kinds.registry).
BACKEND_RECOGNIZERS: dict[str, RecognizerFactory] = {"onnx": OnnxRecognizer}


def load_checkpoint(
    path: str | os.PathLike | None = None, device: str | torch.device = "cpu", kind: str | None = None,
    model: str | None = None,
) -> Checkpoint:
    """Rebuild the model (eval mode, fp32) of whatever kind the header names, with its charset and configs.

    ``path`` None: the shipped weights. ``kind`` (e.g. "crnn"): refuse a checkpoint of another kind. ``model``: a
    shipped model's name instead of ``path`` (its .safetensors file; crnn.checkpoints.shipped).
    """
    from crnn.checkpoints.checkpoint import read_checkpoint
    from crnn.kinds.registry import get_kind

    if model is not None:
        check_model_choice(model, path)
        path = shipped_file(model, "torch")
    path = Path(path) if path is not None else default_weights_path()
    header = read_header(path)
    if kind is not None and header["model_type"] != kind:
        raise CheckpointError(f"{path}: model type {header['model_type']!r} is not {get_kind(kind).title}")
    return read_checkpoint(path, get_kind(header["model_type"]), device, header)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    charset: Charset,
    preprocess: PreprocessConfig | None = None,
    metadata: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a model of any registered kind (weights fp16 when ``half``) and all it needs to be rebuilt, atomically.

    The header's model_type is the kind of ``model`` (crnn.kinds.registry); kind-specific settings travel in
    ``metadata`` (the baseline's segmenter config under "segmenter").
    """
    from crnn.checkpoints.checkpoint import write_checkpoint
    from crnn.kinds.registry import kind_of

    return write_checkpoint(path, model, kind_of(model), charset, preprocess, metadata, half)


def load_recognizer(
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    precision: str = "auto",
    backend: str = "torch",
    model: str | None = None,
) -> TextRecognizer:
    """The recognizer of whatever kind the checkpoint's header names (None: the shipped weights).

    ``backend``: ``torch``; ``onnx`` (ONNX Runtime on an .onnx file from `crnn export`, torch never imported);
    ``auto`` (onnx when onnxruntime is installed and the weights are, or the shipped model has, an .onnx file;
    see crnn.reading.backend). ``model``: a shipped model by name instead of ``weights`` (``"default"``, the
    synthetic-only model; ``"real"``, the one adapted to real photos; crnn.checkpoints.shipped), its file for the
    backend; UnknownModelError, ModelChoiceError (with ``weights``) or ModelNotShippedError when it cannot be.
    """
    backend, weights = resolve_backend(backend, weights, precision, str(device), model)
    if backend != "torch":
        return BACKEND_RECOGNIZERS[backend](weights, device, threads, precision)
    from crnn.kinds.registry import get_kind  # torch, only now

    checkpoint = load_checkpoint(weights)
    return get_kind(checkpoint.model_type).recognizer_class(checkpoint, device, threads, precision)
