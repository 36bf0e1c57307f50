"""A character n-gram language model of case-folded text (interpolated Kneser-Ney), stored as arrays; no torch.

The model predicts the next symbol of a text from the ``order - 1`` symbols before it. Symbols are the
characters of its alphabet (case-folded), one ``UNK`` for any character outside the alphabet, and ``EOS``,
the end of the text; every text starts with ``BOS``, which is context only, never predicted. So
``P(text) = prod P(c_i | history) * P(EOS | history)``.

Storage (one safetensors file, written by ``crnn lm`` in ``crnn_training.char_lm``): an n-gram
``s_1 .. s_k`` is the integer key ``sum s_i * B**(k - i)`` with base ``B = BOS + 1`` (symbols are 1..BOS, so
keys of different lengths never collide). For each order k >= 2, ``ngrams.k`` holds the sorted keys of the kept
k-grams (uint32 where they fit, else int64) and ``logprobs.k`` (float16: 0.8% at worst, uniformly over the
range) the log of their discounted probability ``max(c(hw) - D, 0) / c(h)``; ``unigram`` is the dense order-1 distribution (already interpolated with the
uniform one). What a history leaves to the shorter one, ``gamma(h) = 1 - sum_w probs(hw)``, is computed when
loading, and a history without kept n-grams backs off with weight 1: so every distribution sums to one
exactly, whatever was pruned or rounded.
"""

from __future__ import annotations

import json
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from crnn.errors import CheckpointError

LM_FORMAT = "crnn-char-lm"
_PACKAGE = Path(__file__).resolve().parents[1]  # crnn/, the package (this module is in a sub-package)
# As for the recognizer's weights: inside the package when installed from a wheel, in weights/ in a clone.
DEFAULT_LM = next(
    (p for p in (_PACKAGE / "weights" / "char_lm.safetensors", _PACKAGE.parent / "weights" / "char_lm.safetensors")
     if p.exists()),
    _PACKAGE.parent / "weights" / "char_lm.safetensors",
)
# Distributions are cached per history; a beam search touches a few hundred per image, so this bounds memory
# on a long run without costing hits.
CACHE_LIMIT = 200_000
# Rows of the distribution table that the batched beam search reads (CharLM.distribution_table): 65,536 rows of
# float64 are 38 MB at the shipped model's 72 symbols; IIIT5K's 3,000 words touch ~40,000 histories.
# A full table is emptied and refilled, as the caches above are.
TABLE_LIMIT = 65_536
# Keys added to the table wait in a small index until there are this many (inserting into a sorted array of 40,000
# keys at every step of a search cost more than the lookups).
MERGE_KEYS = 4_096


def fold(text: str) -> str:
    """``text`` as the model sees it: lower case, character by character (a mapping that changes a
    character's length, such as the dotted capital I, keeps the character, which then counts as unknown)."""
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


