"""`crnn export`: write a checkpoint in another format (ONNX), for inference without torch (docs/onnx.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from crnn.errors import CRNNError

FORMATS = ("onnx",)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `crnn export`."""
    p = argparse.ArgumentParser(prog="crnn export", description="Export a checkpoint (e.g. to ONNX, for `--backend onnx`).")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="output format (default onnx)")
    p.add_argument("--output", "-o", required=True, help="file to write, e.g. model.onnx")
    p.add_argument("--weights", help="checkpoint (.safetensors) to export (default: the shipped model)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run `crnn export`; exit 0 on success, 2 when the checkpoint cannot be read or exported."""
    args = build_parser().parse_args(argv)
    try:
        from crnn.onnx_export import OPSET, export_onnx
    except ModuleNotFoundError as e:
        print(f"crnn export: missing dependency {e.name!r}; install the onnx extra: pip install 'crnn-ocr[onnx]'",
              file=sys.stderr)
        return 2
    try:
        import onnx  # noqa: F401  (checked before the model loads, for a one-line error)
    except ModuleNotFoundError:
        print("crnn export: missing dependency 'onnx'; install the onnx extra: pip install 'crnn-ocr[onnx]'", file=sys.stderr)
        return 2
    try:
        path = export_onnx(args.weights, args.output, args.opset or OPSET)
    except (CRNNError, OSError) as e:
        print(f"crnn export: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}", file=sys.stderr)
    return 0
