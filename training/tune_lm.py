"""Choose the language model's weight (alpha) and length bonus (beta) of `--decoder lm` by a grid search.

Run on a synthetic validation folder rendered with the default text mix, never on a benchmark:

    crnn synth --count 2000 --out /tmp/lm_val --format folder --seed 4242
    python -m crnn_training.tune_lm --data /tmp/lm_val --cache /tmp/lm_val.npz --betas 1   # alpha, beta = 1
    python -m crnn_training.tune_lm --data /tmp/lm_val --cache /tmp/lm_val.npz --alphas A  # beta at the best A

The network runs once; every (alpha, beta) pair then decodes the same log-probabilities. The objective is the
exact (case-sensitive) word accuracy on the whole mix, words and non-words alike, so a weight that helps words
but spoils numbers and codes loses.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crnn.decoding.char_lm import load_lm
from crnn.decoding.lm_decode import lm_beam_ids
from crnn.metrics import word_accuracy
from crnn_training.data import load_labeled_arrays

ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
BETAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the grid's accuracies as JSON lines and the best pair; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m crnn_training.tune_lm", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="labeled folder rendered with the default text mix")
    p.add_argument("--weights", default=None)
    p.add_argument("--lm", default=None, help="language model (default: the shipped one)")
    p.add_argument("--beam-width", type=int, default=10)
    p.add_argument("--alphas", type=float, nargs="+", default=ALPHAS)
    p.add_argument("--betas", type=float, nargs="+", default=BETAS)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--cache", help="an .npz file keeping the network's outputs between runs (e.g. a second grid)")
    args = p.parse_args(argv)

    from crnn.kinds.loading import load_recognizer

    rec = load_recognizer(args.weights, precision="fp32", threads=1)  # one thread: the decoding dominates anyway
    lm = load_lm(args.lm)
    arrays, texts, _, _ = load_labeled_arrays(args.data, rec.charset, rec.preprocess, args.limit)
    if args.cache and Path(args.cache).exists():
        with np.load(args.cache) as saved:
            outputs = [saved[f"s{i}"] for i in range(len(arrays))]
    else:
        outputs = [np.empty(0)] * len(arrays)
        # Batches of one width, as the recognizer runs them (no padded frames: the outputs users get).
        for idx in rec.batches(arrays, 64):  # type: ignore[attr-defined]
            lp, lengths = rec.log_probs([arrays[i] for i in idx])  # type: ignore[attr-defined]
            for j, i in enumerate(idx):
                outputs[i] = lp[j, : int(lengths[j])].double().numpy()
        if args.cache:
            np.savez(args.cache, **{f"s{i}": o for i, o in enumerate(outputs)})
    greedy = [rec.charset.decode([c for c, prev in zip(o.argmax(1), [-1, *o.argmax(1)[:-1]]) if c and c != prev])
              for o in outputs]
    print(json.dumps({"greedy": {"case": round(word_accuracy(greedy, texts), 4),
                                 "protocol": round(word_accuracy(greedy, texts, protocol=True), 4)}}), flush=True)
    results = []
    for alpha, beta in itertools.product(args.alphas, args.betas):
        t0 = time.perf_counter()
        ids = [lm_beam_ids(o[None], [len(o)], rec.charset, lm, args.beam_width, alpha, beta)[0] for o in outputs]
        preds = [rec.charset.decode(x) for x in ids]
        row = {"alpha": alpha, "beta": beta, "case": round(word_accuracy(preds, texts), 4),
               "protocol": round(word_accuracy(preds, texts, protocol=True), 4),
               "ms_per_image": round(1000 * (time.perf_counter() - t0) / max(len(outputs), 1), 2)}
        results.append(row)
        print(json.dumps(row), flush=True)
    best = max(results, key=lambda r: (r["case"], r["protocol"], -r["alpha"]))
    print(json.dumps({"best": best}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
