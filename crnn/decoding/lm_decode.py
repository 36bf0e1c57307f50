"""CTC prefix beam search with shallow fusion of a character language model; numpy only, no torch.

A prefix's score is ``log P_ctc(prefix) + alpha * log P_lm(prefix) + beta * len(prefix)``, and a finished
text's also counts ``alpha * log P_lm(end | prefix)``. Prefixes keep the case the model reads (``Hello`` and
``hello`` are different beams with the same language-model score, since the model sees folded text), so the
image decides the case and the language model only which letters. Without a language model (``lm=None``) it is
the plain prefix beam search (Hannun et al. 2014) that ``crnn.decoding.ctc_decode``'s ``beam`` decoder runs.

The search runs on a whole batch at once: one pass of numpy array operations per frame over every image's beams
and candidate characters (the images sorted by length, so that the ones still reading are a leading slice),
instead of a Python loop per image, frame, beam and character. It is the same algorithm, step for step, as the
per-image loop it replaced (kept as the reference in tests/reference_lm_decode.py): the same candidates, the
same sums in an order that gives the same floats, the same ties (the earlier-inserted prefix first), so it reads
the same texts (tests pin it on hard cases; on IIIT5K and SVT every text is the same).

Only the chosen class ids come back: confidences are P(text | image), computed by the caller from the CTC
outputs alone (``crnn.decoding.ctc_decode``), never mixed with the language model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crnn.decoding.char_lm import CharLM
from crnn.charset import BLANK, Charset

# The shipped model's weights, chosen on 2,000 rendered words of the default text mix (seed 4242, never a
# benchmark) by training/tune_lm.py; docs/language_model.md has the grid.
LM_WEIGHT: float = 0.35
LENGTH_BONUS: float = 1.0
# Beam search only expands characters at least this probable in a frame (and at most ``beam_width`` of them):
# lower ones cannot change which prefixes survive in practice, and skipping them keeps the arrays small.
PRUNE_PROB: float = 1e-4


def lm_symbols(charset: Charset, lm: CharLM) -> list[int]:
    """For each class of ``charset`` (index 0, the blank, included), its language-model symbol id (blank -> 0)."""
    return [0, *(lm.symbol(c) for c in charset.chars)]


def frame_candidates(
    log_probs: np.ndarray, first: np.ndarray, lengths: np.ndarray, order: np.ndarray, beam_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The non-blank classes worth expanding in each frame of log_probs (B, T, C): the top ``beam_width`` at
    least PRUNE_PROB likely (by exp of the log-probability, as the search reads it), likeliest first (ties: the
    lower class first), in frames first[b] .. lengths[b] - 1 of sample b.

    Returned step-major for the search, which reads image ``order[j]`` as its j-th and frame first + u at step u:
    (candidates (U, B, K) int64, 0 where a frame has fewer than K; counts (U, B)), K the largest count.
    """
    batch, frames, classes = log_probs.shape
    span = int((lengths - first).max())
    t = np.arange(frames)
    reading = (t >= first[:, None]) & (t < lengths[:, None])
    flat = np.flatnonzero((log_probs[:, :, 1:] >= _CANDIDATE_LOG) & reading[:, :, None])
    bt, c = np.divmod(flat, classes - 1)
    c += 1
    p = np.exp(np.take(log_probs, bt * classes + c))  # the same exp of the same values as over whole frames
    sure = p >= PRUNE_PROB
    bt, c, p = bt[sure], c[sure], p[sure]
    b, t = np.divmod(bt, frames)
    position = np.empty(batch, dtype=np.int64)
    position[order] = np.arange(batch)
    frame = (t - first[b]) * batch + position[b]  # step-major
    # Sorted by frame, then by probability (descending), then by class: a stable sort of -probs, per frame.
    by = _grouped_order(-p, frame, span * batch)
    frame, c = frame[by], c[by]
    counts = np.bincount(frame, minlength=span * batch)
    rank = np.arange(len(frame)) - (np.cumsum(counts) - counts)[frame]  # place in its frame
    keep = rank < beam_width
    counts = np.minimum(counts, beam_width).reshape(span, batch)
    k = int(counts.max()) if counts.size else 0
    candidates = np.zeros((span, batch, k), dtype=np.int64)
    candidates.reshape(span * batch, k)[frame[keep], rank[keep]] = c[keep]
    return candidates, counts


