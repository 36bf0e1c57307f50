"""CTC prefix beam search with shallow fusion of a character language model; numpy only, no torch.

A prefix's score is ``log P_ctc(prefix) + alpha * log P_lm(prefix) + beta * len(prefix)``, and a finished
text's also counts ``alpha * log P_lm(end | prefix)``. Prefixes keep the case the model reads (``Hello`` and
``hello`` are different beams with the same language-model score, since the model sees folded text), so the
image decides the case and the language model only which letters. With ``alpha = beta = 0`` this is exactly
the plain prefix beam search of ``crnn.ctc_decode``: same candidates, same order, same ties.

Only the chosen class ids come back: confidences are P(text | image), computed by the caller from the CTC
outputs alone (``crnn.ctc_decode``), never mixed with the language model.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from crnn.char_lm import CharLM
from crnn.charset import BLANK, Charset

# The shipped model's weights, chosen on 2,000 rendered words of the default text mix (seed 4242, never a
# benchmark) by training/tune_lm.py; docs/language_model.md has the grid.
LM_WEIGHT: float = 0.35
LENGTH_BONUS: float = 1.0
# Beam search only expands characters at least this probable in a frame (and at most ``beam_width`` of them):
# lower ones cannot change which prefixes survive in practice, and skipping them keeps the pure-Python inner loop
# small. Shared with ctc_decode's plain beam search (frame_candidates), so that alpha = 0 reproduces it.
PRUNE_PROB: float = 1e-4


def lm_symbols(charset: Charset, lm: CharLM) -> list[int]:
    """For each class of ``charset`` (index 0, the blank, included), its language-model symbol id (blank -> 0)."""
    return [0, *(lm.symbol(c) for c in charset.chars)]


def frame_candidates(probs: np.ndarray, beam_width: int) -> list[list[int]]:
    """For each frame of probs (T, C), the non-blank classes worth expanding: top ``beam_width`` above PRUNE_PROB."""
    if probs.shape[0] == 0:
        return []
    k = min(beam_width, probs.shape[1] - 1)
    top = np.argsort(-probs[:, 1:], axis=1, kind="stable")[:, :k] + 1
    keep = np.take_along_axis(probs, top, axis=1) >= PRUNE_PROB
    return [row[mask].tolist() for row, mask in zip(top, keep)]


def lm_prefix_beam_search(
    log_probs: np.ndarray,
    lm: CharLM,
    symbols: Sequence[int],
    beam_width: int = 10,
    alpha: float = LM_WEIGHT,
    beta: float = LENGTH_BONUS,
) -> list[int]:
    """Class ids of the best text for one sample's log_probs (T, C) (log-softmax, class 0 the blank).

    ``symbols[c]`` is class c's language-model symbol (:func:`lm_symbols`).
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    if log_probs.ndim != 2 or log_probs.shape[1] != len(symbols):
        raise ValueError(f"log_probs must have shape (T, {len(symbols)}), got {log_probs.shape}")
    probs = np.exp(np.asarray(log_probs, dtype=np.float64))
    keep_history = lm.order - 1
    # prefix -> (alpha * log P_lm(prefix) + beta * len(prefix), the language model's history after it)
    fused: dict[tuple[int, ...], tuple[float, tuple[int, ...]]] = {(): (0.0, (lm.bos,) if keep_history else ())}
    # prefix -> log P_lm(. | prefix), fetched once per prefix that gets extended
    next_logs: dict[tuple[int, ...], list[float]] = {}

    def extend(prefix: tuple[int, ...], c: int) -> None:
        bonus, history = fused[prefix]
        logs = next_logs.get(prefix)
        if logs is None:
            logs = next_logs[prefix] = lm.log_distribution(history)
        s = symbols[c]
        new_history = (*history, s)[-keep_history:] if keep_history else ()
        fused[(*prefix, c)] = (bonus + alpha * logs[s] + beta, new_history)

    def ranked(item: tuple[tuple[int, ...], list[float]]) -> float:
        total = item[1][0] + item[1][1]
        return (math.log(total) if total > 0 else -math.inf) + fused[item[0]][0]

    # prefix -> [P(prefix, path ends in blank), P(prefix, path ends in its last char)], as in ctc_decode.
    beams: dict[tuple[int, ...], list[float]] = {(): [1.0, 0.0]}
    for row, candidates in zip(probs.tolist(), frame_candidates(probs, beam_width)):
        p_blank = row[BLANK]
        extended: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_b, p_nb) in beams.items():
            total = p_b + p_nb
            entry = extended.setdefault(prefix, [0.0, 0.0])
            entry[0] += total * p_blank
            last = prefix[-1] if prefix else None
            if last is not None:
                entry[1] += p_nb * row[last]
            for c in candidates:
                new_prefix = (*prefix, c)
                if new_prefix not in fused:
                    extend(prefix, c)
                new = extended.setdefault(new_prefix, [0.0, 0.0])
                new[1] += (p_b if c == last else total) * row[c]
        kept = heapq.nlargest(beam_width, extended.items(), key=ranked)
        norm = sum(p_b + p_nb for _, (p_b, p_nb) in kept) or 1.0
        beams = {prefix: [p_b / norm, p_nb / norm] for prefix, (p_b, p_nb) in kept}
        # Drop the scores of prefixes no beam can reach any more (each surviving beam's prefixes are kept).
        if len(fused) > 64 * beam_width:
            fused = {p: fused[p] for p in beams}
            next_logs = {p: next_logs[p] for p in beams if p in next_logs}

    def finished(item: tuple[tuple[int, ...], list[float]]) -> float:
        history = fused[item[0]][1]
        return ranked(item) + alpha * lm.log_distribution(history)[lm.eos]

    return list(max(beams.items(), key=finished)[0])


def lm_beam_ids(
    log_probs: np.ndarray,
    lengths: Sequence[int],
    charset: Charset,
    lm: CharLM,
    beam_width: int = 10,
    alpha: float = LM_WEIGHT,
    beta: float = LENGTH_BONUS,
) -> list[list[int]]:
    """Best class ids per sample of log_probs (B, T, C), reading the first lengths[b] frames of sample b."""
    if not alpha >= 0:
        raise ValueError(f"lm_weight must be >= 0, got {alpha}")
    symbols = lm_symbols(charset, lm)
    return [lm_prefix_beam_search(log_probs[b, :n], lm, symbols, beam_width, alpha, beta)
            for b, n in enumerate(lengths)]
