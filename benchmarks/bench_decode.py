"""Decoding alone: CPU milliseconds per image of each decoder on saved network outputs (no network, no images).

    python benchmarks/bench_decode.py --folder DIR [--weights W] [--cache outputs.npz] [--repeat 5] [--reference]

The network runs once over the folder's images (the shipped model on ONNX Runtime when installed, else torch;
the recognizer's own batches: width buckets of up to --batch-size), and its log-probabilities are kept per batch
(in --cache, reused when it exists). Then each decoder decodes them as `crnn ocr` does (crnn.decoding.ctc_decode.decode on
consecutive batches joined into groups of at least --group images, crnn.reading.text_recognizer.DECODE_GROUP; --group 1:
batch by batch), --repeat times: "cold" with a freshly loaded language model (the first pass of a
`crnn ocr` run, which computes each history's distribution once), then "warm" (a second pass on the same
model). CPU time of this process (time.process_time) is reported, median over the repeats: it depends far less
on other load than wall time does. The language model's loading (about 0.1 s once per process) is not counted.

--reference also times the per-image search that the batched one replaced (tests/reference_lm_decode.py) and
checks that both give the same predictions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.reference_lm_decode, for --reference

from crnn.decoding.char_lm import load_lm  # noqa: E402
from crnn.decoding.ctc_decode import decode  # noqa: E402
from crnn.reading.text_recognizer import DECODE_GROUP, stack_outputs  # noqa: E402

Batches = list[tuple[np.ndarray, np.ndarray]]


def network_outputs(folder: Path, weights: str | None, batch_size: int) -> tuple[Batches, list[str]]:
    """The shipped (or given) model's (log_probs, lengths) for each of the recognizer's batches, and its charset."""
    from crnn.kinds.loading import load_recognizer

    recognizer = load_recognizer(weights, threads=1, backend="auto")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    arrays = [recognizer.prepare(str(p)) for p in paths]
    batches = []
    for idx in recognizer.batches(arrays, batch_size):
        lp, lengths = recognizer.batch_log_probs([arrays[i] for i in idx])  # type: ignore[attr-defined]
        batches.append((np.asarray(lp, dtype=np.float32), np.asarray(lengths, dtype=np.int64)))
    return batches, list(recognizer.charset.chars)


def save(path: Path, batches: Batches, chars: list[str]) -> None:
    """Write the batches and the charset to an .npz file."""
    arrays = {f"log_probs_{i}": lp for i, (lp, _) in enumerate(batches)}
    arrays.update({f"lengths_{i}": n for i, (_, n) in enumerate(batches)})
    np.savez_compressed(path, chars=np.array(chars), **arrays)


def load(path: Path) -> tuple[Batches, list[str]]:
    """The batches and charset written by :func:`save`."""
    data = np.load(path)
    count = sum(1 for name in data.files if name.startswith("log_probs_"))
    return [(data[f"log_probs_{i}"], data[f"lengths_{i}"]) for i in range(count)], data["chars"].tolist()


def grouped(batches: Batches, size: int) -> Batches:
    """Consecutive batches joined into groups of at least ``size`` images, as crnn.reading.text_recognizer.read_and_decode
    joins them (in one thread; the last group may be smaller)."""
    groups: list[Batches] = []
    count = size
    for batch in batches:
        if count >= size:
            groups.append([])
            count = 0
        groups[-1].append(batch)
        count += len(batch[1])
    return [stack_outputs(group) for group in groups]


def time_decoder(run, batches: Batches, repeat: int, lm: bool) -> tuple[float, float, list]:
    """(cold, warm) median CPU seconds of ``run(log_probs, lengths)`` over all batches, and the predictions."""
    cold, warm, predictions = [], [], []
    for _ in range(repeat):
        if lm:
            load_lm.cache_clear()
            load_lm()  # a fresh model, loaded outside the timing: its table of distributions starts empty
        for times in (cold, warm):
            start = time.process_time()
            predictions = [p for lp, lengths in batches for p in run(lp, lengths)]
            times.append(time.process_time() - start)
    return statistics.median(cold), statistics.median(warm), predictions


def main() -> None:
    """Print ms of CPU per image for each decoder (cold and warm) on saved network outputs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path, help="word images (required unless --cache exists)")
    p.add_argument("--weights", help="checkpoint or .onnx (default: the shipped model)")
    p.add_argument("--cache", type=Path, help="keep the network's outputs here (.npz), reuse them if it exists")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--group", type=int, default=DECODE_GROUP, help=f"images decoded at once (default {DECODE_GROUP})")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--decoders", nargs="+", default=["greedy", "beam", "lm"])
    p.add_argument("--reference", action="store_true", help="also time the per-image search it replaced")
    args = p.parse_args()
    from crnn.charset import Charset

    if args.cache is not None and args.cache.exists():
        batches, chars = load(args.cache)
    elif args.folder is None:
        p.error("--folder is required unless --cache names an existing file")
    else:
        batches, chars = network_outputs(args.folder, args.weights, args.batch_size)
        if args.cache is not None:
            save(args.cache, batches, chars)
    charset = Charset("".join(chars))
    images = sum(len(n) for _, n in batches)
    frames = sum(int(n.sum()) for _, n in batches)
    count = len(batches)
    batches = grouped(batches, args.group)
    print(f"{images} images in {count} batches, decoded in {len(batches)} groups, {frames / images:.1f} frames per "
          f"image; CPU ms per image, median of {args.repeat}")
    rows = []
    for name in args.decoders:
        run = lambda lp, n, name=name: decode(lp, n, charset, decoder=name)  # noqa: E731
        rows.append((name, *time_decoder(run, batches, args.repeat, name == "lm")))
    if args.reference:
        from tests.reference_lm_decode import reference_decode

        for name in [d for d in args.decoders if d in ("beam", "lm")]:
            run = lambda lp, n, name=name: reference_decode(lp, n, charset, name, load_lm())  # noqa: E731
            rows.append((f"{name} (reference)", *time_decoder(run, batches, args.repeat, name == "lm")))
    for name, cold, warm, _ in rows:
        print(f"{name:18s} cold {cold / images * 1e3:6.3f}   warm {warm / images * 1e3:6.3f}")
    if args.reference:
        fast = {name: preds for name, _, _, preds in rows}
        for name in [d for d in args.decoders if d in ("beam", "lm")]:
            same = sum(a == b for a, b in zip(fast[name], fast[f"{name} (reference)"]))
            print(f"{name}: {same} of {images} predictions identical to the reference's")


if __name__ == "__main__":
    main()
