"""CTC decoding: greedy (best path), prefix beam search, LM fusion and lexicon-constrained decoding (the lexicons
themselves, their files and nearest-word search, are crnn.decoding.lexicon).

Every decoder returns :class:`~crnn.prediction.Prediction` objects whose confidences mean the
same thing whichever decoder produced them:

* ``confidence`` is P(text | image) = exp(:func:`sequence_log_likelihood`), the CTC probability
  of the chosen text summed over all of its alignments to the valid frames (clamped to [0, 1]).
  For an empty text this is the probability of the all-blank path.
* ``char_confidences`` has one value per character of the text: the highest per-frame
  probability of that character among the frames that the best (Viterbi) alignment of the text
  assigns to it. For greedy results the best path *is* that alignment, so it is read off the
  path directly; beam and lexicon results run an exact Viterbi pass over the chosen text.

All functions take ``log_probs`` of shape (B, T, C), log-softmax over C = ``charset.num_classes``
classes (class 0 is the blank), batch first, and ``lengths`` of shape (B,): the number of valid
frames of each sample. Frames at or beyond ``lengths[b]`` are padding and are never read. Both are
numpy arrays (or anything ``np.asarray`` takes, e.g. a CPU tensor): decoding is numpy only, so that the
torch and the ONNX Runtime backends share one decoder and the latter never imports torch.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from crnn.decoding import lm_decode
from crnn.decoding.char_lm import load_lm
from crnn.charset import BLANK, Charset
from crnn.decoding.lexicon import Lexicon, LexiconArg, per_sample_lexicons
from crnn.prediction import Prediction

DECODERS: tuple[str, ...] = ("greedy", "beam", "lm")
# What `crnn ocr`, `crnn eval`, the API and Recognizer.recognize use unless told: beam search with the character
# language model reads +3.5 points of IIIT5K and +6.8 of SVT at about half of greedy's speed, and no less of
# rendered non-words (docs/language_model.md). decode() itself, the primitive, stays greedy.
DEFAULT_DECODER: str = "lm"

# ---------------------------------------------------------------------------------------------
# Likelihoods
# ---------------------------------------------------------------------------------------------


def sequence_log_likelihood(
    log_probs: ArrayLike, lengths: ArrayLike, targets: Sequence[Sequence[int]]
) -> np.ndarray:
    """log P(targets[b] | first lengths[b] frames of b), shape (B,) float64, from log_probs (B, T, C).

    Targets are class indices without blanks; an empty target scores the all-blank path and a
    target that cannot fit in its frames scores -inf. The CTC forward algorithm (Graves et al. 2006)
    in log space, float64, vectorised over the batch.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    lens = np.asarray(lengths).astype(np.int64)
    _check_shapes(lp, lens)
    batch, frames, num_classes = lp.shape
    if len(targets) != batch:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch}")
    target_lens = np.array([len(t) for t in targets], dtype=np.int64)
    flat = [int(i) for target in targets for i in target]
    if any(not 0 < i < num_classes for i in flat):
        raise ValueError(f"target class indices must lie in 1..{num_classes - 1} (0 is the blank)")
    if batch == 0:
        return np.zeros(0)
    # Extended labels: blank, c1, blank, c2, ..., blank; shorter targets padded with unreachable states.
    states = 2 * int(target_lens.max()) + 1
    extended = np.zeros((batch, states), dtype=np.int64)
    for b, target in enumerate(targets):
        extended[b, 1 : 2 * len(target) : 2] = target
    valid = np.arange(states)[None, :] < (2 * target_lens + 1)[:, None]
    # A state may be entered from two back only for a character differing from the previous one.
    can_skip = np.zeros((batch, states), dtype=bool)
    can_skip[:, 3::2] = extended[:, 3::2] != extended[:, 1:-2:2]
    # emit[b, t, s] = log_probs[b, t, extended[b, s]], -inf on padding states
    emit = np.take_along_axis(lp, np.broadcast_to(extended[:, None, :], (batch, frames, states)), axis=2)
    emit = np.where(valid[:, None, :], emit, -np.inf)
    alpha = np.full((batch, states), -np.inf)
    if frames:
        alpha[:, :2] = emit[:, 0, :2]
    neg = np.full((batch, 2), -np.inf)
    with np.errstate(invalid="ignore"):
        for t in range(1, frames):
            one_back = np.concatenate([neg[:, :1], alpha[:, :-1]], axis=1)
            two_back = np.where(can_skip, np.concatenate([neg, alpha[:, :-2]], axis=1), -np.inf)
            step = np.logaddexp(np.logaddexp(alpha, one_back), two_back) + emit[:, t]
            # Samples whose frames have ended keep their alpha: later frames are padding.
            alpha = np.where((t < lens)[:, None], step, alpha)
    rows = np.arange(batch)
    last = 2 * target_lens
    result = np.logaddexp(alpha[rows, last], np.where(last > 0, alpha[rows, np.maximum(last - 1, 0)], -np.inf))
    # With no frames only the empty text is possible (probability 1).
    return np.where(lens == 0, np.where(target_lens == 0, 0.0, -np.inf), result)