class CharLM:
    """A character n-gram model: ``log_distribution(history)`` is log P(symbol | history) over all symbols.

    Symbol ids: 1..len(alphabet) are the alphabet's characters, then ``unk``, ``eos`` and ``bos``;
    id 0 is unused (its probability is 0). Thread-safe for queries.
    """

    def __init__(
        self,
        alphabet: str,
        order: int,
        unigram: np.ndarray,
        ngrams: dict[int, tuple[np.ndarray, np.ndarray]],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("the alphabet has duplicate characters")
        self.alphabet = alphabet
        self.order = order
        self.unk = len(alphabet) + 1
        self.eos = len(alphabet) + 2
        self.bos = len(alphabet) + 3
        self.base = self.bos + 1
        if unigram.shape != (self.bos,):
            raise ValueError(f"unigram must have shape ({self.bos},), got {unigram.shape}")
        self.unigram = unigram.astype(np.float64)
        self.ngrams: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # history key -> gamma(h), per order: derived from the n-grams so that each distribution sums to one.
        self.contexts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for k, (keys, probs) in ngrams.items():
            keys, probs = np.asarray(keys, dtype=np.int64), np.asarray(probs, dtype=np.float64)
            if len(keys) > 1 and not (np.diff(keys) > 0).all():
                raise ValueError(f"the keys of order {k} are not sorted and unique")
            histories, inverse = np.unique(keys // self.base, return_inverse=True)
            self.ngrams[k] = (keys, probs)
            self.contexts[k] = (histories, 1.0 - np.bincount(inverse, weights=probs, minlength=len(histories)))
        self.metadata = dict(metadata or {})
        self._index = {c: i + 1 for i, c in enumerate(alphabet)}
        self._cache: dict[tuple[int, ...], np.ndarray] = {}
        self._log_cache: dict[tuple[int, ...], list[float]] = {}
        self._lock = threading.Lock()
        # The table of distribution_table, replaced whole under _table_lock, so that a reader in another thread always
        # sees one consistent snapshot.
        self._table = _Table.empty(self.bos, 0)
        self._table_lock = threading.Lock()
        self._largest = 0  # the most keys one distribution_table call asked for
        self._first: np.ndarray | None = None  # (base, num_symbols): distribution((s,)) of each symbol s
        # _suffixes as a lookup: _uses[k, n] whether a history of n symbols is extended with its k-symbol suffix.
        self._uses = np.zeros((order, order), dtype=bool)
        for n in range(order):
            self._uses[self._suffixes(n), n] = True

    @property
    def num_symbols(self) -> int:
        """Length of a distribution vector: symbol ids 0..bos-1 (0 and bos always have probability 0)."""
        return self.bos

    def symbol(self, char: str) -> int:
        """The symbol id of one character, case-folded; ``unk`` when the alphabet lacks it."""
        return self._index.get(fold(char), self.unk)

    def encode(self, text: str) -> list[int]:
        """Symbol ids of ``text`` (case-folded), without BOS or EOS."""
        return [self.symbol(c) for c in text]

    def distribution(self, history: tuple[int, ...]) -> np.ndarray:
        """P(symbol | history) as a (num_symbols,) float64 vector summing to one; ``history`` holds symbol
        ids, BOS first if it is the start of the text; only its last ``order - 1`` symbols count."""
        history = tuple(history[len(history) - self.order + 1:]) if self.order > 1 else ()
        cached = self._cache.get(history)
        if cached is not None:
            return cached
        if not history:
            dist = self.unigram
        else:
            dist = self._extend(history, self.distribution(history[1:]))
        with self._lock:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
                self._log_cache.clear()
            self._cache[history] = dist
        return dist

    def log_distribution(self, history: tuple[int, ...]) -> list[float]:
        """log P(symbol | history) as a list indexed by symbol id (a list: beam search indexes it per character)."""
        history = tuple(history[len(history) - self.order + 1:]) if self.order > 1 else ()
        cached = self._log_cache.get(history)
        if cached is not None:
            return cached
        with np.errstate(divide="ignore"):
            logs = np.log(self.distribution(history)).tolist()
        with self._lock:
            self._log_cache[history] = logs
        return logs

    def start_key(self) -> int:
        """:meth:`history_key` of the start of a text (BOS alone; 0, the empty history, for a unigram model)."""
        return self.bos if self.order > 1 else 0

    def history_key(self, history: tuple[int, ...]) -> int:
        """The integer key of a history (its last ``order - 1`` symbols), as the n-gram keys are built:
        ``sum s_i * base**(k - i)``; symbols are >= 1, so histories of different lengths never share a key."""
        key = 0
        for s in history[max(0, len(history) - self.order + 1):] if self.order > 1 else ():
            key = key * self.base + s
        return key

    def next_keys(self, keys: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """The history keys after ``symbols`` follow the histories ``keys`` (elementwise int64 arrays)."""
        if self.order == 1:
            return np.zeros(np.broadcast_shapes(np.shape(keys), np.shape(symbols)), np.int64)
        full = self.base ** (self.order - 1)  # a key at or above this holds order - 1 symbols
        keys = np.asarray(keys, dtype=np.int64)
        return np.where(keys >= full // self.base, keys % (full // self.base), keys) * self.base + symbols

    def _history(self, key: int) -> tuple[int, ...]:
        """The history of a key (the inverse of :meth:`history_key`)."""
        out = []
        while key:
            key, s = divmod(key, self.base)
            out.append(s)
        return tuple(reversed(out))

    def distribution_table(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """(table, rows, generation): ``table[rows[i]]`` is P(symbol | history) for the history key ``keys[i]`` (a
        1-d int64 array), equal value for value to :meth:`distribution` of that history (so np.log of any of its
        values is :meth:`log_distribution`'s).

        The batched beam search's query: rows live in one table, found with binary searches, and only histories
        not yet in it are computed (thread-safe). A table once returned keeps its rows; a later call may return a
        bigger copy (the same rows at the same places) or, when the table was full (TABLE_LIMIT) and emptied, a
        new one of the next ``generation``, whose rows the caller must ask for again."""
        keys = np.asarray(keys, dtype=np.int64)
        seen = self._table
        rows = _find(seen, keys)
        if (rows < 0).any():
            seen = self._add_rows(keys, rows, seen)
        return seen.table, rows, seen.generation

    def _add_rows(self, keys: np.ndarray, rows: np.ndarray, seen: _Table) -> _Table:
        """Add the histories of ``keys`` that are not in the table (``rows`` < 0 in the snapshot ``seen``; filled
        in here) and publish the table.

        Rows are appended in place to a table with spare capacity (a reader's snapshot never reads past its own
        rows, so it stays valid); the table is copied only when it is full. New keys go to a small sorted index
        that is merged into the main one when it reaches MERGE_KEYS, so that adding a few costs little."""
        # A search asks again for all its beams' rows after the table was emptied: the table holds at least four
        # such requests, so that a huge batch does not empty it at every step.
        self._largest = max(self._largest, len(keys))
        limit = max(TABLE_LIMIT, 4 * self._largest)
        with self._table_lock:
            t = self._table
            if t is not seen:  # another thread added rows (or emptied the table) meanwhile
                rows[:] = _find(t, keys)
            missing = rows < 0
            if not missing.any():
                return t
            if t.used and t.used + np.count_nonzero(missing) > limit:
                t = _Table.empty(self.bos, t.generation + 1)
                missing[:] = True
            wanted = np.sort(keys[missing])
            new = wanted[np.r_[True, wanted[1:] != wanted[:-1]]]  # np.unique's result, for less overhead
            size = t.used + len(new)
            rows[missing] = t.used + np.searchsorted(new, keys[missing])
            added = self._distributions(new)
            table = t.table
            if size > len(table):
                # Allocated at its full size at once (the pages are only taken as rows are written).
                table = np.empty((max(size, limit), self.bos))
                table[: t.used] = t.table[: t.used]
            table[t.used:size] = added
            recent_keys, recent_rows = _merge(t.recent_keys, t.recent_rows, new, np.arange(t.used, size))
            index, index_rows = t.keys, t.rows
            if len(recent_keys) >= MERGE_KEYS:
                index, index_rows = _merge(index, index_rows, recent_keys, recent_rows)
                recent_keys, recent_rows = recent_keys[:0], recent_rows[:0]
            self._table = _Table(index, index_rows, recent_keys, recent_rows, table, size, t.generation)
            return self._table

    def _suffixes(self, length: int) -> list[int]:
        """The lengths of the suffixes of a history of ``length`` symbols that :meth:`distribution` extends the
        unigram with, shortest first: at each level of its recursion it keeps ``history[len(history) - order +
        1:]``, and then drops the oldest symbol. (For a history shorter than ``order - 1`` that slice counts from
        the end: with order 6, BOS + 2 letters keeps the 2 letters, BOS + 3 letters only the last one, and below a
        full history of 5 symbols the recursion goes straight to the last symbol. The shipped decoder was tuned
        and measured so; :meth:`_distributions` mirrors it exactly.)"""
        used = []
        while self.order > 1:
            length = len(range(length)[length - self.order + 1:])  # the slice distribution() takes
            if not length:
                break
            used.append(length)
            length -= 1
        return used[::-1]

    def _distributions(self, keys: np.ndarray) -> np.ndarray:
        """:meth:`distribution` of many history keys at once, (len(keys), num_symbols): the same recursion
        (from the unigram, each longer suffix of the history in turn: gamma(h) * shorter + discounted counts)
        in the same float64 operations, so equal value for value, one array pass per order."""
        if self._first is None:
            # Every history's recursion starts with its last symbol (its first step): those few distributions
            # are computed once, by distribution() itself.
            self._first = np.stack([self.unigram, *(self.distribution((s,)) for s in range(1, self.base))])
        lengths = np.zeros(len(keys), dtype=np.int64)  # symbols in each history
        for k in range(1, self.order):
            lengths[keys >= self.base ** (k - 1)] = k
        lengths[keys == 0] = 0
        out = self._first[keys % self.base]  # key 0, the empty history: row 0, the unigram
        for k in range(2, self.order):  # suffixes of k symbols, their next symbol an n-gram of order k + 1
            if k + 1 not in self.contexts or not self._uses[k].any():
                continue
            rows = np.flatnonzero(self._uses[k, lengths])
            if not len(rows):
                continue
            suffix = keys[rows] % self.base ** k
            context_keys, gammas = self.contexts[k + 1]
            if not len(context_keys):
                continue
            at = np.minimum(np.searchsorted(context_keys, suffix), len(context_keys) - 1)
            seen = context_keys[at] == suffix  # an unseen history leaves all its mass to the shorter one
            rows, suffix, at = rows[seen], suffix[seen], at[seen]
            out[rows] = gammas[at][:, None] * out[rows]
            ngram_keys, probs = self.ngrams[k + 1]
            lo = np.searchsorted(ngram_keys, suffix * self.base)
            count = np.searchsorted(ngram_keys, suffix * self.base + self.base) - lo
            which = np.repeat(np.arange(len(rows)), count)
            index = lo[which] + np.arange(len(which)) - np.repeat(np.cumsum(count) - count, count)
            out[rows[which], ngram_keys[index] - suffix[which] * self.base] += probs[index]
        return out

    def _extend(self, history: tuple[int, ...], shorter: np.ndarray) -> np.ndarray:
        """P(. | history) from P(. | history without its oldest symbol): gamma(h) * shorter + discounted counts."""
        k = len(history) + 1
        if k not in self.contexts:
            return shorter
        key = 0
        for s in history:
            key = key * self.base + s
        context_keys, gammas = self.contexts[k]
        i = int(np.searchsorted(context_keys, key))
        if i == len(context_keys) or int(context_keys[i]) != key:
            return shorter  # an unseen history leaves all its mass to the shorter one
        keys, probs = self.ngrams[k]
        lo, hi = np.searchsorted(keys, [key * self.base, key * self.base + self.base])
        out = float(gammas[i]) * shorter
        out[keys[lo:hi] - key * self.base] += probs[lo:hi]
        return out

    def log_prob(self, text: str, end: bool = True) -> float:
        """log P(text) (case-folded), with the end-of-text symbol when ``end``."""
        history: tuple[int, ...] = (self.bos,)
        total = 0.0
        for s in [*self.encode(text), *([self.eos] if end else [])]:
            total += self.log_distribution(history)[s]
            history = (*history, s)[-(self.order - 1):] if self.order > 1 else ()
        return total

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model as one safetensors file (arrays + JSON metadata)."""
        from safetensors.numpy import save_file

        tensors = {"unigram": self.unigram}
        for k, (keys, probs) in self.ngrams.items():
            small = self.base ** k <= np.iinfo(np.uint32).max
            tensors[f"ngrams.{k}"] = np.ascontiguousarray(keys, dtype=np.uint32 if small else np.int64)
            with np.errstate(divide="ignore"):
                tensors[f"logprobs.{k}"] = np.ascontiguousarray(np.log(probs), dtype=np.float16)
        header = {"format": LM_FORMAT, "alphabet": self.alphabet, "order": str(self.order),
                  "metadata": json.dumps(self.metadata, sort_keys=True)}
        save_file(tensors, str(path), metadata=header)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharLM:
        """Read a model written by :meth:`save`; raises CheckpointError on a missing or foreign file."""
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"language model not found: {path}")
        try:
            with safe_open(str(path), framework="np") as f:
                header = f.metadata() or {}
                if header.get("format") != LM_FORMAT:
                    raise CheckpointError(f"{path} is not a character language model of this project")
                arrays = {name: f.get_tensor(name) for name in f.keys()}
        except CheckpointError:
            raise
        except Exception as e:  # safetensors raises its own error types for a damaged file
            raise CheckpointError(f"cannot read language model {path}: {e}") from None
        ngrams = {int(n.split(".")[1]): (arrays[n], np.exp(arrays["logprobs." + n.split(".")[1]].astype(np.float64)))
                  for n in arrays if n.startswith("ngrams.")}
        return cls(header["alphabet"], int(header["order"]), arrays["unigram"], ngrams,
                   json.loads(header.get("metadata", "{}")))


class _Table(NamedTuple):
    """A snapshot of CharLM's log-distribution table: rows ``table[:used]``, found by history key in the sorted
    ``keys`` (with their ``rows``) or in the small sorted ``recent_keys`` added since the last merge."""

    keys: np.ndarray
    rows: np.ndarray
    recent_keys: np.ndarray
    recent_rows: np.ndarray
    table: np.ndarray
    used: int
    generation: int

    @classmethod
    def empty(cls, symbols: int, generation: int) -> _Table:
        """A table without rows."""
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none, none, np.zeros((0, symbols)), 0, generation)


def _merge(keys: np.ndarray, rows: np.ndarray, new: np.ndarray, new_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted ``keys`` (with their ``rows``) and the sorted ``new`` ones (none among them) in one sorted index."""
    at = np.searchsorted(keys, new) + np.arange(len(new))  # where each new key lands
    old = np.ones(len(keys) + len(new), dtype=bool)
    old[at] = False
    merged, merged_rows = np.empty(len(old), dtype=np.int64), np.empty(len(old), dtype=np.int64)
    merged[at], merged_rows[at] = new, new_rows
    merged[old], merged_rows[old] = keys, rows
    return merged, merged_rows


def _find(t: _Table, keys: np.ndarray) -> np.ndarray:
    """The rows of ``keys`` in the snapshot ``t`` (-1 where absent)."""
    out = np.full(len(keys), -1, dtype=np.int64)
    for sorted_keys, rows in ((t.keys, t.rows), (t.recent_keys, t.recent_rows)):
        if len(sorted_keys):
            at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
            hit = sorted_keys[at] == keys
            out[hit] = rows[at[hit]]
    return out


def default_lm_path() -> Path:
    """The shipped language model: $CRNN_LM if set, else the one shipped in the wheel or in this clone."""
    env = os.environ.get("CRNN_LM")
    return Path(env) if env else DEFAULT_LM


@lru_cache(maxsize=4)
def load_lm(path: str | None = None) -> CharLM:
    """The model at ``path`` (default: :func:`default_lm_path`), loaded once per process."""
    return CharLM.load(path if path is not None else default_lm_path())
