"""ModelKind: what a checkpoint's ``model_type`` stands for, and what every command needs of that kind of model.

Each kind's recognizer module declares its kind (e.g. crnn/reading/recognizer.py, ``KIND``); the registry that
looks kinds up by name, the built-in ones included, is crnn/kinds/registry.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from crnn.config import Config


@dataclass(frozen=True)
class ModelKind:
    """One model kind: what a checkpoint's ``model_type`` stands for, and what every command needs of it."""

    name: str  # the checkpoint header's model_type
    title: str  # in messages: "a CRNN", "the segmented-character baseline"
    model_class: type[nn.Module]
    config_class: type[Config]
    # A TextRecognizer class, built as cls(weights, device, threads, precision)
    # (crnn.reading.text_recognizer.RecognizerFactory; the recognizers build on this module).
    recognizer_class: Callable[..., Any]
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
