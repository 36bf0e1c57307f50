"""Which inference backend runs a model: torch, or ONNX Runtime on an exported .onnx file (torch-free module)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from crnn.checkpoints.header import default_weights_path, shipped_onnx_path
from crnn.checkpoints.shipped import check_model_choice, shipped_model
from crnn.errors import BackendError, ModelNotShippedError
from crnn.checkpoints.onnx_header import is_onnx_path
from crnn.reading.precision import cpu_has_native_bf16

BACKENDS: tuple[str, ...] = ("torch", "onnx", "auto")
# Precisions the ONNX backend runs: the graph is fp32 (an int8 model is another file, not a precision flag).
ONNX_PRECISIONS: tuple[str, ...] = ("auto", "fp32")


def onnxruntime_available() -> bool:
    """Whether onnxruntime is installed (found without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_backend(
    backend: str, weights: str | os.PathLike[str] | None, precision: str = "auto", device: str = "cpu",
    model: str | None = None,
) -> tuple[str, str | os.PathLike[str] | None]:
    """The backend that runs ``weights`` (None: the shipped model) and the weights it runs, for ``backend``:

    ``torch``: a .safetensors checkpoint; ``onnx``: an .onnx file (None: the shipped weights/crnn.onnx);
    ``auto``: onnx when onnxruntime is installed and an .onnx file is at hand (``weights`` is one, or none is
    given and the shipped model has one), on the CPU, in fp32 (``precision`` fp32, or auto on a CPU without native
    bf16, where torch's auto would run fp32 too); else torch. Raises BackendError when the asked backend cannot
    run them.

    ``model``: a shipped model's name (crnn.checkpoints.shipped; not with ``weights``): its file for the backend,
    ``auto`` choosing between its .safetensors and .onnx files as for the default model (the weights returned are
    then that file's path). Raises UnknownModelError, ModelChoiceError, or ModelNotShippedError when its file is not
    in this install.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if model is not None:
        check_model_choice(model, weights)
        weights = shipped_file(model, backend, precision, device)
    default = weights is None and not os.environ.get("CRNN_WEIGHTS")
    named = weights if weights is not None else (None if default else default_weights_path())
    onnx_file = named is not None and is_onnx_path(named)
    if backend == "auto":
        at_hand = onnx_file or (default and shipped_onnx_path().exists())
        fits = onnx_file or _onnx_fits(precision, device)
        backend = "onnx" if at_hand and fits and (onnx_file or onnxruntime_available()) else "torch"
    if backend == "torch":
        if onnx_file:
            raise BackendError(f"{named} is an ONNX model: run it with --backend onnx (or auto)")
        return "torch", weights
    if named is not None and not onnx_file:
        raise BackendError(
            f"the onnx backend runs .onnx files; export {named} first: crnn export --weights {named} --output "
            f"{Path(named).with_suffix('.onnx')}"
        )
    if not onnxruntime_available():
        raise BackendError("the onnx backend needs onnxruntime; install the extra: pip install 'crnn-ocr[onnx]'")
    if precision not in ONNX_PRECISIONS:
        raise BackendError(f"the onnx backend runs fp32 graphs (or an int8 file); precision {precision!r} is torch only")
    return "onnx", named if named is not None else shipped_onnx_path()


def _onnx_fits(precision: str, device: str) -> bool:
    """Whether ``auto`` may run an fp32 ONNX graph where torch would run ``precision`` on ``device``."""
    # Where torch would run bf16 (auto on a CPU with native bf16, ~2x faster there) or on a GPU, torch stays.
    fp32 = precision == "fp32" or (precision == "auto" and not cpu_has_native_bf16())
    return fp32 and str(device) == "cpu"


def shipped_file(model: str, backend: str = "auto", precision: str = "auto", device: str = "cpu") -> Path:
    """The file of shipped model ``model`` that ``backend`` runs: for ``auto``, its .onnx file where the default
    model's would be chosen (shipped, onnxruntime installed, fp32 on the CPU) or where it has no .safetensors (an
    int8 variant), else its .safetensors. Raises UnknownModelError, BackendError (an ONNX-only model on torch) or
    ModelNotShippedError (its file is not in the weights folder)."""
    entry = shipped_model(model)
    torch_file, onnx_file = entry.path("torch"), entry.path("onnx")
    if backend == "auto":
        onnx_ready = onnx_file is not None and onnx_file.is_file() and onnxruntime_available()
        backend = "onnx" if torch_file is None or (onnx_ready and _onnx_fits(precision, device)) else "torch"
    path = torch_file if backend == "torch" else onnx_file
    if path is None:
        raise BackendError(f"model {model!r} is an ONNX model ({entry.onnx}): run it with --backend onnx (or auto)")
    if not path.is_file():
        others = [p.name for p in (torch_file, onnx_file) if p is not None and p != path and p.is_file()]
        hint = f" (it has {', '.join(others)}: choose its backend)" if others else ""
        raise ModelNotShippedError(
            f"model {model!r} is not shipped in this install: no {path.name} in {path.parent}{hint}")
    return path
