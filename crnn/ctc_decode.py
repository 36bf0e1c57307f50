"""CTC decoding: greedy (best path), prefix beam search and lexicon-constrained decoding.

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
frames of each sample. Frames at or beyond ``lengths[b]`` are padding and are never read.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from crnn.charset import BLANK, Charset
from crnn.prediction import Prediction

DECODERS: tuple[str, ...] = ("greedy", "beam")

# Beam search only expands characters at least this probable in a frame (and at most
# ``beam_width`` of them): lower ones cannot change which prefixes survive in practice, and
# skipping them keeps the pure-Python inner loop small.
BEAM_PRUNE_PROB: float = 1e-4

# Lexicon decoding scores at most this many nearest words; with short queries thousands of
# words can lie within the edit-distance radius and the closest ones are the plausible ones.
LEXICON_MAX_CANDIDATES: int = 64
# When no word lies within ``max_distance``, this many nearest words (normalised distance) compete.
LEXICON_FALLBACK_CANDIDATES: int = 5


# ---------------------------------------------------------------------------------------------
# Likelihoods
# ---------------------------------------------------------------------------------------------


def sequence_log_likelihood(
    log_probs: torch.Tensor, lengths: torch.Tensor, targets: Sequence[Sequence[int]]
) -> torch.Tensor:
    """log P(targets[b] | first lengths[b] frames of b), shape (B,), from log_probs (B, T, C).

    Targets are class indices without blanks; an empty target scores the all-blank path and a
    target that cannot fit in its frames scores -inf.
    """
    _check_shapes(log_probs, lengths)
    batch, _, num_classes = log_probs.shape
    if len(targets) != batch:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch}")
    flat = [int(i) for target in targets for i in target]
    if any(not 0 < i < num_classes for i in flat):
        raise ValueError(f"target class indices must lie in 1..{num_classes - 1} (0 is the blank)")
    device = log_probs.device
    if log_probs.shape[1] == 0:
        # ctc_loss rejects empty inputs; with no frames only the empty text is possible.
        empty = torch.tensor([len(t) == 0 for t in targets], device=device)
        return torch.where(empty, 0.0, -torch.inf).to(log_probs.dtype)
    nll = F.ctc_loss(
        log_probs.transpose(0, 1),
        torch.tensor(flat, dtype=torch.long, device=device),
        torch.as_tensor(lengths, dtype=torch.long).to(device),
        torch.tensor([len(t) for t in targets], dtype=torch.long, device=device),
        blank=BLANK,
        reduction="none",
        zero_infinity=False,
    )
    return -nll


def _check_shapes(log_probs: torch.Tensor, lengths: torch.Tensor) -> None:
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must have shape (B, T, C), got {tuple(log_probs.shape)}")
    batch, frames, _ = log_probs.shape
    if tuple(lengths.shape) != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if batch and (int(lengths.min()) < 0 or int(lengths.max()) > frames):
        raise ValueError(f"lengths must lie in 0..{frames}")


def _prepare(
    log_probs: torch.Tensor, lengths: torch.Tensor, charset: Charset
) -> tuple[torch.Tensor, list[int]]:
    """Validated (B, T, C) float64 CPU copy of log_probs and the lengths as ints."""
    _check_shapes(log_probs, lengths)
    if log_probs.shape[2] != charset.num_classes:
        raise ValueError(
            f"log_probs has {log_probs.shape[2]} classes but the charset has {charset.num_classes}"
        )
    # float64 so that confidences of long texts do not lose precision and decoders agree exactly.
    return log_probs.detach().to("cpu", torch.float64), [int(n) for n in lengths.tolist()]


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


def _predictions(
    log_probs: torch.Tensor,
    lengths: list[int],
    charset: Charset,
    id_seqs: list[list[int]],
    char_confs: list[tuple[float, ...]],
) -> list[Prediction]:
    """Predictions for chosen label sequences, with confidence = exp(sequence log-likelihood)."""
    if not id_seqs:
        return []
    log_likelihoods = sequence_log_likelihood(log_probs, torch.tensor(lengths), id_seqs)
    confidences = log_likelihoods.exp().clamp(0.0, 1.0).tolist()
    return [
        Prediction(charset.decode(ids), float(conf), tuple(float(c) for c in confs))
        for ids, conf, confs in zip(id_seqs, confidences, char_confs)
    ]


# ---------------------------------------------------------------------------------------------
# Greedy
# ---------------------------------------------------------------------------------------------


def _greedy_ids(
    log_probs: torch.Tensor, lengths: list[int]
) -> tuple[list[list[int]], list[tuple[float, ...]]]:
    """Collapsed best-path labels of each sample and their char confidences."""
    best_log_probs, best_path = log_probs.max(dim=2)
    best_probs = best_log_probs.exp().numpy()
    best_path_np = best_path.numpy()
    id_seqs: list[list[int]] = []
    char_confs: list[tuple[float, ...]] = []
    for b, n in enumerate(lengths):
        ids, confs = _collapse_path(best_path_np[b, :n], best_probs[b, :n])
        id_seqs.append(ids)
        char_confs.append(tuple(confs))
    return id_seqs, char_confs


def greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, charset: Charset
) -> list[Prediction]:
    """Best-path decoding of log_probs (B, T, C) over lengths (B,) frames: argmax, collapse, drop blanks."""
    lp, lens = _prepare(log_probs, lengths, charset)
    id_seqs, char_confs = _greedy_ids(lp, lens)
    return _predictions(lp, lens, charset, id_seqs, char_confs)


# ---------------------------------------------------------------------------------------------
# Prefix beam search
# ---------------------------------------------------------------------------------------------


def _frame_candidates(probs: np.ndarray, beam_width: int) -> list[list[int]]:
    """For each frame of probs (T, C), the non-blank classes worth expanding."""
    if probs.shape[0] == 0:
        return []
    k = min(beam_width, probs.shape[1] - 1)
    top = np.argsort(-probs[:, 1:], axis=1, kind="stable")[:, :k] + 1
    keep = np.take_along_axis(probs, top, axis=1) >= BEAM_PRUNE_PROB
    return [row[mask].tolist() for row, mask in zip(top, keep)]


def _beam_total(item: tuple[tuple[int, ...], list[float]]) -> float:
    return item[1][0] + item[1][1]


def _prefix_beam_search(probs: np.ndarray, beam_width: int) -> list[int]:
    """Most probable labelling found by CTC prefix beam search (Hannun et al. 2014) on probs (T, C)."""
    # prefix -> [P(prefix, path ends in blank), P(prefix, path ends in its last char)]
    beams: dict[tuple[int, ...], list[float]] = {(): [1.0, 0.0]}
    for row, candidates in zip(probs.tolist(), _frame_candidates(probs, beam_width)):
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


def _beam_ids(
    log_probs: torch.Tensor, lengths: list[int], beam_width: int
) -> tuple[list[list[int]], list[tuple[float, ...]]]:
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    probs = log_probs.exp().numpy()
    log_np = log_probs.numpy()
    id_seqs = [_prefix_beam_search(probs[b, :n], beam_width) for b, n in enumerate(lengths)]
    char_confs = [
        _viterbi_char_confidences(log_np[b, :n], ids)
        for b, (n, ids) in enumerate(zip(lengths, id_seqs))
    ]
    return id_seqs, char_confs


def beam_search_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, charset: Charset, beam_width: int = 10
) -> list[Prediction]:
    """CTC prefix beam search over log_probs (B, T, C) and lengths (B,); returns the most probable labelling found."""
    lp, lens = _prepare(log_probs, lengths, charset)
    id_seqs, char_confs = _beam_ids(lp, lens, beam_width)
    return _predictions(lp, lens, charset, id_seqs, char_confs)


# ---------------------------------------------------------------------------------------------
# Lexicon
# ---------------------------------------------------------------------------------------------


class Lexicon:
    """A list of allowed words, deduplicated; words with characters outside the charset are dropped.

    Words are matched and scored exactly as written (case-sensitive): add case variants to the
    lexicon if they should be allowed.
    """

    def __init__(self, words: Iterable[str], charset: Charset) -> None:
        kept: dict[str, None] = {}
        skipped = 0
        for word in words:
            if not word:
                continue
            if charset.supports(word):
                kept[word] = None
            else:
                skipped += 1
        if not kept:
            raise ValueError(
                f"lexicon has no usable words ({skipped} skipped for characters outside the charset)"
            )
        self.charset = charset
        self.words: list[str] = list(kept)
        self.skipped = skipped

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], charset: Charset) -> Lexicon:
        """A lexicon read from a UTF-8 text file with one word per line (blank lines skipped)."""
        # utf-8-sig: tolerate the byte-order mark some editors write.
        with open(path, encoding="utf-8-sig") as f:
            return cls((line.strip() for line in f), charset)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.words

    def __repr__(self) -> str:
        return f"Lexicon({len(self.words)} words, {self.skipped} skipped)"

    def candidates(self, queries: Sequence[str], max_distance: int) -> list[list[str]]:
        """For each query, the words within Levenshtein ``max_distance`` (nearest first), else the nearest few."""
        if not queries:
            return []
        # One cdist call for the whole batch: rapidfuzz vectorises it, several times faster
        # than a process.extract per query. Distances above the cutoff come back as cutoff + 1.
        distances = process.cdist(
            list(queries),
            self.words,
            scorer=Levenshtein.distance,
            score_cutoff=max_distance,
            dtype=np.int32,
        )
        result = []
        for query, row in zip(queries, distances):
            near = np.flatnonzero(row <= max_distance)
            # Stable sort: equally near words keep the lexicon's order.
            near = near[np.argsort(row[near], kind="stable")][:LEXICON_MAX_CANDIDATES]
            if near.size:
                result.append([self.words[i] for i in near.tolist()])
            else:
                nearest = process.extract(
                    query,
                    self.words,
                    scorer=Levenshtein.normalized_distance,
                    limit=LEXICON_FALLBACK_CANDIDATES,
                )
                result.append([word for word, _, _ in nearest])
        return result


def _lexicon_ids(
    log_probs: torch.Tensor,
    lengths: list[int],
    charset: Charset,
    lexicon: Lexicon,
    queries: list[str],
    max_distance: int,
) -> tuple[list[list[int]], list[tuple[float, ...]]]:
    """For each sample, the lexicon word near its query text with the highest CTC likelihood."""
    if max_distance < 0:
        raise ValueError(f"max_distance must be non-negative, got {max_distance}")
    if lexicon.charset != charset:
        raise ValueError("the lexicon was built for a different charset")
    log_np = log_probs.numpy()
    id_seqs: list[list[int]] = []
    char_confs: list[tuple[float, ...]] = []
    for b, (n, words) in enumerate(zip(lengths, lexicon.candidates(queries, max_distance))):
        targets = [charset.encode(w) for w in words]
        # One sample's frames repeated for every candidate, scored in a single ctc_loss call.
        # (At least one frame is kept because ctc_loss rejects empty inputs; lengths still apply.)
        sample = log_probs[b : b + 1, : max(n, 1)].expand(len(words), -1, -1)
        scores = sequence_log_likelihood(sample, torch.full((len(words),), n), targets)
        best = targets[int(scores.argmax())]  # ties: the nearer word, as candidates are ordered
        id_seqs.append(best)
        char_confs.append(_viterbi_char_confidences(log_np[b, :n], best))
    return id_seqs, char_confs


def as_lexicon(lexicon: Lexicon | Iterable[str] | None, charset: Charset) -> Lexicon | None:
    """``lexicon`` as a Lexicon for ``charset`` (a word iterable is built into one; None stays None)."""
    if lexicon is None or isinstance(lexicon, Lexicon):
        return lexicon
    return Lexicon(lexicon, charset)


def lexicon_decode(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    charset: Charset,
    lexicon: Lexicon,
    max_distance: int = 3,
) -> list[Prediction]:
    """Lexicon-constrained decoding of log_probs (B, T, C), lengths (B,): the most likely word near the greedy text.

    As in the CRNN paper: candidates are the lexicon words within Levenshtein distance
    ``max_distance`` of the greedy result (at most LEXICON_MAX_CANDIDATES, nearest first; if none,
    the LEXICON_FALLBACK_CANDIDATES nearest by normalised distance) and the one of highest CTC
    likelihood wins.
    """
    lp, lens = _prepare(log_probs, lengths, charset)
    greedy, _ = _greedy_ids(lp, lens)
    queries = [charset.decode(ids) for ids in greedy]
    id_seqs, char_confs = _lexicon_ids(lp, lens, charset, lexicon, queries, max_distance)
    return _predictions(lp, lens, charset, id_seqs, char_confs)


# ---------------------------------------------------------------------------------------------
# Dispatcher
# ---------------------------------------------------------------------------------------------


def decode(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    charset: Charset,
    decoder: str = "greedy",
    beam_width: int = 10,
    lexicon: Lexicon | None = None,
) -> list[Prediction]:
    """Decode log_probs (B, T, C) over lengths (B,) with ``decoder`` ("greedy" or "beam"), constrained to ``lexicon`` if given.

    With a lexicon, the decoder's text is the query for :func:`lexicon_decode`'s candidate search.
    """
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of: {', '.join(DECODERS)}")
    lp, lens = _prepare(log_probs, lengths, charset)
    if decoder == "greedy":
        id_seqs, char_confs = _greedy_ids(lp, lens)
    else:
        id_seqs, char_confs = _beam_ids(lp, lens, beam_width)
    if lexicon is not None:
        queries = [charset.decode(ids) for ids in id_seqs]
        id_seqs, char_confs = _lexicon_ids(lp, lens, charset, lexicon, queries, max_distance=3)
    return _predictions(lp, lens, charset, id_seqs, char_confs)