def _check_shapes(log_probs: np.ndarray, lengths: np.ndarray) -> None:
    if log_probs.ndim != 3:
        raise ValueError(f"log_probs must have shape (B, T, C), got {tuple(log_probs.shape)}")
    batch, frames, _ = log_probs.shape
    if tuple(lengths.shape) != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if batch and (int(lengths.min()) < 0 or int(lengths.max()) > frames):
        raise ValueError(f"lengths must lie in 0..{frames}")


def _prepare(log_probs: ArrayLike, lengths: ArrayLike, charset: Charset) -> tuple[np.ndarray, list[int]]:
    """Validated (B, T, C) float64 copy of log_probs and the lengths as ints."""
    # float64 so that confidences of long texts do not lose precision and decoders agree exactly.
    lp = np.asarray(log_probs, dtype=np.float64)
    lens = np.asarray(lengths).astype(np.int64)
    _check_shapes(lp, lens)
    if lp.shape[2] != charset.num_classes:
        raise ValueError(f"log_probs has {lp.shape[2]} classes but the charset has {charset.num_classes}")
    return lp, [int(n) for n in lens.tolist()]


# ---------------------------------------------------------------------------------------------
# Alignments and character confidences
# ---------------------------------------------------------------------------------------------


def _collapse_path(path: np.ndarray, probs: np.ndarray) -> tuple[list[int], list[float]]:
    """Labels of a frame path (T,) after CTC collapsing, with the max prob of each label's run."""
    ids: list[int] = []
    confs: list[float] = []
    previous = BLANK
    for label, prob in zip(path.tolist(), probs.tolist()):
        if label != BLANK:
            if label == previous:
                confs[-1] = max(confs[-1], prob)
            else:
                ids.append(label)
                confs.append(prob)
        previous = label
    return ids, confs


def viterbi_states(log_probs: np.ndarray, ids: Sequence[int]) -> np.ndarray | None:
    """The best (Viterbi) CTC alignment of ``ids`` (at least one character) to log_probs (T, C), T >= 1: each frame's
    state (T,) in the extended label (blank, ids[0], blank, ids[1], ..., blank), odd states being the characters
    ids[state // 2]; None when the text cannot be aligned to the frames at all."""
    frames = log_probs.shape[0]
    states = 2 * len(ids) + 1
    extended = np.full(states, BLANK, dtype=np.int64)
    extended[1::2] = ids
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
        return None
    state_path = np.empty(frames, dtype=np.int64)
    state = end
    for t in range(frames - 1, -1, -1):
        state_path[t] = state
        state -= back[t, state]
    return state_path


