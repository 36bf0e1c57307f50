"""Choose the language model's weight (alpha) and length bonus (beta) of `--decoder lm` by a grid search.

Run on a synthetic validation folder rendered with the default text mix, or on the held-out parts of real labeled
folders (the crops a `crnn train` run with the same holdout never trained on), never on a benchmark:

    crnn synth --count 2000 --out /tmp/lm_val --format folder --seed 4242
    python -m crnn_training.tune_lm --data /tmp/lm_val --cache /tmp/lm_val.npz --betas 1   # alpha, beta = 1
    python -m crnn_training.tune_lm --data /tmp/lm_val --cache /tmp/lm_val.npz --alphas A  # beta at the best A

    R=../shared/realtrain   # the adapted model on the held-out 15% of its three real training folders
    python -m crnn_training.tune_lm --model real --holdout 0.15 --data $R/IIIT5K_train --data $R/IC15_train \
        --data $R/SVT_train --cache /tmp/real_val.npz

The network runs once; every (alpha, beta) pair then decodes the same log-probabilities. The objective is the mean
over the ``--data`` folders of a word accuracy: ``case`` (exact, case-sensitive: the default on one rendered folder,
where a weight that helps words but spoils numbers and codes loses) or ``protocol`` (lowercase, 0-9a-z: the default
with ``--holdout``, since real labels do not all keep case (SVT's are upper case) and the adaptation's checkpoints are
chosen on it). A mean over folders, not over crops, so that the largest folder does not decide alone.

Small held-out parts are noisy (47 SVT crops: 2.1 points a crop), so besides the best pair it prints the best
``flat`` one: the highest mean of the objective over each pair's grid neighbours (itself and the pairs next to it
in the alphas and the betas, as given), and for each pair the crops it reads right and the reference pair
(``--reference``, default the shipped weights) reads wrong, and the other way round (pooled over the folders).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crnn.checkpoints.shipped import model_help
from crnn.decoding.char_lm import load_lm
from crnn.decoding.lm_decode import LENGTH_BONUS, LM_WEIGHT, lm_beam_ids
from crnn.errors import ConfigError, CRNNError
from crnn.metrics import normalize_protocol, word_accuracy
from crnn_training.data import load_labeled_arrays

ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
BETAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
OBJECTIVES = ("case", "protocol")
# Images the beam search decodes in one call (padded to the longest): its cost is mostly a fixed overhead per frame
# and call (crnn.reading.text_recognizer.DECODE_GROUP); results never depend on it.
DECODE_GROUP = 256


def decode_all(outputs: Sequence[np.ndarray], charset: Any, lm: Any, beam_width: int, alpha: float,
               beta: float) -> list[str]:
    """The lm decoder's text of each (T_i, C) output, decoded in groups of similar lengths."""
    order = sorted(range(len(outputs)), key=lambda i: len(outputs[i]))
    texts = [""] * len(outputs)
    for start in range(0, len(order), DECODE_GROUP):
        idx = order[start:start + DECODE_GROUP]
        lengths = [len(outputs[i]) for i in idx]
        batch = np.zeros((len(idx), max(lengths), outputs[idx[0]].shape[1]), dtype=np.float64)
        for j, i in enumerate(idx):
            batch[j, : lengths[j]] = outputs[i]
        for i, ids in zip(idx, lm_beam_ids(batch, lengths, charset, lm, beam_width, alpha, beta)):
            texts[i] = charset.decode(ids)
    return texts


def right(preds: Sequence[str], texts: Sequence[str], objective: str) -> np.ndarray:
    """Whether each prediction counts as right under ``objective`` (bool array)."""
    if objective == "protocol":
        return np.array([normalize_protocol(p) == normalize_protocol(t) for p, t in zip(preds, texts)], dtype=bool)
    return np.array([p == t for p, t in zip(preds, texts)], dtype=bool)


def flat_scores(table: dict[tuple[float, float], float], alphas: Sequence[float],
                betas: Sequence[float]) -> dict[tuple[float, float], float]:
    """Each pair's mean of ``table`` over its 3 x 3 neighbourhood in the (alphas, betas) grid (those that exist)."""
    out = {}
    for i, j in itertools.product(range(len(alphas)), range(len(betas))):
        near = [table[alphas[a], betas[b]] for a in range(max(i - 1, 0), min(i + 2, len(alphas)))
                for b in range(max(j - 1, 0), min(j + 2, len(betas)))]
        out[alphas[i], betas[j]] = float(np.mean(near))
    return out


