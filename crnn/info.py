"""`crnn info`: describe a model (architecture, charset, parameters, multiply-adds): a CRNN or the baseline."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from crnn.checkpoint import default_weights_path, load_any
from crnn.errors import CRNNError
from crnn.model import BACKBONES, CELLS, CRNN, build_model, count_macs, count_parameters


def describe(model: CRNN, width: int = 128) -> dict[str, Any]:
    """Architecture, parameter count and multiply-adds of ``model`` for a 32 x ``width`` input."""
    return {
        "architecture": model.config.to_dict(),
        "parameters": count_parameters(model),
        "input": f"1x{model.config.height}x{width}",
        "frames": width // 4,
        "multiply_adds": count_macs(model, width),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print a description of the shipped weights, a checkpoint or an untrained architecture."""
    p = argparse.ArgumentParser(prog="crnn info", description=__doc__)
    p.add_argument("--weights", help="checkpoint file (default: the shipped weights)")
    p.add_argument("--backbone", choices=BACKBONES, help="describe an untrained architecture instead")
    p.add_argument("--cell", choices=CELLS, default="lstm")
    p.add_argument("--width", type=int, default=128, help="input width for multiply-adds (default 128)")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    try:
        if args.backbone:
            model, info = build_model(args.backbone, args.cell), {}
        else:
            ckpt = load_any(args.weights or default_weights_path())
            model = ckpt.model
            info = {"weights": str(args.weights or default_weights_path()), "model_type": ckpt.model_type,
                    "charset": ckpt.charset.chars, "metadata": {k: v for k, v in ckpt.metadata.items() if k != "config"}}
    except CRNNError as e:
        print(f"crnn info: {e}", file=sys.stderr)
        return 2
    if not isinstance(model, CRNN):  # the segmented-character baseline: no frames, so no per-width cost
        d = {**info, "architecture": model.config.to_dict(), "parameters": count_parameters(model)}
        if args.json:
            print(json.dumps(d, indent=2, default=str))
            return 0
        a = d["architecture"]
        print(f"weights:       {d['weights']}")
        print("model type:    baseline (segmenter + per-character CNN + RNN + softmax)")
        print(f"charset:       {len(d['charset'])} characters")
        print(f"crop CNN:      channels {a['channels']}, crops {a['crop_size']}x{a['crop_size']}, embedding {a['embed_dim']}")
        print(f"recurrent:     {a['num_layers']}-layer {'bi' if a['bidirectional'] else 'uni'}directional "
              f"{a['cell'].upper()}, hidden {a['hidden_size']}")
        print(f"parameters:    {d['parameters']:,} ({d['parameters'] / 1e6:.2f} M)")
        return 0
    d = {**info, **describe(model, args.width)}
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    a = d["architecture"]
    if "weights" in d:
        print(f"weights:       {d['weights']}")
        print(f"charset:       {len(d['charset'])} characters + blank")
    print(f"backbone:      {a['backbone']}")
    rnn = "none" if a["cell"] == "none" else (
        f"{a['num_layers']}-layer {'bi' if a['bidirectional'] else 'uni'}directional {a['cell'].upper()}, hidden {a['hidden_size']}")
    print(f"recurrent:     {rnn}")
    print(f"classes:       {a['num_classes']}")
    print(f"parameters:    {d['parameters']:,} ({d['parameters'] / 1e6:.2f} M)")
    print(f"multiply-adds: {d['multiply_adds']:,} ({d['multiply_adds'] / 1e9:.3f} G) for a {d['input']} input, {d['frames']} frames")
    return 0