def _viterbi_char_confidences(log_probs: np.ndarray, ids: Sequence[int]) -> tuple[float, ...]:
    """Per-character confidences of ``ids`` under its best alignment to log_probs (T, C).

    Characters get 0.0 when the text cannot be aligned to the frames at all.
    """
    num_chars = len(ids)
    if num_chars == 0:
        return ()
    if log_probs.shape[0] == 0:
        return (0.0,) * num_chars
    state_path = viterbi_states(log_probs, ids)
    if state_path is None:
        return (0.0,) * num_chars
    on_char = np.flatnonzero(state_path % 2 == 1)
    char_index = state_path[on_char] // 2
    frame_probs = np.exp(log_probs[on_char, np.asarray(ids, dtype=np.int64)[char_index]])
    confs = np.zeros(num_chars)
    np.maximum.at(confs, char_index, frame_probs)
    return tuple(float(c) for c in confs)


def _viterbi_batch_char_confidences(
    log_probs: np.ndarray, lengths: Sequence[int], id_seqs: Sequence[Sequence[int]]
) -> list[tuple[float, ...]]:
    """:func:`_viterbi_char_confidences` of each sample (log_probs (B, T, C), its first lengths[b] frames, text
    id_seqs[b]) in one pass over the frames for the whole batch: the same operations elementwise, so the same
    values, and the same tie-breaking (the first of stay, one back, two back)."""
    chars = np.array([len(ids) for ids in id_seqs], dtype=np.int64)
    lens = np.asarray(lengths, dtype=np.int64)
    out: list[tuple[float, ...]] = [() if n == 0 else (0.0,) * int(n) for n in chars]
    todo = np.flatnonzero((chars > 0) & (lens > 0))
    if not len(todo):
        return out
    todo = todo[np.argsort(-lens[todo], kind="stable")]  # longest first: the samples still reading lead
    lens, chars = lens[todo], chars[todo]
    count, states, frames = len(todo), 2 * int(chars.max()) + 1, int(lens[0])
    extended = np.zeros((count, states), dtype=np.int64)
    for row, b in enumerate(todo.tolist()):
        extended[row, 1 : 2 * len(id_seqs[b]) : 2] = id_seqs[b]
    own = 2 * chars + 1  # each sample's states; those past them are -inf and never reached
    emit = np.take_along_axis(log_probs[todo, :frames],
                              np.broadcast_to(extended[:, None, :], (count, frames, states)), axis=2)
    emit = np.where((np.arange(states)[None, :] < own[:, None])[:, None, :], emit, -np.inf)
    skip = np.zeros((count, states), dtype=bool)
    skip[:, 3::2] = extended[:, 3::2] != extended[:, 1:-2:2]
    score = np.full((count, states), -np.inf)
    score[:, :2] = emit[:, 0, :2]
    back = np.zeros((count, frames, states), dtype=np.int8)
    one = np.full((count, states), -np.inf)
    two = np.full((count, states), -np.inf)
    reading = np.searchsorted(-lens, -np.arange(frames), side="left")  # samples with more than t frames
    for t in range(1, frames):
        a = int(reading[t])
        s = score[:a]
        one[:a, 1:] = s[:, :-1]
        two[:a, 2:] = np.where(skip[:a, 2:], s[:, :-2], -np.inf)
        best = np.maximum(s, one[:a])  # the value argmax would pick: the first of equal ones is the same float
        step = (one[:a] > s).view(np.int8)
        jump = two[:a] > best
        step[jump] = 2
        back[:a, t] = step
        score[:a] = np.maximum(best, two[:a]) + emit[:a, t]
    rows = np.arange(count)
    last = own - 1
    end = np.where(score[rows, last] >= score[rows, last - 1], last, last - 1)
    finite = np.isfinite(score[rows, end])
    state = end.copy()
    path = np.full((count, frames), -1, dtype=np.int64)
    for t in range(frames - 1, -1, -1):
        a = int(reading[t])
        path[:a, t] = state[:a]
        state[:a] -= back[rows[:a], t, state[:a]]
    on_char = (path % 2 == 1) & (path >= 0)
    frame_probs = np.exp(np.take_along_axis(emit, np.maximum(path, 0)[:, :, None], axis=2)[:, :, 0])
    confs = np.zeros((count, (states - 1) // 2))
    r, t = np.nonzero(on_char)
    np.maximum.at(confs, (r, path[r, t] // 2), frame_probs[r, t])
    for row, b in enumerate(todo.tolist()):
        if finite[row]:
            out[b] = tuple(float(c) for c in confs[row, : chars[row]])
    return out


# Two classes of a frame closer than this (in log-probability) count as tied for the best path: far above the
# rounding of a path's sum of log-probabilities (<= 1e-13 for sums of a few hundred terms), so a frame that
# clears it has a best class whose path no other alignment can tie.
_CLEAR_BEST = 1e-9


def _text_char_confidences(
    log_probs: np.ndarray, lengths: list[int], id_seqs: list[list[int]]
) -> list[tuple[float, ...]]:
    """:func:`_viterbi_char_confidences` of each chosen text, without the Viterbi pass where it is the greedy one.

    When a text is the best path's and every frame's best class beats the others by more than _CLEAR_BEST, the best
    path is the unique best alignment of that text, also in floating point (every other path's sum of the same
    log-probabilities, added frame after frame, is lower by more than its rounding); the Viterbi pass, whose
    back-pointers can only follow it, gives the best path's characters and frames, so the greedy confidences are
    the same floats (the same exp of the same log-probabilities, the same max per character). Other texts (about
    one in twenty with the language model) go through the batched Viterbi pass."""
    greedy, confs = _greedy_ids(log_probs, lengths)
    frames = log_probs.shape[1]
    best = log_probs.max(axis=2, keepdims=True)
    # Frames past a sample's length are padding: they never count.
    near = np.count_nonzero(log_probs >= best - _CLEAR_BEST, axis=2) > 1
    clear = ~(near & (np.arange(frames)[None, :] < np.asarray(lengths)[:, None])).any(axis=1)
    out: list[tuple[float, ...] | None] = [c if ok and ids == g else None
                                           for ids, g, c, ok in zip(id_seqs, greedy, confs, clear.tolist())]
    rest = [b for b, c in enumerate(out) if c is None]
    if rest:
        found = _viterbi_batch_char_confidences(log_probs[rest], [lengths[b] for b in rest], [id_seqs[b] for b in rest])
        for b, c in zip(rest, found):
            out[b] = c
    return out  # type: ignore[return-value]


def _predictions(
    log_probs: np.ndarray,
    lengths: list[int],
    charset: Charset,
    id_seqs: list[list[int]],
    char_confs: list[tuple[float, ...]],
    in_lexicon: list[bool | None] | None = None,
) -> list[Prediction]:
    """Predictions for chosen label sequences, with confidence = exp(sequence log-likelihood)."""
    if not id_seqs:
        return []
    log_likelihoods = sequence_log_likelihood(log_probs, np.array(lengths, dtype=np.int64), id_seqs)
    confidences = np.clip(np.exp(log_likelihoods), 0.0, 1.0).tolist()
    flags = in_lexicon if in_lexicon is not None else [None] * len(id_seqs)
    return [
        Prediction(charset.decode(ids), float(conf), tuple(float(c) for c in confs), flag)
        for ids, conf, confs, flag in zip(id_seqs, confidences, char_confs, flags)
    ]


# ---------------------------------------------------------------------------------------------
# Greedy
# ---------------------------------------------------------------------------------------------


def _greedy_ids(
    log_probs: np.ndarray, lengths: list[int]
) -> tuple[list[list[int]], list[tuple[float, ...]]]:
    """Collapsed best-path labels of each sample and their char confidences."""
    best_path_np = log_probs.argmax(axis=2)
    best_probs = np.exp(np.take_along_axis(log_probs, best_path_np[:, :, None], axis=2)[:, :, 0])
    id_seqs: list[list[int]] = []
    char_confs: list[tuple[float, ...]] = []
    for b, n in enumerate(lengths):
        ids, confs = _collapse_path(best_path_np[b, :n], best_probs[b, :n])
        id_seqs.append(ids)
        char_confs.append(tuple(confs))
    return id_seqs, char_confs


def greedy_decode(
    log_probs: ArrayLike, lengths: ArrayLike, charset: Charset
) -> list[Prediction]:
    """Best-path decoding of log_probs (B, T, C) over lengths (B,) frames: argmax, collapse, drop blanks."""
    lp, lens = _prepare(log_probs, lengths, charset)
    id_seqs, char_confs = _greedy_ids(lp, lens)
    return _predictions(lp, lens, charset, id_seqs, char_confs)


# ---------------------------------------------------------------------------------------------
# Prefix beam search
# ---------------------------------------------------------------------------------------------


def _beam_ids(
    log_probs: np.ndarray, lengths: list[int], beam_width: int
) -> tuple[list[list[int]], list[tuple[float, ...]]]:
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    id_seqs = lm_decode.prefix_beam_ids(log_probs, lengths, beam_width)
    return id_seqs, _text_char_confidences(log_probs, lengths, id_seqs)


def beam_search_decode(
    log_probs: ArrayLike, lengths: ArrayLike, charset: Charset, beam_width: int = 10
) -> list[Prediction]:
    """CTC prefix beam search over log_probs (B, T, C) and lengths (B,); returns the most probable labelling found."""
    lp, lens = _prepare(log_probs, lengths, charset)
    id_seqs, char_confs = _beam_ids(lp, lens, beam_width)
    return _predictions(lp, lens, charset, id_seqs, char_confs)


# ---------------------------------------------------------------------------------------------
# Lexicon scoring
# ---------------------------------------------------------------------------------------------


def _lexicon_ids(
    log_probs: np.ndarray,
    lengths: list[int],
    charset: Charset,
    lexicons: list[Lexicon | None],
    id_seqs: list[list[int]],
    char_confs: list[tuple[float, ...]],
    max_distance: int | None = None,
) -> tuple[list[list[int]], list[tuple[float, ...]], list[bool | None]]:
    """Each sample's plain reading (id_seqs) replaced by its lexicon's likeliest candidate word.

    Returns the new ids, char confidences and per-sample ``in_lexicon`` flags: None without a lexicon,
    False when a large lexicon had no word near the reading (which is then kept), True otherwise.
    """
    if max_distance is not None and max_distance < 0:
        raise ValueError(f"max_distance must be non-negative, got {max_distance}")
    if any(lex is not None and lex.charset != charset for lex in lexicons):
        raise ValueError("the lexicon was built for a different charset")
    log_np = log_probs
    out_ids, out_confs = list(id_seqs), list(char_confs)
    flags: list[bool | None] = [None] * len(lexicons)
    fold = _case_fold_index(charset)
    for b, lex in enumerate(lexicons):
        if lex is None:
            continue
        n = lengths[b]
        reading = charset.decode(id_seqs[b])
        # Running text puts punctuation around words ("Hurdle.", "(telling)"): a large list is matched on the
        # reading without it, and each word competes with and without it, so the likelihood decides whether
        # the punctuation is really there. A small list is closed: its words come back as listed.
        prefix, core, suffix = ("", reading, "") if lex.small else _split_punctuation(reading)
        words = lex.candidates([core], max_distance)
        words_kept: list[list[str]] = []  # the spellings of each candidate, with and without the punctuation
        folded_kept: list[str] = []  # the case-folded word each of them spells
        for folded in words[0]:
            variants = lex.variants(folded, core)
            if not variants:
                continue
            if prefix or suffix:
                words_kept.append([prefix + v + suffix for v in variants])
                folded_kept.append(folded)
            words_kept.append(variants)
            folded_kept.append(folded)
        if not words_kept:
            flags[b] = False  # nothing near: the plain reading stands, flagged
            continue
        frames = log_probs[b : b + 1, :n]
        # Which word: P(word | image) whatever its case, i.e. CTC over the case-merged classes (each lower-case
        # class holds the probability of both cases). Scoring case variants one by one instead would split the
        # probability of letters whose cases look alike (o/O, s/S, c/C, ...) and favour words without them.
        folded_targets = [fold[charset.encode(v[0])].tolist() for v in words_kept]
        folded_reading = fold[id_seqs[b]].tolist()
        merged = _merge_cases(frames, fold)
        # Every candidate (and the reading) against the same frames: one forward pass over a broadcast batch.
        scores = sequence_log_likelihood(
            np.broadcast_to(merged, (len(folded_targets) + 1, *merged.shape[1:])),
            np.full(len(folded_targets) + 1, n), [*folded_targets, folded_reading],
        )
        if lex.small:
            # A closed list: each of its words equally likely a priori, where the network's posterior carries
            # the prior of its training text. Re-weighted by new prior / training prior (P_lm, as in
            # _word_beats_reading), a word's score is log P(word | image) - log P_lm(word): without it, an image
            # the network cannot read goes to the short, common words its training text favoured.
            scores[:-1] -= np.array([lex.log_prior(f) for f in folded_kept])
        k = int(scores[:-1].argmax())  # ties: the nearer word, as candidates are ordered
        # A large lexicon may not hold the word at all: keep a reading that is no list word when it explains the
        # image better (see _word_beats_reading). A small one is a closed list (a benchmark's per-image lexicon).
        if not lex.small and core.lower() not in lex.spellings and not _word_beats_reading(
            float(scores[k]), float(scores[-1]), lex.log_prior(folded_kept[k]), len(lex.folded)
        ):
            flags[b] = False  # the reading is likelier a word outside the list: it stands, flagged
            continue
        variants = words_kept[k]
        # Which spelling: the case variant (or, with case="keep", the lexicon's spelling) the image favours.
        targets = [charset.encode(v) for v in variants]
        case_scores = sequence_log_likelihood(
            np.broadcast_to(frames, (len(targets), *frames.shape[1:])), np.full(len(targets), n), targets
        )
        best = targets[int(case_scores.argmax())]
        out_ids[b] = best
        out_confs[b] = _viterbi_char_confidences(log_np[b, :n], best)
        flags[b] = True
    return out_ids, out_confs, flags


def _split_punctuation(reading: str) -> tuple[str, str, str]:
    """``reading`` as (leading ASCII punctuation, the rest, trailing punctuation); all punctuation stays whole."""
    core = reading.strip(string.punctuation)
    if not core:
        return "", reading, ""
    start = reading.index(core)
    return reading[:start], core, reading[start + len(core):]


def _word_beats_reading(word_score: float, reading_score: float, word_prior: float, words: int) -> bool:
    """Whether a large lexicon's best word is the likelier text of the image than its plain reading (a string
    outside the lexicon): a maximum a posteriori choice under the prior that the lexicon adds.

    Scores are case-folded CTC log-likelihoods, log P(text | image). The network's output already carries a
    prior over texts: the one it was trained on, the renderer's text, which the shipped character language
    model estimates (``word_prior`` = log P_lm(word), case-folded, end of text included). A lexicon says "half
    of the texts are words of this list, each equally likely", so the prior becomes the mixture
    1/2 x uniform over the list's ``words`` words + 1/2 x the training prior. Re-weighting the network's
    posterior by new prior / training prior, a string outside the list gets 1/2 and a list word
    1/2 x (1 + 1 / (words x P_lm(word))), so the word wins when
    log P(word | image) + log(1 + 1 / (words x P_lm(word))) >= log P(reading | image).
    A rare list word (one the network's training hardly favoured) gets a large bonus, a common one little:
    the network already expects it. No constant here is tuned: the rule follows from the two priors.
    Why not a uniform prior over strings outside the list (the first version): it made every unlisted string
    of n characters 37^-n likely, so a name read right ("Cinerama") became a list word a few edits away
    ("cinema") whose likelihood was a tiny fraction of the reading's.
    """
    return word_score + float(np.logaddexp(0.0, -math.log(words) - word_prior)) >= reading_score


def _case_fold_index(charset: Charset) -> np.ndarray:
    """(C,) class -> class of its lower-case form (itself when it has none in the charset); blank -> blank."""
    index = np.arange(charset.num_classes)
    for i, char in enumerate(charset.chars, 1):
        lower = char.lower()
        if lower != char and len(lower) == 1 and lower in charset:
            index[i] = charset.encode(lower)[0]
    return index


def _merge_cases(log_probs: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """log_probs (1, T, C) with each class's probability moved onto its lower-case class (the upper ones -> -inf)."""
    probs = np.zeros_like(log_probs)
    np.add.at(probs, (slice(None), slice(None), fold), np.exp(log_probs))
    with np.errstate(divide="ignore"):
        return np.log(probs)


def lexicon_decode(
    log_probs: ArrayLike,
    lengths: ArrayLike,
    charset: Charset,
    lexicon: LexiconArg,
    max_distance: int | None = None,
) -> list[Prediction]:
    """Lexicon-constrained decoding of log_probs (B, T, C), lengths (B,): the likeliest lexicon word per sample.

    As in the CRNN paper, candidates are scored by CTC likelihood P(word | image). A small lexicon
    (at most SMALL_LEXICON_WORDS words) scores every word; a large one only the words within
    ``max_distance`` edits of the greedy text, case-folded (default: :func:`distance_bound` of its length;
    at most LEXICON_MAX_CANDIDATES, nearest first), and keeps the greedy text, flagged
    ``in_lexicon=False``, when none is that near. ``lexicon`` may be one per sample.
    """
    lp, lens = _prepare(log_probs, lengths, charset)
    greedy, confs = _greedy_ids(lp, lens)
    lexicons = per_sample_lexicons(lexicon, len(lens))
    id_seqs, char_confs, flags = _lexicon_ids(lp, lens, charset, lexicons, greedy, confs, max_distance)
    return _predictions(lp, lens, charset, id_seqs, char_confs, flags)


# ---------------------------------------------------------------------------------------------
# Dispatcher
# ---------------------------------------------------------------------------------------------


def decode(
    log_probs: ArrayLike,
    lengths: ArrayLike,
    charset: Charset,
    decoder: str = "greedy",
    beam_width: int = 10,
    lexicon: LexiconArg = None,
    lm_weight: float | None = None,
) -> list[Prediction]:
    """Decode log_probs (B, T, C) over lengths (B,) with ``decoder`` ("greedy", "beam" or "lm": beam search with the
    shipped character language model, weighted ``lm_weight``, default ``lm_decode.LM_WEIGHT``; docs/language_model.md),
    constrained to ``lexicon`` if given.

    With a lexicon (one, or one per sample), the decoder's text is the query for :func:`lexicon_decode`'s
    candidate search.
    """
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of: {', '.join(DECODERS)}")
    lp, lens = _prepare(log_probs, lengths, charset)
    if decoder == "greedy":
        id_seqs, char_confs = _greedy_ids(lp, lens)
    elif decoder == "lm":
        alpha = lm_decode.LM_WEIGHT if lm_weight is None else lm_weight
        id_seqs = lm_decode.lm_beam_ids(lp, lens, charset, load_lm(), beam_width, alpha)
        char_confs = _text_char_confidences(lp, lens, id_seqs)
    else:
        id_seqs, char_confs = _beam_ids(lp, lens, beam_width)
    flags: list[bool | None] | None = None
    if lexicon is not None:
        lexicons = per_sample_lexicons(lexicon, len(lens))
        id_seqs, char_confs, flags = _lexicon_ids(lp, lens, charset, lexicons, id_seqs, char_confs)
    return _predictions(lp, lens, charset, id_seqs, char_confs, flags)
