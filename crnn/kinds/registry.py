"""The registry of model kinds: each kind (CRNN, segmented-character baseline, ...) registers itself once.

A kind bundles what every command needs to handle it: its network class, its config class, its recognizer
class (a :class:`crnn.reading.text_recognizer.TextRecognizer`), the ``model_type`` written into its checkpoints, and
how to describe it. ``crnn ocr``, ``crnn eval``, ``crnn info``, ``crnn compare`` and ``crnn serve`` look kinds
up here by a checkpoint's ``model_type`` (``crnn.reading.text_recognizer.load_recognizer``); none of them names a kind.

The module itself imports no torch: the kinds' modules are imported on the first lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crnn.errors import CheckpointError

if TYPE_CHECKING:
    from torch import nn

    from crnn.config import Config
    from crnn.reading.text_recognizer import RecognizerFactory  # the kinds' recognizers; imports this module

# The modules that register the built-in kinds. Imported on the first lookup, so that a checkpoint of any
# built-in kind loads without its module having been imported first; a plug-in kind registers by import.
BUILTIN_KIND_MODULES: tuple[str, ...] = ("crnn.reading.recognizer", "crnn.reading.baseline_recognizer", "crnn.reading.attention_recognizer")


@dataclass(frozen=True)
class ModelKind:
    """One model kind: what a checkpoint's ``model_type`` stands for, and what every command needs of it."""

    name: str  # the checkpoint header's model_type
    title: str  # in messages: "a CRNN", "the segmented-character baseline"
    model_class: type[nn.Module]
    config_class: type[Config]
    recognizer_class: RecognizerFactory  # a TextRecognizer class
    # Architecture, parameters (and what else the kind can tell, e.g. multiply-adds) of a model for a
    # 32 x width input, as `crnn info --json` prints it.
    describe: Callable[[Any, int], dict[str, Any]]
    # The kind-specific lines of `crnn info`'s text output, from describe()'s dict.
    describe_lines: Callable[[dict[str, Any]], list[str]]
    # One line naming the architecture from its config (reports).
    summary: Callable[[Any], str]
    # `crnn export --format onnx`: (network, opset) -> onnx.ModelProto of the graph images (B, 1, H, W) float32 ->
    # log_probs (B, T, C), batch and width dynamic, which crnn.reading.onnx_recognizer runs for any kind (CTC decoding).
    # None: the kind has no such graph and cannot be exported (crnn export says so).
    export_onnx: Callable[[Any, int], Any] | None = None


_KINDS: dict[str, ModelKind] = {}
_builtins_loaded = False


def register(kind: ModelKind) -> ModelKind:
    """Add a model kind; registering another kind under a taken name is an error."""
    old = _KINDS.get(kind.name)
    if old is not None and old != kind:
        raise ValueError(f"model kind {kind.name!r} is already registered (by {old.recognizer_class.__module__})")
    _KINDS[kind.name] = kind
    return kind


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_KIND_MODULES:
            importlib.import_module(module)


def kinds() -> dict[str, ModelKind]:
    """Every registered kind by name (the built-in ones included)."""
    _load_builtins()
    return dict(_KINDS)


def get_kind(name: str) -> ModelKind:
    """The kind a checkpoint's ``model_type`` names; CheckpointError for an unknown one."""
    _load_builtins()
    try:
        return _KINDS[name]
    except KeyError:
        raise CheckpointError(f"unknown model type {name!r} (known: {', '.join(sorted(_KINDS))})") from None


def kind_of(model: nn.Module) -> ModelKind:
    """The kind whose network class ``model`` is; CheckpointError when no kind has it."""
    _load_builtins()
    for kind in _KINDS.values():
        if isinstance(model, kind.model_class):
            return kind
    raise CheckpointError(f"{type(model).__name__} is not the network of a registered model kind")

