"""The registry of model kinds: each kind (CRNN, segmented-character baseline, ...) registered once.

A kind (:class:`crnn.checkpoints.kind.ModelKind`) bundles what every command needs to handle it: its network
class, its config class, its recognizer class (a :class:`crnn.reading.text_recognizer.TextRecognizer`), the
``model_type`` written into its checkpoints, and how to describe it. ``crnn ocr``, ``crnn eval``, ``crnn info``,
``crnn compare`` and ``crnn serve`` look kinds up here by a checkpoint's ``model_type``
(``crnn.kinds.loading.load_recognizer``); none of them names a kind.

The built-in kinds are imported here (so this module imports torch): each kind's recognizer module declares its
``KIND``, and this module, above them all, registers them. A plug-in kind registers with :func:`register`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crnn.checkpoints.kind import ModelKind
from crnn.errors import CheckpointError
from crnn.reading import attention_recognizer, baseline_recognizer, recognizer

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ModelKind", "get_kind", "kind_of", "kinds", "register"]

_KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    """Add a model kind; registering another kind under a taken name is an error."""
    old = _KINDS.get(kind.name)
    if old is not None and old != kind:
        raise ValueError(f"model kind {kind.name!r} is already registered (by {old.recognizer_class.__module__})")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> dict[str, ModelKind]:
    """Every registered kind by name (the built-in ones included)."""
    return dict(_KINDS)


def get_kind(name: str) -> ModelKind:
    """The kind a checkpoint's ``model_type`` names; CheckpointError for an unknown one."""
    try:
        return _KINDS[name]
    except KeyError:
        raise CheckpointError(f"unknown model type {name!r} (known: {', '.join(sorted(_KINDS))})") from None


def kind_of(model: nn.Module) -> ModelKind:
    """The kind whose network class ``model`` is; CheckpointError when no kind has it."""
    for kind in _KINDS.values():
        if isinstance(model, kind.model_class):
            return kind
    raise CheckpointError(f"{type(model).__name__} is not the network of a registered model kind")


for _module in (recognizer, baseline_recognizer, attention_recognizer):  # the order kind_of tries them in
    register(_module.KIND)
