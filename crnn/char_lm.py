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
from typing import Any

import numpy as np

from crnn.errors import CheckpointError

LM_FORMAT = "crnn-char-lm"
_PACKAGE = Path(__file__).resolve().parent
# As for the recognizer's weights: inside the package when installed from a wheel, in weights/ in a clone.
DEFAULT_LM = next(
    (p for p in (_PACKAGE / "weights" / "char_lm.safetensors", _PACKAGE.parent / "weights" / "char_lm.safetensors")
     if p.exists()),
    _PACKAGE.parent / "weights" / "char_lm.safetensors",
)
# Distributions are cached per history; a beam search touches a few hundred per image, so this bounds memory
# on a long run without costing hits.
CACHE_LIMIT = 200_000


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


def default_lm_path() -> Path:
    """The shipped language model: $CRNN_LM if set, else the one shipped in the wheel or in this clone."""
    env = os.environ.get("CRNN_LM")
    return Path(env) if env else DEFAULT_LM


@lru_cache(maxsize=4)
def load_lm(path: str | None = None) -> CharLM:
    """The model at ``path`` (default: :func:`default_lm_path`), loaded once per process."""
    return CharLM.load(path if path is not None else default_lm_path())
