"""Untrained tiny models for tests: fast, with outputs that differ from image to image."""

from __future__ import annotations

import torch

from crnn import Charset, Recognizer, build_model


def tiny_recognizer(seed: int = 0, hidden_size: int = 16, precision: str = "fp32") -> Recognizer:
    """An untrained small CRNN whose batch-norm statistics are random, so its outputs are far from uniform."""
    torch.manual_seed(seed)
    model = build_model("small", hidden_size=hidden_size)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return Recognizer.from_model(model, Charset(), precision=precision)
