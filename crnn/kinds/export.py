"""ONNX export of a checkpoint of any exportable kind: its kind's export hook, the checkpoint's header as the file's
metadata (the graph and the file writing: crnn/checkpoints/onnx_export.py). Imports torch and onnx."""

from __future__ import annotations

import json
import os
from pathlib import Path

from crnn.checkpoints.checkpoint import Checkpoint
from crnn.checkpoints.header import FORMAT, FORMAT_VERSION
from crnn.checkpoints.onnx_export import OPSET, save_onnx
from crnn.errors import ExportError
from crnn.kinds.loading import load_checkpoint
from crnn.kinds.registry import get_kind
from crnn.output_files import check_output_file


def export_onnx(
    weights: str | os.PathLike[str] | Checkpoint | None, output: str | os.PathLike[str], opset: int = OPSET
) -> Path:
    """Export ``weights`` (a checkpoint path, a loaded Checkpoint, or None: the shipped model) to ``output``.

    Raises OutputPathError (before any work) when ``output`` cannot be written (see crnn.output_files), and
    ExportError when the checkpoint's kind cannot be exported. The file is checked with onnx's checker and written
    atomically: a failed export leaves what was at ``output`` untouched.
    """
    check_output_file(output)
    ckpt = weights if isinstance(weights, Checkpoint) else load_checkpoint(weights)
    kind = get_kind(ckpt.model_type)
    if kind.export_onnx is None:
        raise ExportError(
            f"{kind.title} cannot be exported to ONNX: it has no images -> per-frame log-probabilities graph "
            f"(model type {kind.name!r} registers no export_onnx hook)"
        )
    proto = kind.export_onnx(ckpt.model.eval(), opset)
    if isinstance(weights, (str, os.PathLike)):
        source = Path(weights).name
    else:
        source = "the shipped weights" if weights is None else "an in-memory checkpoint"
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": kind.name,
        "model_config": json.dumps(ckpt.model.config.to_dict()),  # type: ignore[union-attr]
        "charset": json.dumps(ckpt.charset.to_dict()),
        "preprocess": json.dumps(ckpt.preprocess.to_dict()),
        "metadata": json.dumps(ckpt.metadata, default=str),
        "describe": json.dumps(kind.describe(ckpt.model, 128), default=str),
        "exported_from": source,
        "precision": "fp32",
    }
    return save_onnx(proto, output, header)
