"""The shipped models by name (``--model NAME``, ``load_recognizer(model=NAME)``): one table of their files in the
weights folder, per backend (torch-free; crnn.reading.backend picks the file a backend runs)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from crnn.checkpoints.header import DEFAULT_WEIGHTS
from crnn.errors import ModelChoiceError, UnknownModelError

# The folder the shipped files lie in: crnn/weights/ in an installed wheel, the repository's weights/ in a clone.
WEIGHTS_DIR: Path = DEFAULT_WEIGHTS.parent


@dataclass(frozen=True)
class ShippedModel:
    """A shipped model: its name, what it saw, its files in the weights folder (None: none for that backend)."""

    name: str
    summary: str
    torch: str | None  # the .safetensors checkpoint the torch backend loads (None: an ONNX-only variant)
    onnx: str | None  # the .onnx file the onnx backend runs (an fp32 export, or an int8 file)
    card: str  # the model card (in weights/)

    def path(self, backend: str) -> Path | None:
        """The file ``backend`` ("torch" or "onnx") runs, in the weights folder (None: none for that backend)."""
        name = self.torch if backend == "torch" else self.onnx
        return None if name is None else WEIGHTS_DIR / name

    def files(self) -> list[Path]:
        """Every file of the model (model card included), shipped or not."""
        return [WEIGHTS_DIR / f for f in (self.torch, self.onnx, self.card) if f is not None]


DEFAULT_MODEL = "default"
# Every name `--model` takes. int8 is a file of its own (not a precision flag), so its variants are names of their own,
# which only the onnx backend runs (as `--weights weights/crnn-int8.onnx` does).
SHIPPED_MODELS: dict[str, ShippedModel] = {m.name: m for m in (
    ShippedModel("default", "the synthetic-only model (renders only; the default)", "crnn.safetensors", "crnn.onnx",
                 "README.md"),
    ShippedModel("default-int8", "the synthetic-only model, int8 on ONNX Runtime", None, "crnn-int8.onnx", "README.md"),
    ShippedModel("real", "adapted to real photos: renders and public real training crops, docs/adaptation.md",
                 "crnn-real.safetensors", "crnn-real.onnx", "crnn-real.md"),
    ShippedModel("real-int8", "the adapted model, int8 on ONNX Runtime", None, "crnn-real-int8.onnx", "crnn-real.md"),
    ShippedModel("lines", "the synthetic-only model taught multi-word lines (renders only): what --detect reads photos "
                 "with", "crnn-lines.safetensors", "crnn-lines.onnx", "crnn-lines.md"),
    ShippedModel("lines-int8", "the lines model, int8 on ONNX Runtime", None, "crnn-lines-int8.onnx", "crnn-lines.md"),
)}
# What whole photos are read with when no model is chosen: a text detector's boxes are LINES, which the default model
# (trained on single words) reads with too few spaces; `lines` is the same model taught multi-word lines on renders
# (docs/photos.md). Word crops keep the default model.
PHOTO_MODEL = "lines"


def photo_model(model: str | None, weights: object) -> str | None:
    """The shipped model a photo path reads with: ``model`` when given; None (the weights given, or the default model)
    when ``weights`` or $CRNN_WEIGHTS chooses the model or PHOTO_MODEL is not in this install; else PHOTO_MODEL."""
    if model is not None or weights is not None or os.environ.get("CRNN_WEIGHTS"):
        return model
    return PHOTO_MODEL if is_shipped(PHOTO_MODEL) else None


def model_names() -> tuple[str, ...]:
    """The names `--model` takes, in the table's order."""
    return tuple(SHIPPED_MODELS)


def shipped_model(name: str) -> ShippedModel:
    """The table's entry of ``name``; UnknownModelError listing the names when there is none."""
    try:
        return SHIPPED_MODELS[name]
    except (KeyError, TypeError):
        names = model_names()
        raise UnknownModelError(f"unknown model {name!r}; the shipped models are: {', '.join(names)}", names) from None


def check_model_choice(model: str | None, weights: object) -> None:
    """ModelChoiceError when both a shipped model's name and a weights file are given (each chooses the model)."""
    if model is not None and weights is not None:
        raise ModelChoiceError(f"--model {model} and --weights {weights} both choose the model: give one of them")


def is_shipped(name: str, backend: str | None = None) -> bool:
    """Whether model ``name``'s file for ``backend`` (None: for either) is in the weights folder."""
    entry = shipped_model(name)
    paths = [entry.path(b) for b in ((backend,) if backend else ("torch", "onnx"))]
    return any(p is not None and p.is_file() for p in paths)


def model_help() -> str:
    """The help text of a command's ``--model`` option (the names and what each is)."""
    names = "; ".join(f"{m.name}: {m.summary}" for m in SHIPPED_MODELS.values())
    return f"a shipped model by name, instead of --weights ({names})"