def load_outputs(rec: Any, arrays: list[np.ndarray], texts: list[str], cache: str | None) -> list[np.ndarray]:
    """The network's (T_i, C) float64 log-probabilities of each prepared image, read from or kept in ``cache``."""
    if cache and Path(cache).exists():
        with np.load(cache) as saved:
            kept = [str(t) for t in saved["texts"]] if "texts" in saved.files else None
            if kept is not None and kept != texts or len([k for k in saved.files if k.startswith("s")]) != len(arrays):
                raise ConfigError(f"--cache {cache} holds the outputs of other images: remove it or name another")
            return [saved[f"s{i}"] for i in range(len(arrays))]
    outputs = [np.empty(0)] * len(arrays)
    # Batches of one width, as the recognizer runs them (no padded frames: the outputs users get).
    for idx in rec.batches(arrays, 64):
        lp, lengths = rec.batch_log_probs([arrays[i] for i in idx])
        for j, i in enumerate(idx):
            outputs[i] = np.asarray(lp[j, : int(lengths[j])], dtype=np.float64)
    if cache:
        np.savez(cache, texts=np.array(texts, dtype=str), **{f"s{i}": o for i, o in enumerate(outputs)})
    return outputs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m crnn_training.tune_lm", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, action="append", metavar="DIR",
                   help="labeled folder (repeatable): rendered with the default text mix, or real with --holdout")
    p.add_argument("--holdout", type=float, default=0.0,
                   help="read only each folder's held-out part, as `crnn eval --holdout` does (e.g. 0.15: the crops a "
                   "`crnn train` folder source with the same holdout never trained on; docs/adaptation.md)")
    p.add_argument("--weights", default=None)
    p.add_argument("--model", metavar="NAME", help=model_help())
    p.add_argument("--lm", default=None, help="language model (default: the shipped one)")
    p.add_argument("--beam-width", type=int, default=10)
    p.add_argument("--alphas", type=float, nargs="+", default=ALPHAS)
    p.add_argument("--betas", type=float, nargs="+", default=BETAS)
    p.add_argument("--objective", choices=OBJECTIVES, default=None,
                   help="word accuracy averaged over the folders: case (exact) or protocol (lowercase, 0-9a-z); "
                   "default: protocol with --holdout, case otherwise")
    p.add_argument("--reference", type=float, nargs=2, metavar=("ALPHA", "BETA"), default=None,
                   help=f"the pair each row is compared with, crop by crop (default: the shipped "
                   f"{LM_WEIGHT} {LENGTH_BONUS})")
    p.add_argument("--limit", type=int, default=0, help="at most N images per folder")
    p.add_argument("--cache", help="an .npz file keeping the network's outputs between runs (e.g. a second grid)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Print the grid's accuracies as JSON lines, the best and the best flat pair; returns the exit status."""
    args = _parser().parse_args(argv)
    if not 0.0 <= args.holdout < 1.0:
        print(f"tune_lm: error: --holdout {args.holdout}: must be in [0, 1)", file=sys.stderr)
        return 2
    objective = args.objective or ("protocol" if args.holdout > 0 else "case")
    from crnn.kinds.loading import load_recognizer

    try:
        # torch, fp32, one thread: the outputs `crnn eval --backend torch --precision fp32` decodes; decoding dominates.
        rec = load_recognizer(args.weights, precision="fp32", threads=1, backend="torch", model=args.model)
        lm = load_lm(args.lm)
        arrays: list[np.ndarray] = []
        texts: list[str] = []
        folder_of: list[int] = []
        for f, folder in enumerate(args.data):
            a, t, _, problems = load_labeled_arrays(folder, rec.charset, rec.preprocess, args.limit, args.holdout)
            if problems:
                print(f"[tune_lm] {folder}: skipped {len(problems)} image(s), e.g. {problems[0]}", file=sys.stderr)
            if not a:
                raise ConfigError(f"{folder}: no image to tune on{' in its held-out part' if args.holdout else ''}")
            arrays += a
            texts += t
            folder_of += [f] * len(a)
        outputs = load_outputs(rec, arrays, texts, args.cache)
    except (CRNNError, OSError) as e:  # a bad folder, checkpoint or cache; a model not shipped
        print(f"tune_lm: error: {e}", file=sys.stderr)
        return 2
    groups = [np.array(folder_of) == f for f in range(len(args.data))]

    def score(preds: list[str]) -> dict[str, Any]:
        ok = right(preds, texts, objective)
        per = [float(ok[g].mean()) for g in groups]
        return {"objective": round(float(np.mean(per)), 4), "folders": [round(x, 4) for x in per],
                "pooled": round(float(ok.mean()), 4)}

    greedy = [rec.charset.decode([c for c, prev in zip(o.argmax(1), [-1, *o.argmax(1)[:-1]]) if c and c != prev])
              for o in outputs]
    print(json.dumps({"folders": [[d, int(g.sum())] for d, g in zip(args.data, groups)], "objective": objective,
                      "greedy": {**score(greedy), "case": round(word_accuracy(greedy, texts), 4),
                                 "protocol": round(word_accuracy(greedy, texts, protocol=True), 4)}}), flush=True)
    ref = tuple(args.reference) if args.reference else (LM_WEIGHT, LENGTH_BONUS)
    ref_ok = right(decode_all(outputs, rec.charset, lm, args.beam_width, *ref), texts, objective)
    results = []
    for alpha, beta in itertools.product(args.alphas, args.betas):
        t0 = time.perf_counter()
        preds = decode_all(outputs, rec.charset, lm, args.beam_width, alpha, beta)
        ok = right(preds, texts, objective)
        row = {"alpha": alpha, "beta": beta, **score(preds),
               "case": round(word_accuracy(preds, texts), 4),
               "protocol": round(word_accuracy(preds, texts, protocol=True), 4),
               "vs_reference": [int((ok & ~ref_ok).sum()), int((~ok & ref_ok).sum())],
               "ms_per_image": round(1000 * (time.perf_counter() - t0) / max(len(outputs), 1), 2)}
        results.append(row)
        print(json.dumps(row), flush=True)
    # Ties: the smaller weights (the language model changes less of what the image says).
    best = max(results, key=lambda r: (r["objective"], r["pooled"], r["protocol"], -r["alpha"], -r["beta"]))
    table = {(r["alpha"], r["beta"]): r["objective"] for r in results}
    alphas, betas = sorted(set(args.alphas)), sorted(set(args.betas))
    flat = flat_scores(table, alphas, betas)
    pair = max(flat, key=lambda k: (round(flat[k], 10), -k[0], -k[1]))
    print(json.dumps({"reference": list(ref), "best": best,
                      "best_flat": {"alpha": pair[0], "beta": pair[1], "flat": round(flat[pair], 4),
                                    "objective": table[pair]},
                      "flat": [[a, b, round(v, 4)] for (a, b), v in flat.items()]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
