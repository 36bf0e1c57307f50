"""Issue 20's exposure-bias measurement: how much an attention decoder's own mistakes cost it at test time.

    python benchmarks/bench_exposure_bias.py --model NAME=CHECKPOINT [--model ...] --data DIR [--data ...]

A decoder trained with teacher forcing only ever saw the true previous character; at test time it is fed its own.
For each crnn_attention checkpoint and labeled folder this reads every word twice, fp32, one torch thread:

* teacher forced: each step gets the true previous characters, and its most probable class is compared with the
  true one (the text's characters, then the end of the text). Errors cannot compound here.
* free running: greedy decoding, as `crnn ocr --decoder greedy` reads.

It prints, per model and folder, the teacher-forced step error rate (wrong steps / steps), the free-running
character error rate (edit distance / (characters + 1): the same denominator), their ratio (about 1: a mistake
costs only itself; above 1: mistakes compound), and among the words with an error, the share with two or more,
teacher forced (errors independent of each other) and free running. Words with characters outside the model's
charset are skipped.
"""

from __future__ import annotations

import argparse
import sys

import torch
from rapidfuzz.distance import Levenshtein

from crnn.models.attention import IGNORE, teacher_forcing_pair
from crnn.io.labeled_folder import LabeledFolder
from crnn.io.preprocess import prepare
from crnn.kinds.loading import load_recognizer


@torch.inference_mode()
def measure(path: str, folder: str, batch_size: int = 64) -> dict[str, float]:
    """Teacher-forced step errors vs free-running character errors of one attention checkpoint on one folder."""
    rec = load_recognizer(path, threads=1, precision="fp32")
    if getattr(rec, "kind", "") != "crnn_attention":
        raise SystemExit(f"{path}: not an attention-decoder checkpoint (kind {getattr(rec, 'kind', '?')})")
    data = LabeledFolder.read(folder, rec.charset)
    items = [(data.path(i), text) for i, (_, text) in enumerate(data.items)]  # read() refused unspellable texts
    decoder = rec.model.decoder
    tf_wrong = tf_steps = fr_edits = 0
    tf_words = [0, 0]  # words with at least one wrong step, with at least two
    fr_words = [0, 0]  # words read wrong, with an edit distance of at least two
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        frames, lengths = rec.frames([prepare(p, rec.preprocess) for p, _ in chunk])
        ids = [rec.charset.encode(t) for _, t in chunk]
        inputs, targets = teacher_forcing_pair(ids, decoder.config.num_classes)
        real = targets != IGNORE
        wrong = ((decoder(frames, lengths, inputs).argmax(-1) != targets) & real).sum(1)
        tf_wrong += int(wrong.sum())
        tf_steps += int(real.sum())
        tf_words[0] += int((wrong >= 1).sum())
        tf_words[1] += int((wrong >= 2).sum())
        read, _ = decoder.greedy(frames, lengths)
        for truth, got in zip(ids, read):
            edits = Levenshtein.distance(truth, got)  # the end of text adds none: both end there
            fr_edits += edits
            fr_words[0] += edits >= 1
            fr_words[1] += edits >= 2
    return {"words": len(items), "tf_step_error": tf_wrong / max(1, tf_steps),
            "fr_char_error": fr_edits / max(1, tf_steps), "tf_multi": tf_words[1] / max(1, tf_words[0]),
            "fr_multi": fr_words[1] / max(1, fr_words[0])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT (repeatable)")
    p.add_argument("--data", action="append", required=True, help="labeled folder (repeatable)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print("| model | folder | words | step errors, teacher forced | character errors, free running | ratio | "
          "wrong words with 2+ errors, teacher forced | ... free running |\n|---|---|---|---|---|---|---|---|")
    for spec in args.model:
        name, _, path = spec.partition("=")
        for folder in args.data:
            r = measure(path, folder)
            print(f"| {name} | {folder.rstrip('/').split('/')[-1]} | {r['words']} | {r['tf_step_error']:.2%} | "
                  f"{r['fr_char_error']:.2%} | {r['fr_char_error'] / max(r['tf_step_error'], 1e-9):.2f} | "
                  f"{r['tf_multi']:.1%} | {r['fr_multi']:.1%} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
