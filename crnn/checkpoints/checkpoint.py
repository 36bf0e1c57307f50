"""One-file checkpoints (safetensors): weights, model config, charset, preprocessing and metadata."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from crnn.charset import Charset
from crnn.config import Config
from crnn.checkpoints.header import FORMAT, FORMAT_VERSION, default_weights_path, read_header  # noqa: F401 (re-exported)
from crnn.errors import CheckpointError
from crnn.output_files import replaced_atomically
from crnn.io.preprocess import PreprocessConfig
from crnn.checkpoints.kind import ModelKind


@dataclass
class Checkpoint:
    """Everything needed to run a trained model, as loaded from one file."""

    model: nn.Module  # the network of the kind that model_type names (crnn.checkpoints.kind)
    charset: Charset
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    metadata: dict[str, Any] = field(default_factory=dict)
    model_type: str = "crnn"


def write_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    kind: ModelKind,
    charset: Charset,
    preprocess: PreprocessConfig | None = None,
    metadata: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a model of ``kind`` (weights fp16 when ``half``) and all it needs to be rebuilt, atomically.

    The header's model_type is ``kind.name``; kind-specific settings travel in ``metadata`` (the baseline's
    segmenter config under "segmenter"). crnn.kinds.loading.save_checkpoint finds the kind of any model.
    """
    config: Config = model.config  # type: ignore[assignment]  # every kind's network keeps its config
    if config.num_classes != charset.num_classes:  # type: ignore[attr-defined]
        raise CheckpointError(
            f"model has {config.num_classes} classes but the charset needs {charset.num_classes}"  # type: ignore[attr-defined]
        )
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": kind.name,
        "model_config": json.dumps(config.to_dict()),
        "charset": json.dumps(charset.to_dict()),
        "preprocess": json.dumps((preprocess or input_preprocess(config)).to_dict()),
        "metadata": json.dumps(metadata or {}, default=str),
    }
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        tensors[k] = v.contiguous()
    return write_safetensors(tensors, path, header)


def input_preprocess(config: Config) -> PreprocessConfig:
    """The default preprocessing of a model: scaled to its config's input height (kinds without one: 32 px)."""
    return PreprocessConfig(height=getattr(config, "height", 32))


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, header: dict[str, str]) -> Path:
    """Write ``tensors`` with ``header`` as safetensors metadata, atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path, option="weights file") as tmp:  # a regular file only, with a plain file's mode
        save_file(tensors, tmp, metadata=header)
    return path


def read_checkpoint(
    path: str | os.PathLike | None, model_kind: ModelKind, device: str | torch.device = "cpu",
    header: dict[str, Any] | None = None,
) -> Checkpoint:
    """Rebuild the model (eval mode, fp32) of a checkpoint of ``model_kind``, with its charset and configs.

    ``path`` None: the shipped weights; ``header``: its header when already read. A checkpoint of another kind
    is refused (crnn.kinds.loading.load_checkpoint loads whatever kind the header names).
    """
    path = Path(path) if path is not None else default_weights_path()
    header = read_header(path) if header is None else header
    if header["model_type"] != model_kind.name:
        raise CheckpointError(f"{path}: model type {header['model_type']!r} is not {model_kind.title}")
    model = model_kind.model_class(model_kind.config_class.from_dict(header["model_config"]))
    _load_weights(path, model)
    model.to(device).eval()
    return Checkpoint(
        model=model,
        charset=Charset.from_dict(header["charset"]),
        preprocess=PreprocessConfig.from_dict(header["preprocess"]),
        metadata=header["metadata"],
        model_type=model_kind.name,
    )


def _load_weights(path: Path, model: nn.Module) -> None:
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read weights ({e})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the stored model config ({e})") from None
