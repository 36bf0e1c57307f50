"""A checkpoint's header (model type, configs, charset, metadata) read without torch or the weights."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from crnn.errors import CheckpointError
from crnn.checkpoints.onnx_header import is_onnx_path, read_onnx_metadata

FORMAT = "crnn-ocr"
FORMAT_VERSION = "1"
_PACKAGE = Path(__file__).resolve().parents[1]  # crnn/, the package (this module is in a sub-package)
# An installed wheel carries the shipped weights inside the package (crnn/weights/, see pyproject.toml); a
# clone (or an editable install of one) has them in the repository's weights/ folder.
DEFAULT_WEIGHTS = next(
    (p for p in (_PACKAGE / "weights" / "crnn.safetensors", _PACKAGE.parent / "weights" / "crnn.safetensors")
     if p.exists()),
    _PACKAGE.parent / "weights" / "crnn.safetensors",
)


def shipped_onnx_path() -> Path:
    """The shipped model exported to ONNX (weights/crnn.onnx beside the shipped safetensors)."""
    return DEFAULT_WEIGHTS.with_suffix(".onnx")


def default_weights_path() -> Path:
    """The shipped model: $CRNN_WEIGHTS if set, else the weights shipped in the wheel or in this clone."""
    env = os.environ.get("CRNN_WEIGHTS")
    return Path(env) if env else DEFAULT_WEIGHTS


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded header of a checkpoint (model_config, charset, preprocess, metadata) without loading weights.

    An .onnx file (written by `crnn export`) carries the same header in its metadata (crnn/checkpoints/onnx_header.py).
    """
    path = Path(path)
    if is_onnx_path(path):
        meta = read_onnx_metadata(path)
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path} is an ONNX model but not one written by `crnn export` (no '{FORMAT}' metadata)")
        return _decode(path, meta)
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
    return _decode(path, meta)


def _decode(path: Path, meta: dict[str, str]) -> dict[str, Any]:
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
