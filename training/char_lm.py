"""`crnn lm`: train the character n-gram language model (interpolated modified Kneser-Ney) on the renderer's text.

The texts are the renderer's own: every word of its lexicon (wordfreq) once, plus texts drawn from its default
text mix (words by frequency, numbers, codes, punctuation, phrases, random strings; case is folded away). No
benchmark label is ever read. Counting is vectorised: each n-gram is one int64 key (see ``crnn.decoding.char_lm``).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from crnn.decoding.char_lm import CharLM, fold
from crnn.charset import DEFAULT_CHARS
from crnn.errors import OutputPathError
from crnn.output_files import check_output_file, replaced_atomically


def alphabet_of(chars: str) -> str:
    """The case-folded alphabet of a charset: each character's folded form once, in charset order."""
    return "".join(dict.fromkeys(fold(c) for c in chars))


def _encode(texts: Iterable[str], lm: CharLM) -> tuple[np.ndarray, np.ndarray]:
    """All texts as one int64 array [BOS, s_1..s_n, EOS, BOS, ...] and each symbol's offset from its text's BOS."""
    tokens: list[int] = []
    offsets: list[int] = []
    for text in texts:
        ids = [lm.bos, *lm.encode(text), lm.eos]
        tokens.extend(ids)
        offsets.extend(range(len(ids)))
    return np.asarray(tokens, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def _discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts D1, D2, D3+ (Chen and Goodman) from one order's counts."""
    n = [int(np.count_nonzero(counts == i)) for i in (1, 2, 3, 4)]
    if n[0] == 0 or n[1] == 0:
        return 0.5, 1.0, 1.5  # too little data for the estimate (tiny test corpora): the usual fallback
    y = n[0] / (n[0] + 2 * n[1])
    d = [1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2] if n[2] else 1.5]
    return tuple(float(np.clip(x, 0.05, i + 1)) for i, x in enumerate(d))  # type: ignore[return-value]


