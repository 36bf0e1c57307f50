"""The decoders as they were before the batched search (crnn/decoding/lm_decode.py at b829900): the reference that the
tests hold the fast decoder to, text for text and confidence for confidence. Kept verbatim, one image at a time
in pure Python; do not "fix" it here: it defines the expected results.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from crnn.decoding.char_lm import CharLM
from crnn.charset import BLANK, Charset
from crnn.decoding.ctc_decode import _lexicon_ids, _predictions, _prepare
from crnn.decoding.lexicon import per_sample_lexicons
from crnn.decoding.lm_decode import LENGTH_BONUS, LM_WEIGHT, PRUNE_PROB, lm_symbols
from crnn.prediction import Prediction


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


def _viterbi_char_confidences(log_probs: np.ndarray, ids: Sequence[int]) -> tuple[float, ...]:
    """Per-character confidences of ``ids`` under its best alignment to log_probs (T, C).

    Characters get 0.0 when the text cannot be aligned to the frames at all.
    """
    num_chars = len(ids)
    if num_chars == 0:
        return ()
    frames = log_probs.shape[0]
    states = 2 * num_chars + 1
    extended = np.full(states, BLANK, dtype=np.int64)
    extended[1::2] = ids
    if frames == 0:
        return (0.0,) * num_chars
    emit = log_probs[:, extended]  # (T, S)
    # A state may be entered from two back only for a character differing from the previous
    # one: between equal characters the blank is mandatory.
    can_skip = np.zeros(states, dtype=bool)
    can_skip[3::2] = extended[3::2] != extended[1:-2:2]

    score = np.full(states, -np.inf)
    score[:2] = emit[0, :2]
    back = np.zeros((frames, states), dtype=np.int64)
    candidates = np.full((3, states), -np.inf)
    columns = np.arange(states)
    for t in range(1, frames):
        candidates[0] = score
        candidates[1, 1:] = score[:-1]
        candidates[2, 2:] = np.where(can_skip[2:], score[:-2], -np.inf)
        step = candidates.argmax(axis=0)
        score = candidates[step, columns] + emit[t]
        back[t] = step

    end = states - 1 if score[states - 1] >= score[states - 2] else states - 2
    if not np.isfinite(score[end]):
        return (0.0,) * num_chars
    state_path = np.empty(frames, dtype=np.int64)
    state = end
    for t in range(frames - 1, -1, -1):
        state_path[t] = state
        state -= back[t, state]

    on_char = state_path % 2 == 1
    frame_probs = np.exp(emit[np.arange(frames), state_path])
    confs = np.zeros(num_chars)
    np.maximum.at(confs, state_path[on_char] // 2, frame_probs[on_char])
    return tuple(float(c) for c in confs)


def _beam_total(item: tuple[tuple[int, ...], list[float]]) -> float:
    return item[1][0] + item[1][1]


def _prefix_beam_search(probs: np.ndarray, beam_width: int) -> list[int]:
    """Most probable labelling found by CTC prefix beam search (Hannun et al. 2014) on probs (T, C)."""
    # prefix -> [P(prefix, path ends in blank), P(prefix, path ends in its last char)]
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
                # Repeating the last character without a blank collapses into the same prefix;
                # always counted, even when that character was pruned from this frame.
                entry[1] += p_nb * row[last]
            for c in candidates:
                new = extended.setdefault(prefix + (c,), [0.0, 0.0])
                # After a repeated character only paths through a blank start a new one.
                new[1] += (p_b if c == last else total) * row[c]
        kept = heapq.nlargest(beam_width, extended.items(), key=_beam_total)
        # Renormalise so that long inputs cannot underflow; ranking is unaffected.
        norm = sum(p_b + p_nb for _, (p_b, p_nb) in kept) or 1.0
        beams = {prefix: [p_b / norm, p_nb / norm] for prefix, (p_b, p_nb) in kept}
    best = max(beams.items(), key=_beam_total)[0]
    return list(best)



def reference_decode(
    log_probs: np.ndarray,
    lengths: Sequence[int],
    charset: Charset,
    decoder: str,
    lm: CharLM | None = None,
    beam_width: int = 10,
    alpha: float = LM_WEIGHT,
    lexicon=None,
) -> list[Prediction]:
    """What crnn.decoding.ctc_decode.decode gave for ``decoder`` "beam" or "lm" (with ``lm``), with or without a lexicon."""
    lp, lens = _prepare(log_probs, lengths, charset)
    if decoder == "lm":
        id_seqs = lm_beam_ids(lp, lens, charset, lm, beam_width, alpha)
    else:
        probs = np.exp(lp)
        id_seqs = [_prefix_beam_search(probs[b, :n], beam_width) for b, n in enumerate(lens)]
    char_confs = [_viterbi_char_confidences(lp[b, :n], ids) for b, (n, ids) in enumerate(zip(lens, id_seqs))]
    flags = None
    if lexicon is not None:
        id_seqs, char_confs, flags = _lexicon_ids(lp, lens, charset, per_sample_lexicons(lexicon, len(lens)),
                                                  id_seqs, char_confs)
    return _predictions(lp, lens, charset, id_seqs, char_confs, flags)
