"""Untrained tiny models for tests and benchmarks: fast, with outputs that differ from image to image."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from crnn import CRNN, Charset, Recognizer, build_model, save_checkpoint


def _tiny_model(seed: int, hidden_size: int, backbone: str = "small", **config: object) -> CRNN:
    """An untrained CRNN (default: small backbone) whose batch-norm statistics are random, so its outputs are far
    from uniform."""
    torch.manual_seed(seed)
    model = build_model(backbone, hidden_size=hidden_size, **config)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def tiny_recognizer(seed: int = 0, hidden_size: int = 16, precision: str = "fp32", **config: object) -> Recognizer:
    """A Recognizer over an untrained tiny CRNN (``config``: ModelConfig fields) with the default charset."""
    return Recognizer.from_model(_tiny_model(seed, hidden_size, **config), Charset(), precision=precision)


def tiny_checkpoint(path: str | os.PathLike[str], seed: int = 0, hidden_size: int = 16, **config: object) -> Path:
    """Save an untrained tiny CRNN (fast to load and run) with the default charset to ``path``."""
    model = _tiny_model(seed, hidden_size, **config)
    return save_checkpoint(path, model, Charset(), metadata={"name": "tiny-untrained", "metrics": {}})


# Exported .onnx files whose metadata (the crnn-ocr header) reads fine but whose graph cannot serve it.
BROKEN_ONNX = ("corrupt-graph", "wrong-classes", "wrong-height")


def broken_onnx(folder: str | os.PathLike[str], damage: str) -> Path:
    """An .onnx file in ``folder`` with a tiny CRNN's header and a graph that is ``damage`` (one of BROKEN_ONNX):
    unparsable bytes, another number of output classes than the charset's, or another input height."""
    import onnx

    from crnn.checkpoints.onnx_export import export_crnn, save_onnx
    from crnn.kinds.export import export_onnx
    from crnn.checkpoints.onnx_header import read_onnx_metadata

    folder = Path(folder)
    good = export_onnx(tiny_checkpoint(folder / "tiny.safetensors"), folder / "tiny.onnx")
    out = folder / f"{damage}.onnx"
    if damage == "corrupt-graph":
        proto = onnx.load(str(good))
        proto.ClearField("graph")
        # A graph field (ModelProto field 7) of 64 bytes that are no protobuf: the metadata still scans.
        out.write_bytes(proto.SerializeToString() + b"\x3a\x40" + b"\xff" * 64)
        return out
    if damage == "wrong-classes":
        torch.manual_seed(0)
        other = build_model("small", hidden_size=16, num_classes=10).eval()
    elif damage == "wrong-height":
        other = _tiny_model(0, 16, backbone="resnet_dw", height=48, cell="none")
    else:
        raise ValueError(f"unknown damage {damage!r}")
    return save_onnx(export_crnn(other), out, read_onnx_metadata(good))