def estimate(
    texts: Sequence[str], alphabet: str, order: int = 6, min_count: int = 2, prune_from: int = 4,
    metadata: dict | None = None,
) -> CharLM:
    """An interpolated modified Kneser-Ney model of ``texts`` (case-folded).

    N-grams of order >= ``prune_from`` seen fewer than ``min_count`` times are dropped; their mass goes to the
    shorter history, so every distribution still sums to one.
    """
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    empty = CharLM(alphabet, order, np.zeros(len(alphabet) + 3), {})
    base = empty.base
    tokens, offsets = _encode(texts, empty)
    target = tokens != empty.bos
    # keys[k][i]: the k-gram ending at position i (valid where the text has k symbols up to i).
    raw: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    key = np.zeros_like(tokens)
    for k in range(1, order + 1):
        shifted = np.zeros_like(tokens)
        shifted[k - 1:] = tokens[: len(tokens) - k + 1]
        key = key + shifted * base ** (k - 1)
        valid = target & (offsets >= k - 1)
        raw[k] = np.unique(key[valid], return_counts=True)

    # Kneser-Ney counts: below the top order, an n-gram counts the distinct symbols seen before it, except
    # n-grams starting at BOS, which have nothing before them and keep their raw counts.
    adjusted: dict[int, np.ndarray] = {}
    for k in range(1, order + 1):
        keys, counts = raw[k]
        if k == order:
            adjusted[k] = counts
            continue
        longer = raw[k + 1][0] % base**k
        suffixes, continuation = np.unique(longer, return_counts=True)
        adj = np.zeros_like(counts)
        where = np.searchsorted(suffixes, keys)
        found = (where < len(suffixes)) & (suffixes[np.minimum(where, len(suffixes) - 1)] == keys)
        adj[found] = continuation[where[found]]
        starts_bos = keys // base ** (k - 1) == empty.bos
        adj[starts_bos] = counts[starts_bos]
        adjusted[k] = adj

    ngrams: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    unigram = np.zeros(empty.bos)
    sizes: dict[str, int] = {}
    for k in range(1, order + 1):
        keys, counts = raw[k]
        adj = adjusted[k]
        d1, d2, d3 = _discounts(adj)
        discount = np.where(adj == 1, d1, np.where(adj == 2, d2, d3))
        history = keys // base
        # c(h): all of the history's continuations, pruned or not, so that pruned mass goes to the backoff.
        histories, first, inverse = np.unique(history, return_index=True, return_inverse=True)
        totals = np.bincount(inverse, weights=adj)
        probs = np.maximum(adj - discount, 0) / totals[inverse]
        keep = counts >= min_count if k >= prune_from else np.ones(len(keys), dtype=bool)
        kept_mass = np.bincount(inverse[keep], weights=probs[keep], minlength=len(histories))
        gammas = 1.0 - kept_mass
        if k == 1:
            # The lowest order interpolates with the uniform distribution over the predictable symbols
            # (alphabet, UNK, EOS), so no symbol ever has probability 0.
            unigram[1 : empty.bos] = (gammas[0] if len(gammas) else 1.0) / (empty.bos - 1)
            unigram[keys[keep]] += probs[keep]
        else:
            # Rounded as the file stores them (float16 logs), so a saved model is the one estimated; the model
            # derives each history's gamma from these.
            with np.errstate(divide="ignore"):
                rounded = np.exp(np.log(probs[keep]).astype(np.float16).astype(np.float64))
            ngrams[k] = (keys[keep], rounded)
        sizes[str(k)] = int(keep.sum())
    meta = {**(metadata or {}), "smoothing": "interpolated modified Kneser-Ney", "order": order,
            "min_count": min_count, "prune_from_order": prune_from, "ngrams_kept": sizes,
            "symbols_trained": int(target.sum()), "texts": len(texts)}
    return CharLM(alphabet, order, unigram, ngrams, meta)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def renderer_texts(count: int, seed: int) -> tuple[list[str], dict]:
    """The lexicon's words once each plus ``count`` texts of the renderer's default mix, and where they came from."""
    from crnn_synth_data.config import SynthConfig
    from crnn_synth_data.text import TextSampler, load_lexicon

    config = SynthConfig()
    words = load_lexicon(config)
    sampler = TextSampler(config, words)
    r = random.Random(seed)
    drawn = [sampler.sample(r) for _ in range(count)]
    source = {"sources": f"synth_data.text: the {len(words)}-word lexicon (wordfreq, en) once + {count} texts of "
                         f"the default text mix (TextSampler, SynthConfig defaults, seed {seed})",
              "lexicon_words": len(words), "mix_texts": count, "seed": seed,
              "wordfreq_version": _version("wordfreq")}
    return [*words, *drawn], source


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `crnn lm`; returns the exit status."""
    p = argparse.ArgumentParser(prog="crnn lm", description=__doc__.splitlines()[0])
    p.add_argument("--output", type=Path, default=Path("weights/char_lm.safetensors"))
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--order", type=int, default=6, help="n-gram order (default %(default)s)")
    p.add_argument("--texts", type=int, default=1_000_000,
                   help="texts drawn from the renderer's mix, besides each lexicon word once (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-count", type=int, default=3, help="drop rarer n-grams of order >= --prune-from (default %(default)s)")
    p.add_argument("--prune-from", type=int, default=3, help="(default %(default)s)")
    args = p.parse_args(argv)
    if args.order < 1 or args.texts < 0 or args.min_count < 1:
        print("crnn lm: --order and --min-count must be >= 1, --texts >= 0", file=sys.stderr)
        return 2
    try:  # before a minute of counting, not after it
        check_output_file(args.output, option="--output", overwrite=args.force)
    except OutputPathError as e:
        print(f"crnn lm: error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    texts, source = renderer_texts(args.texts, args.seed)
    print(f"{len(texts):,} texts ({time.perf_counter() - start:.0f} s); counting ...", file=sys.stderr)
    lm = estimate(texts, alphabet_of(DEFAULT_CHARS), args.order, args.min_count, args.prune_from, source)
    with replaced_atomically(args.output, option="--output", overwrite=args.force) as tmp:
        lm.save(tmp)
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({size / 1e6:.1f} MB, n-grams kept per order {lm.metadata['ngrams_kept']}, "
          f"{time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
