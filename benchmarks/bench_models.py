"""Training and inference images/s of each CRNN architecture on random input, one torch thread by default.

    python benchmarks/bench_models.py [--threads 1] [--batch 32] [--width 128] [--hidden-size 128]

The network alone (no data, no decoding): a training step (forward, CTC-free mean loss, backward, AdamW) and an
inference forward of the fused model (batch norm folded, as `crnn ocr` runs it), fp32. It answers "what does an
architecture cost here", beside the multiply-adds `crnn info` counts; `benchmarks/bench_ocr.py` measures the whole
`crnn ocr` command of a trained checkpoint.
"""

from __future__ import annotations

import argparse
import time

import torch

from crnn.models.crnn import build_model, count_macs, count_parameters, fuse_for_inference

# (label, build_model keyword arguments): the shipped backbone and issue 19's candidates (docs/models.md).
ARCHITECTURES: list[tuple[str, dict]] = [
    ("small", {"backbone": "small"}),
    ("resnet", {"backbone": "resnet"}),
    ("resnet_dw", {"backbone": "resnet_dw"}),
    ("resnet + 2 mixing", {"backbone": "resnet", "mixer_layers": 2}),
    ("resnet + 2 mixing, 48 px", {"backbone": "resnet", "mixer_layers": 2, "height": 48}),
]


def rate(step, images: int, repeat: int) -> float:
    """Images/s of ``step`` (which handles ``images`` images), after one warm-up call."""
    step()
    start = time.perf_counter()
    for _ in range(repeat):
        step()
    return images * repeat / (time.perf_counter() - start)


def main() -> None:
    """Print one Markdown row per architecture."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"| model | parameters | multiply-adds (1 x H x {args.width}) | train images/s | inference images/s |")
    print("|---|---|---|---|---|")
    for label, kwargs in ARCHITECTURES:
        model = build_model(hidden_size=args.hidden_size, **kwargs)
        x = torch.randn(args.batch, 1, model.config.height, args.width)
        opt = torch.optim.AdamW(model.parameters())

        def train_step() -> None:
            model.train()
            model(x).mean().backward()
            opt.step()
            opt.zero_grad()

        train = rate(train_step, args.batch, args.repeat)
        fused = fuse_for_inference(model)

        def infer_step() -> None:
            with torch.inference_mode():
                fused(x)

        infer = rate(infer_step, args.batch, args.repeat)
        print(f"| {label} | {count_parameters(model) / 1e6:.2f} M | {count_macs(model, args.width) / 1e9:.3f} G "
              f"| {train:.0f} | {infer:.0f} |")


if __name__ == "__main__":
    main()
