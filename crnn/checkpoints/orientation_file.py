"""The orientation classifier's one-file safetensors format: OrientationNet's weights and a header."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from crnn.checkpoints.checkpoint import write_safetensors
from crnn.errors import CheckpointError
from crnn.models.orientation import OrientationNet

ORIENTATION_FORMAT = "crnn-ocr-orientation"  # a sibling of crnn.checkpoints.header.FORMAT, for this network only
ORIENTATION_FORMAT_VERSION = "1"


def save_orientation_model(path: str | os.PathLike, model: OrientationNet, classes: list[str],
                           metadata: dict[str, Any] | None = None) -> Path:
    """Write the network's weights (fp16) with a header naming the format, classes and channels, atomically."""
    if len(classes) != model.num_classes:
        raise ValueError(f"{len(classes)} class names for a network of {model.num_classes} classes")
    header = {
        "format": ORIENTATION_FORMAT,
        "format_version": ORIENTATION_FORMAT_VERSION,
        "classes": json.dumps(list(classes)),
        "channels": json.dumps(list(model.channels)),
        "input_size": json.dumps(list(model.input_size)),
        "metadata": json.dumps(metadata or {}, default=str),
    }
    tensors = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in model.state_dict().items()}
    return write_safetensors(tensors, path, header)


def load_orientation_model(path: str | os.PathLike) -> tuple[OrientationNet, list[str], dict[str, Any]]:
    """The network (eval mode, fp32), its class names and metadata; raises CheckpointError for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such orientation weights file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read orientation weights ({e})") from None
    if header.get("format") != ORIENTATION_FORMAT:
        raise CheckpointError(f"{path}: not an orientation classifier (format {header.get('format')!r})")
    try:
        classes = json.loads(header["classes"])
        model = OrientationNet(tuple(json.loads(header["channels"])), len(classes), tuple(json.loads(header["input_size"])))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad orientation header ({e})") from None
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the stored channels ({e})") from None
    return model.eval(), classes, json.loads(header.get("metadata", "{}"))
