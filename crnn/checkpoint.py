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

from crnn.charset import Charset
from crnn.errors import CheckpointError
from crnn.model import CRNN, ModelConfig
from crnn.preprocess import PreprocessConfig

FORMAT = "crnn-ocr"
FORMAT_VERSION = "1"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "crnn.safetensors"


def default_weights_path() -> Path:
    """The shipped model: $CRNN_WEIGHTS if set, else weights/crnn.safetensors of this checkout."""
    env = os.environ.get("CRNN_WEIGHTS")
    return Path(env) if env else DEFAULT_WEIGHTS


@dataclass
class Checkpoint:
    """Everything needed to run a trained model, as loaded from one file."""

    model: CRNN
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        tensors[k] = v.contiguous()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": "crnn",
        "model_config": json.dumps(model.config.to_dict()),
        "charset": json.dumps(charset.to_dict()),
        "preprocess": json.dumps((preprocess or PreprocessConfig()).to_dict()),
        "metadata": json.dumps(metadata or {}, default=str),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded header of a checkpoint (model_config, charset, preprocess, metadata) without loading weights."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < 100_000_000:
                raise ValueError("bad header length")
            raw = json.loads(f.read(n))
        meta = raw.get("__metadata__") or {}
    except (OSError, ValueError, UnicodeDecodeError):
        raise CheckpointError(
            f"{path} is not a crnn-ocr checkpoint (expected a .safetensors file written by `crnn train`)"
        ) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a crnn-ocr checkpoint (no '{FORMAT}' header)"
        )
    try:
        return {
            "model_type": meta.get("model_type", "crnn"),
            "model_config": json.loads(meta["model_config"]),
            "charset": json.loads(meta["charset"]),
            "preprocess": json.loads(meta.get("preprocess", "{}")),
            "metadata": json.loads(meta.get("metadata", "{}")),
        }
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged crnn-ocr header ({e})") from None


def load_checkpoint(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model (in eval mode, fp32) and its charset from one checkpoint file."""
    path = Path(path) if path is not None else default_weights_path()
    header = read_header(path)
    if header["model_type"] != "crnn":
        raise CheckpointError(f"{path}: model type {header['model_type']!r} is not a CRNN")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read weights ({e})") from None
    model = CRNN(ModelConfig.from_dict(header["model_config"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the stored model config ({e})") from None
    model.to(device).eval()
    return Checkpoint(
        model=model,
        charset=Charset.from_dict(header["charset"]),
        preprocess=PreprocessConfig.from_dict(header["preprocess"]),
        metadata=header["metadata"],
    )
