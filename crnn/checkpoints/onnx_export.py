"""ONNX export's file side: the CRNN kind's export hook (its graph) and the writing of a checked, self-describing
.onnx file (graph + crnn-ocr header).

The graph is images (B, 1, H, W) float32 -> log_probs (B, T, C) float32, batch and width dynamic; the header
(model type, model config, charset, preprocessing, metadata) goes into the model's metadata_props, as the
safetensors checkpoints carry it, so that crnn/reading/onnx_recognizer.py needs nothing but the file. Imports torch
and onnx; only `crnn export` (crnn/kinds/export.py: a checkpoint of any exportable kind -> one file) and the kinds'
declarations (which pass export hooks) import this module.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from crnn.errors import ExportError
from crnn.output_files import replaced_atomically

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "log_probs"


def export_crnn(model: torch.nn.Module, opset: int = OPSET) -> Any:
    """The CRNN kind's export hook: its inference copy (batch norm folded into the convolutions) as an
    onnx.ModelProto, images (B, 1, 32, W) -> log_probs (B, W / 4, C)."""
    import io

    import onnx

    from crnn.models.crnn import CRNN, SliceMaxPool2d, fuse_for_inference

    if not isinstance(model, CRNN):
        raise ExportError(f"export_crnn takes a CRNN, got {type(model).__name__}")
    # Batch norm folded as the torch backend runs it; the max pools stay nn.MaxPool2d (ONNX MaxPool, which
    # ONNX Runtime runs faster than the strided-slice maxima fuse_for_inference uses for torch on CPU).
    net = fuse_for_inference(model)
    net.backbone = torch.nn.Sequential(*(
        torch.nn.MaxPool2d(m.kernel, m.kernel) if isinstance(m, SliceMaxPool2d) else m for m in net.backbone
    ))
    example = torch.zeros(2, 1, model.config.height, 64)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False): it writes the recurrent layers as ONNX LSTM/GRU/RNN ops with
        # dynamic batch and width, and needs no onnxscript; torch warns that it is deprecated.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (example,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
            dynamic_axes={INPUT_NAME: {0: "batch", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "frames"}},
            do_constant_folding=True, dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def save_onnx(proto: Any, output: str | os.PathLike[str], header: dict[str, str]) -> Path:
    """Write ``proto`` with ``header`` as its metadata_props (replacing any), checked, atomically (a regular file
    only: crnn.output_files.replaced_atomically)."""
    import onnx

    del proto.metadata_props[:]
    for key, value in header.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "crnn-ocr"
    onnx.checker.check_model(proto, full_check=True)
    with replaced_atomically(output) as tmp:
        onnx.save_model(proto, str(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is for the temporary file, not for the model
    return Path(output)
