"""Synthetic scene-text word images for training the CRNN: renderer, on-the-fly dataset, writers and readers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported lazily so that `crnn synth` and the renderer start without loading torch.
_EXPORTS = {
    "SynthConfig": "crnn_synth_data.config",
    "Sample": "crnn_synth_data.render",
    "WordRenderer": "crnn_synth_data.render",
    "render_sample": "crnn_synth_data.render",
    "SyntheticWordDataset": "crnn_synth_data.dataset",
    "FolderDataset": "crnn_synth_data.storage",
    "FolderWriter": "crnn_synth_data.storage",
    "LmdbDataset": "crnn_synth_data.storage",
    "LmdbWriter": "crnn_synth_data.storage",
    "export_words": "crnn_synth_data.text",
}
__all__ = [
    "FolderDataset",
    "FolderWriter",
    "LmdbDataset",
    "LmdbWriter",
    "Sample",
    "SynthConfig",
    "SyntheticWordDataset",
    "WordRenderer",
    "export_words",
    "render_sample",
]

if TYPE_CHECKING:
    from crnn_synth_data.config import SynthConfig
    from crnn_synth_data.dataset import SyntheticWordDataset
    from crnn_synth_data.render import Sample, WordRenderer, render_sample
    from crnn_synth_data.storage import FolderDataset, FolderWriter, LmdbDataset, LmdbWriter
    from crnn_synth_data.text import export_words


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'synth_data' has no attribute {name!r}")
