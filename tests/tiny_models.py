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
