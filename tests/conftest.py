"""Shared fixtures: small rendered word images and a tiny untrained model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.word_images import render_word

torch.set_num_threads(1)
# Render as a fresh machine would: only the bundled font library, never a font installed on this host by hand
# (`@system` and `@matplotlib` expand to nothing; subprocesses inherit it). Issue 30.
os.environ["CRNN_SYNTH_HIDE_HOST_FONTS"] = "1"

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO.parent / "shared" / "benchmarks"


@pytest.fixture
def word_images() -> dict[str, np.ndarray]:
    """A few words of very different widths."""
    return {t: render_word(t) for t in ["a", "go", "crnn", "Hello", "recognition", "supercalifragilistic"]}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CRNN_SKIP_SLOW"):
        skip = pytest.mark.skip(reason="CRNN_SKIP_SLOW set")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
