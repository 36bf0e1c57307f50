"""OrientationNet, the tiny CNN of crnn.reading.orientation, and its one-file safetensors format (weights + header)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from crnn.checkpoints.checkpoint import write_safetensors
from crnn.errors import CheckpointError

ORIENTATION_FORMAT = "crnn-ocr-orientation"  # a sibling of crnn.checkpoints.header.FORMAT, for this network only
ORIENTATION_FORMAT_VERSION = "1"


class OrientationNet(nn.Module):
    """(B, 1, 32, 128) standardised crops (long side horizontal) -> (B, 5) orientation logits.

    A stride-2 stem, then conv + BN + ReLU + max-pool stages, flattened into one linear layer: with the default
    channels 29,685 parameters and ~3.7 M multiply-adds a crop.
    """

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32, 64), num_classes: int = 5,
                 input_size: tuple[int, int] = (32, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels[0], 4, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True)]
        c_in = channels[0]
        for c in channels[1:]:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c
        self.channels, self.num_classes, self.input_size = tuple(channels), num_classes, tuple(input_size)
        self.features = nn.Sequential(*layers)
        cells = (input_size[0] // 2 ** len(channels)) * (input_size[1] // 2 ** len(channels))
        # Flattened, not averaged: where the ink lies in the square (which end of a word, top or bottom)
        # is part of the answer.
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(c_in * cells, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of inputs (B, 1, *input_size)."""
        return self.classifier(self.features(x))


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
