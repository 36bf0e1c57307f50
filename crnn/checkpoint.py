"""One-file checkpoints (safetensors): weights, model config, charset, preprocessing and metadata."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from crnn.baseline.model import BaselineConfig, SegCharModel
from crnn.baseline.segment import SegmentConfig
from crnn.charset import Charset
from crnn.checkpoint_header import FORMAT, FORMAT_VERSION, default_weights_path, read_header  # noqa: F401 (re-exported)
from crnn.errors import CheckpointError
from crnn.model import CRNN, ModelConfig
from crnn.preprocess import PreprocessConfig

@dataclass
class Checkpoint:
    """Everything needed to run a trained model, as loaded from one file."""

    model: CRNN | SegCharModel  # SegCharModel when model_type is "baseline"
    charset: Charset
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    metadata: dict[str, Any] = field(default_factory=dict)
    model_type: str = "crnn"


def save_checkpoint(
    path: str | os.PathLike,
    model: CRNN,
    charset: Charset,
    preprocess: PreprocessConfig | None = None,
    metadata: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write model weights (fp16 when ``half``) and everything needed to rebuild it, atomically."""
    if model.config.num_classes != charset.num_classes:
        raise CheckpointError(
            f"model has {model.config.num_classes} classes but the charset needs {charset.num_classes}"
        )
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": "crnn",
        "model_config": json.dumps(model.config.to_dict()),
        "charset": json.dumps(charset.to_dict()),
        "preprocess": json.dumps((preprocess or PreprocessConfig()).to_dict()),
        "metadata": json.dumps(metadata or {}, default=str),
    }
    return _write(path, model, header, half)


def _write(path: str | os.PathLike, model: torch.nn.Module, header: dict[str, str], half: bool) -> Path:
    # Shared by every model type: the header says which model the weights rebuild.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        tensors[k] = v.contiguous()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_baseline_checkpoint(
    path: str | os.PathLike,
    model: SegCharModel,
    charset: Charset,
    preprocess: PreprocessConfig | None = None,
    metadata: dict[str, Any] | None = None,
    segmenter: SegmentConfig | None = None,
    half: bool = False,
) -> Path:
    """Write a segmented-character baseline (model_type "baseline"); its segmenter config goes in metadata."""
    if model.config.num_classes != charset.num_classes:
        raise CheckpointError(
            f"model has {model.config.num_classes} classes but the charset needs {charset.num_classes}"
        )
    meta = {**(metadata or {}), "segmenter": (segmenter or SegmentConfig()).to_dict()}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": "baseline",
        "model_config": json.dumps(model.config.to_dict()),
        "charset": json.dumps(charset.to_dict()),
        "preprocess": json.dumps((preprocess or PreprocessConfig()).to_dict()),
        "metadata": json.dumps(meta, default=str),
    }
    return _write(path, model, header, half)


# model_type -> (model class, its config class): how a checkpoint of each kind is rebuilt.
_MODEL_TYPES: dict[str, tuple[type[torch.nn.Module], Any]] = {
    "crnn": (CRNN, ModelConfig),
    "baseline": (SegCharModel, BaselineConfig),
}
_MODEL_NAMES = {"crnn": "a CRNN", "baseline": "the segmented-character baseline"}


def _load(path: Path, device: str | torch.device, model_type: str) -> Checkpoint:
    header = read_header(path)
    if header["model_type"] != model_type:
        raise CheckpointError(f"{path}: model type {header['model_type']!r} is not {_MODEL_NAMES[model_type]}")
    model_cls, config_cls = _MODEL_TYPES[model_type]
    model = model_cls(config_cls.from_dict(header["model_config"]))
    _load_weights(path, model)
    model.to(device).eval()
    return Checkpoint(
        model=model,
        charset=Charset.from_dict(header["charset"]),
        preprocess=PreprocessConfig.from_dict(header["preprocess"]),
        metadata=header["metadata"],
        model_type=model_type,
    )


def load_checkpoint(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model (in eval mode, fp32) and its charset from one checkpoint file."""
    return _load(Path(path) if path is not None else default_weights_path(), device, "crnn")


def load_baseline_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild a segmented-character baseline (eval mode, fp32); metadata["segmenter"] holds its SegmentConfig."""
    return _load(Path(path), device, "baseline")


def _load_weights(path: Path, model: torch.nn.Module) -> None:
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read weights ({e})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the stored model config ({e})") from None


def load_any(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint of any model type (CRNN or baseline), chosen by its header's model_type."""
    path = Path(path) if path is not None else default_weights_path()
    model_type = read_header(path)["model_type"]
    if model_type not in _MODEL_TYPES:
        raise CheckpointError(f"{path}: unknown model type {model_type!r}")
    return _load(path, device, model_type)