def _grouped_order(key: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
    """The order that sorts entries by ``group`` (ints in 0..groups-1), then by ``key``, then as they are: a stable
    sort by key, then a stable one by group (a radix sort where the groups fit 16 bits: about twice lexsort's speed)."""
    by_key = np.argsort(key, kind="stable")
    group = group[by_key]
    return by_key[np.argsort(group.astype(np.uint16) if groups <= 1 << 16 else group, kind="stable")]


# A frame can hold a candidate only where its log-probability reaches this: below it, exp() < PRUNE_PROB for sure
# (the margin covers exp's rounding). Found without exp() over whole frames; exp() decides for the rest.
_CANDIDATE_LOG = float(np.log(PRUNE_PROB)) - 1e-9
# What an upper bound on an extension's score adds for rounding (see _Search.step): scores are sums of a few
# logs and weights, each rounded to within ~1e-13 of the exact value; this is 10^6 times that.
_BOUND_MARGIN = 1e-7


def prefix_beam_ids(
    log_probs: np.ndarray,
    lengths: Sequence[int],
    beam_width: int = 10,
    lm: CharLM | None = None,
    symbols: Sequence[int] | None = None,
    alpha: float = LM_WEIGHT,
    beta: float = LENGTH_BONUS,
) -> list[list[int]]:
    """Class ids of the best text of each sample of log_probs (B, T, C) (log-softmax, class 0 the blank),
    reading the first lengths[b] frames of sample b: CTC prefix beam search, fused with ``lm`` if given
    (``symbols[c]``: class c's language-model symbol, see :func:`lm_symbols`)."""
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    log_probs = np.ascontiguousarray(log_probs, dtype=np.float64)
    if log_probs.ndim != 3:
        raise ValueError(f"log_probs must have shape (B, T, C), got {log_probs.shape}")
    if lm is not None and (symbols is None or log_probs.shape[2] != len(symbols)):
        raise ValueError(f"log_probs must have shape (B, T, {len(symbols or ())}), got {log_probs.shape}")
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    batch, frames, classes = log_probs.shape
    if batch == 0 or lengths.max() == 0:
        return [[] for _ in range(batch)]
    # Frames before an image's first candidate change nothing: the empty prefix alone, P = (p_blank / p_blank,
    # 0) = (1, 0) exactly (p_blank >= 0.99 there, as the other classes are each below PRUNE_PROB; a frame let in
    # by the margin of _CANDIDATE_LOG without a candidate is such a frame too). Each image starts at its first
    # candidate; images with more frames to go come first, so that at step u the images still reading are a
    # leading slice.
    maybe = (log_probs[:, :, 1:] >= _CANDIDATE_LOG).any(axis=2) & (np.arange(frames) < lengths[:, None])
    first = np.where(maybe.any(axis=1), maybe.argmax(axis=1), lengths)
    steps = lengths - first
    order = np.argsort(-steps, kind="stable")
    candidates, counts = frame_candidates(log_probs, first, lengths, order, beam_width)
    first, steps = first[order], steps[order]
    # Where each image's frame of step 0 starts in the flat log_probs; step u reads u * classes further.
    start = (order * frames + first) * classes
    search = _Search(batch, beam_width, int(steps[0]), log_probs.ravel(), classes, lm, symbols, alpha, beta)
    for u in range(int(steps[0])):
        m = int(np.searchsorted(-steps, -u, side="left"))  # images with steps > u
        k = int(counts[u, :m].max())
        search.step(m, start[:m] + u * classes, candidates[u, :m, :k], counts[u, :m])
    best = search.best()
    out: list[list[int]] = [[] for _ in range(batch)]
    for b, node in zip(order.tolist(), best.tolist()):
        out[b] = search.text(node)
    return out


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
    return prefix_beam_ids(log_probs, lengths, beam_width, lm, lm_symbols(charset, lm), alpha, beta)


class _Search:
    """The beams of a batch: W slots per image (flat: image j's slots are j*W .. j*W + W - 1, images in the
    order of prefix_beam_ids), each a prefix (a node of a trie per image) with P(prefix, path ends in blank),
    P(prefix, path ends in its last char), its language-model bonus ``alpha * log P_lm(prefix) + beta *
    len(prefix)`` and the row of the language model's table that holds P_lm(. | prefix) (its log is taken of the
    values read: the same floats as log_distribution's).

    Slots are kept in rank order, as the reference's dict of beams is, and entries of a frame are laid out in
    the order the reference inserts them (per beam: the beam itself, then its extensions by candidate), so that
    a stable sort breaks ties as its heapq.nlargest does. All lookups are 1-d (np.take on flat indices): 2-d
    fancy indexing cost more than the arithmetic.
    """

    def __init__(self, batch: int, width: int, frames: int, log_probs: np.ndarray, classes: int,
                 lm: CharLM | None, symbols: Sequence[int] | None, alpha: float, beta: float) -> None:
        self.width, self.classes, self.lm, self.alpha, self.beta = width, classes, lm, alpha, beta
        self.log_probs = log_probs  # flat (B * T * C)
        self.symbols = np.asarray(symbols if symbols is not None else np.zeros(classes), dtype=np.int64)
        # The tries: node j is image j's empty prefix; children[node * C + c] is the node of prefix + c (-1: none
        # yet). Sized for the nodes IIIT5K's images make (2.2 a frame): doubled when full.
        capacity = batch * (8 + 3 * frames)
        self.children = np.full(capacity * classes, -1, dtype=np.int32)
        self.parent = np.full(capacity, -1, dtype=np.int64)
        self.char = np.zeros(capacity, dtype=np.int64)
        self.nodes = batch
        # Each node's slot (stale for nodes that left the beams: checked against ``node``).
        self.slot_of = np.zeros(capacity, dtype=np.int64)
        size = batch * width
        self.alive = np.zeros(size, dtype=bool)
        self.alive[::width] = True
        # Dead slots point at node 0 (a root, never a child): lookups into them are masked anyway.
        self.node = np.zeros(size, dtype=np.int64)
        self.node[::width] = np.arange(batch)
        self.p_b = np.zeros(size)
        self.p_b[::width] = 1.0
        self.p_nb = np.zeros(size)
        self.last = np.zeros(size, dtype=np.int64)  # the prefix's last class (0: the empty prefix)
        self.bonus = np.zeros(size)
        if lm is not None:
            self.key = np.full(size, lm.start_key(), dtype=np.int64)  # the language model's history
            self.table, rows, self.generation = lm.distribution_table(self.key[:1])
            self.row_of = np.full(size, rows[0], dtype=np.int64)

    def _rows(self, keys: np.ndarray) -> np.ndarray:
        """The table rows of history ``keys``; if the model emptied its table meanwhile (another generation), the
        rows of every beam are fetched again from the new one."""
        lm = self.lm
        assert lm is not None
        table, rows, generation = lm.distribution_table(keys)
        while generation != self.generation:
            self.generation = generation
            beams = np.count_nonzero(self.alive)
            table, again, generation = lm.distribution_table(np.concatenate([self.key[self.alive], keys]))
            self.row_of[self.alive], rows = again[:beams], again[beams:]
        self.table = table
        return rows

    def step(self, m: int, frame: np.ndarray, cand: np.ndarray, count: np.ndarray) -> None:
        """Advance the first ``m`` images by one frame: ``frame`` (m,) where each image's frame starts in the flat
        log-probabilities, ``cand`` (m, K) the classes to expand (``count`` of them; 0: none)."""
        # ndarray.take itself: np.take's Python wrapper cost more than many of these lookups (~100 a step).
        width, classes, take, lm = self.width, self.classes, np.ndarray.take, self.lm
        lp = self.log_probs
        k = cand.shape[1]
        # The live beams, flat, image by image in rank order. The entries of the frame, in the order the
        # reference inserts them (``ordinal``): per beam, the beam itself, then its extensions by candidate.
        live = np.flatnonzero(self.alive[: m * width])
        bi = live // width
        n = len(live)
        p_b, p_nb = take(self.p_b, live), take(self.p_nb, live)
        last, node, bonus = take(self.last, live), take(self.node, live), take(self.bonus, live)
        total = p_b + p_nb
        at = take(frame, bi)
        per_beam = take(count, bi)
        first_ext = np.cumsum(per_beam) - per_beam  # each beam's first extension among all of them
        begin = first_ext + np.arange(n)  # each beam's own ordinal
        # Probabilities: exp of the log-probabilities read (the same values as exp over whole frames).
        s_pb = total * take(np.exp(take(lp, frame + BLANK)), bi)
        # Repeating the last character without a blank collapses into the same prefix; always counted, even
        # when that character was pruned from this frame.
        s_pnb = np.where(last > 0, p_nb * np.exp(take(lp, at + last)), 0.0)
        # prefix + c may be another beam's prefix: beam j is its parent beam i's extension by its last character
        # when that character is a candidate now. One entry holds both contributions (a sum of two terms: either
        # order gives the same float), at the place the reference first inserted it.
        order_of = np.empty(m * width, dtype=np.int64)
        order_of[live] = np.arange(n)
        parent = take(self.parent, node)
        slot = take(self.slot_of, np.maximum(parent, 0))
        maybe = np.flatnonzero((parent >= 0) & take(self.alive, slot) & (take(self.node, slot) == parent))
        merged_ext = np.zeros(0, dtype=np.int64)
        if len(maybe) and k:
            hit = (take(cand, take(bi, maybe), axis=0) == take(last, maybe)[:, None]) & (
                np.arange(k) < take(per_beam, take(order_of, take(slot, maybe)))[:, None])
            j = maybe[hit.any(axis=1)]
            if len(j):
                which = hit.argmax(axis=1)[hit.any(axis=1)]  # the candidate's place among its image's
                i = take(order_of, take(slot, j))
                c = take(last, j)
                s_pnb[j] = s_pnb[j] + np.where(c == take(last, i), take(p_b, i), take(total, i)) * np.exp(
                    take(lp, take(at, i) + c))
                merged_ext = take(first_ext, i) + which
                ext_first = i < j
                begin[j[ext_first]] = take(begin, i[ext_first]) + 1 + which[ext_first]
        s_total = s_pb + s_pnb
        with np.errstate(divide="ignore"):
            s_score = np.log(s_total) + bonus if lm is not None else s_total
        # An image with ``width`` beams holds ``width`` entries (one per beam's prefix) scoring at least the lowest
        # of them: an entry below that cannot be kept.
        floor = np.minimum.reduceat(s_score, np.flatnonzero(live % width == 0))  # bi is sorted: one run per image
        floor[np.bincount(bi, minlength=m) < width] = -np.inf
        # The extensions that are no beam's prefix.
        xb = np.repeat(np.arange(n), per_beam)
        within = np.arange(len(xb)) - take(first_ext, xb)
        xi = take(bi, xb)
        xc = take(cand.ravel(), xi * k + within)
        lp_c = take(lp, take(at, xb) + xc)
        alone = np.ones(len(xb), dtype=bool)
        alone[merged_ext] = False
        if lm is not None:
            # An extension's score is log(q * p_c) + (bonus + alpha * log P_lm(c | prefix) + beta), q <= P(prefix),
            # log P_lm <= 0 and alpha >= 0: at most log P(prefix) + log p_c + bonus + beta, up to rounding
            # (_BOUND_MARGIN). Those whose bound is below the floor cannot be kept: nothing more is computed for them.
            with np.errstate(divide="ignore"):
                bound = take(np.log(total) + (bonus + self.beta), xb) + lp_c + _BOUND_MARGIN
            a = np.flatnonzero(alone & (bound >= take(floor, xi)))
        else:
            a = np.flatnonzero(alone)
        ab, ac = take(xb, a), take(xc, a)
        a_pnb = np.where(ac == take(last, ab), take(p_b, ab), take(total, ab)) * np.exp(take(lp_c, a))
        if lm is not None:
            rows = take(take(self.row_of, live), ab)
            with np.errstate(divide="ignore"):
                lm_c = np.log(take(self.table, rows * self.table.shape[1] + take(self.symbols, ac)))
                a_bonus = (take(bonus, ab) + self.alpha * lm_c) + self.beta
                a_score = np.log(a_pnb) + a_bonus
        else:
            a_score = a_pnb
        # The entries that may be kept: beams (index < n) and extensions (n + their index in ``a``).
        stays = np.flatnonzero(s_score >= take(floor, bi))
        grows = np.flatnonzero(a_score >= take(floor, take(xi, a)))
        entry = np.concatenate([stays, n + grows])
        ordinal = np.concatenate([take(begin, stays), take(take(begin, ab) + 1 + take(within, a), grows)])
        score = np.concatenate([take(s_score, stays), take(a_score, grows)])
        image_of = np.concatenate([take(bi, stays), take(take(xi, a), grows)])
        # Per image, the best ``width`` entries, ties to the earlier one: in order of insertion, then two stable sorts.
        by = np.argsort(ordinal, kind="stable")
        by = by[_grouped_order(-take(score, by), take(image_of, by), m)]
        image = take(image_of, by)
        per_image = np.bincount(image, minlength=m)
        rank = np.arange(len(by)) - take(np.cumsum(per_image) - per_image, image)
        top = rank < width
        by, image = by[top], image[top]
        dest = image * width + rank[top]  # the new slots
        kept = take(entry, by)
        grown = kept >= n
        g = kept[grown] - n  # for extensions: their index in ``a``
        beam = kept.copy()  # for extensions: the beam they extend
        beam[grown] = take(ab, g)
        held = kept[~grown]
        kept_pb = np.zeros(len(kept))
        kept_pb[~grown] = take(s_pb, held)
        kept_pnb = np.empty(len(kept))
        kept_pnb[~grown] = take(s_pnb, held)
        kept_pnb[grown] = take(a_pnb, g)
        new_total = np.zeros(m * width)
        new_total[dest] = kept_pb + kept_pnb
        norm = np.cumsum(new_total.reshape(m, width), axis=1)[:, -1]  # in rank order, one after another, as
        norm[norm == 0] = 1.0  # the reference sums
        norm = take(norm, image)
        # Each kept entry's prefix: a beam as it was, or an extension (a new trie node unless it had one).
        new_node = take(node, beam)
        new_last = take(last, beam)
        gc = take(ac, g)
        new_last[grown] = gc
        child = take(self.children, take(node, take(ab, g)) * classes + gc)
        new_node[grown] = child
        fresh = np.flatnonzero(grown)[child < 0]
        if len(fresh):
            ids = np.arange(self.nodes, self.nodes + len(fresh))
            self._grow(self.nodes + len(fresh))
            parents = take(node, take(beam, fresh))
            self.children[parents * classes + new_last[fresh]] = ids
            self.parent[ids], self.char[ids] = parents, new_last[fresh]
            new_node[fresh] = ids
            self.nodes += len(fresh)
        end = m * width
        self.alive[:end] = False
        self.alive[dest] = True
        for state, values in ((self.p_b, kept_pb / norm), (self.p_nb, kept_pnb / norm)):
            state[:end] = 0.0
            state[dest] = values
        self.node[:end] = 0
        self.node[dest] = new_node
        self.last[:end] = 0
        self.last[dest] = new_last
        self.slot_of[new_node] = dest
        if lm is not None:
            new_bonus = take(bonus, beam)
            new_bonus[grown] = take(a_bonus, g)  # the same float as in its score
            self.bonus[dest] = new_bonus
            key = take(take(self.key, live), beam)
            row_of = take(take(self.row_of, live), beam)
            self.key[dest], self.row_of[dest] = key, row_of
            if grown.any():
                key = lm.next_keys(key[grown], take(self.symbols, gc))
                self.key[dest[grown]] = key
                self.row_of[dest[grown]] = self._rows(key)

    def _grow(self, size: int) -> None:
        capacity = len(self.parent)
        if size <= capacity:
            return
        new = max(size, 2 * capacity)
        children = np.full(new * self.classes, -1, dtype=np.int32)
        children[: len(self.children)] = self.children
        self.children = children
        for name in ("parent", "char", "slot_of"):
            old = getattr(self, name)
            grown = np.zeros(new, dtype=old.dtype)
            grown[:capacity] = old
            setattr(self, name, grown)

    def best(self) -> np.ndarray:
        """Each image's node of the best finished text (the first best in rank order)."""
        total = self.p_b + self.p_nb
        if self.lm is None:
            score = total
        else:
            with np.errstate(divide="ignore"):
                score = np.log(total) + self.bonus + self.alpha * np.log(self.table[self.row_of, self.lm.eos])
        score = np.where(self.alive, score, -np.inf).reshape(-1, self.width)
        return self.node.reshape(-1, self.width)[np.arange(len(score)), score.argmax(axis=1)]

    def text(self, node: int) -> list[int]:
        """The class ids of a node's prefix."""
        out = []
        while self.parent[node] >= 0:
            out.append(int(self.char[node]))
            node = int(self.parent[node])
        return out[::-1]

