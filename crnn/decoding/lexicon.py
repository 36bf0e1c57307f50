"""Lexicons: word lists a reading is constrained to (one per run or one per image), read from files with a report
of the words a model cannot read, and the nearest-word search of large lists (rapidfuzz); crnn.decoding.ctc_decode
scores their words against an image (lexicon_decode)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from crnn.charset import Charset
from crnn.decoding.char_lm import load_lm
from crnn.errors import LexiconFileError

# Large-lexicon decoding scores at most this many nearest words; with short queries thousands of
# words can lie within the edit-distance radius and the closest ones are the plausible ones.
LEXICON_MAX_CANDIDATES: int = 64
# Lexicons of at most this many distinct (case-folded) words are scored exactly: every word gets
# P(word | image), as in the CRNN paper, so the true word wins even when the reading is far from it.
# Why this size: one image's words are scored in one batched CTC forward pass, linear in their number;
# 500 words cost ~20 ms per image on one core here (measured: 50 words 3 ms), about 3x the network's own
# time per image (~6 ms a core), which is as far as a fixed cost per image should go. The standard
# benchmark lexicons (50 and 1,000 words) sit either side of it; bigger lists (a language's vocabulary) go
# through the candidate search. Chosen by that cost, not on any benchmark.
SMALL_LEXICON_WORDS: int = 500
# How a lexicon word's case is chosen: "image" scores its case variants and keeps the likeliest (the case
# the image shows), "keep" returns the word as the lexicon spells it.
LEXICON_CASES: tuple[str, ...] = ("image", "keep")


def distance_bound(length: int) -> int:
    """The most edits a large lexicon's word may be from a reading of ``length`` characters: one per three.

    Why: a reading with more than a third of its characters wrong says too little about which word it
    is, and the closest words in a 50,000-word list are then chance neighbours, not the word in the image;
    1-2 character readings must match exactly (every short reading is one edit from dozens of words).
    Chosen by that reasoning, not on any benchmark.
    """
    return length // 3


# Dropped words named per reason in a report (the counts are always complete).
DROPPED_EXAMPLES: int = 3
# Why a lexicon drops a word, as a report says it.
DROP_REASONS: dict[str, str] = {
    "tab": "with a tab (a column separator, never part of a word)",
    "charset": "with characters the model cannot read",
    "empty": "empty or blank",
}


class DroppedWords:
    """The words one or more lexicons dropped: a count per reason (see DROP_REASONS) and the first few of each."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, word: str) -> None:
        """Count one dropped ``word``; the first DROPPED_EXAMPLES of each reason are kept to name."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        named = self.examples.setdefault(reason, [])
        if len(named) < DROPPED_EXAMPLES:
            named.append(word)

    def update(self, other: DroppedWords) -> None:
        """Add ``other``'s counts (and examples, while there is room) to these."""
        for reason, count in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + count
            named = self.examples.setdefault(reason, [])
            named.extend(other.examples.get(reason, [])[: DROPPED_EXAMPLES - len(named)])

    @property
    def total(self) -> int:
        """How many words were dropped."""
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def describe(self) -> str:
        """One line: each reason's count and its first few words (``2 with a tab (...), e.g. 'cat\\t12', 'dog'``)."""
        parts = []
        for reason, text in DROP_REASONS.items():
            count = self.counts.get(reason, 0)
            if not count:
                continue
            named = ", ".join(repr(w) for w in self.examples[reason] if w.strip())
            more = ", ..." if named and count > len(self.examples[reason]) else ""
            parts.append(f"{count} {text}" + (f", e.g. {named}{more}" if named else ""))
        return "; ".join(parts)


def drop_reason(word: str, charset: Charset) -> str | None:
    """Why a lexicon drops ``word`` (a key of DROP_REASONS), or None when it keeps it."""
    if not word.strip():
        return "empty"
    if "\t" in word:
        return "tab"
    if not charset.supports(word):
        return "charset"
    return None


class Lexicon:
    """A list of allowed words, deduplicated; empty words, words with a tab and words with characters outside the
    charset are dropped (counted in ``dropped``, for the caller to report); none left is a ValueError that names
    the lexicon as ``name`` says.

    Matching is case-insensitive: a word matches a reading whatever the case of either. With
    ``case="image"`` (the default) the returned text has the case the image shows: the word's case
    variants (as written, lower, UPPER, Title, and the reading's own case pattern) are scored by CTC
    likelihood and the likeliest wins; with ``case="keep"`` the word comes back as the lexicon spells it.
    """

    def __init__(self, words: Iterable[str], charset: Charset, case: str = "image", name: str = "lexicon") -> None:
        if case not in LEXICON_CASES:
            raise ValueError(f"unknown lexicon case {case!r}; choose one of: {', '.join(LEXICON_CASES)}")
        kept: dict[str, None] = {}
        self.dropped = DroppedWords()
        for word in words:
            reason = drop_reason(word, charset)
            if reason is None:
                kept[word] = None
            else:
                self.dropped.add(reason, word)
        if not kept:
            raise ValueError(f"{name} has no usable words: {self.dropped.describe() or 'none given'}")
        self.charset = charset
        self.case = case
        self.words: list[str] = list(kept)
        # Case-folded word -> its spellings as written, in list order; the search runs on the folded words. Tuples:
        # the cyclic GC stops tracking a tuple of strings at its first collection, while each list stays tracked and
        # 64 lexicons of 10,000 words made every full collection of a server walk 640,000 more lists (0.2-0.6 s).
        self.spellings: dict[str, tuple[str, ...]] = {}
        for word in self.words:
            folded = word.lower()
            self.spellings[folded] = self.spellings.get(folded, ()) + (word,)
        self.folded: list[str] = list(self.spellings)
        self._priors: dict[str, float] = {}

    @property
    def skipped(self) -> int:
        """How many words were dropped (see ``dropped`` for why)."""
        return self.dropped.total

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], charset: Charset, case: str = "image") -> Lexicon:
        """A lexicon read from a UTF-8 text file with one word per line (blank lines are no words); raises
        LexiconFileError naming the file when it cannot be read, is not UTF-8 or has no usable word."""
        lines = read_lexicon_lines(path)
        try:
            words = (line.strip() for line in lines if line.strip())
            return cls(words, charset, case, name=f"lexicon {os.fspath(path)}")
        except ValueError as e:
            raise LexiconFileError(str(e)) from None

    @property
    def small(self) -> bool:
        """Whether every word is scored exactly (at most SMALL_LEXICON_WORDS distinct folded words)."""
        return len(self.folded) <= SMALL_LEXICON_WORDS

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word.lower() in self.spellings

    def __repr__(self) -> str:
        return f"Lexicon({len(self.words)} words, {self.skipped} skipped, case={self.case!r})"

    def candidates(self, queries: Sequence[str], max_distance: int | None = None) -> list[list[str]]:
        """For each query, the folded words to score, nearest first: all of them for a small lexicon, else
        those within ``max_distance`` (default :func:`distance_bound` of the query's length), possibly none."""
        if not queries:
            return []
        from rapidfuzz import process  # only a run with a lexicon searches (~10-25 ms of start-up otherwise)
        from rapidfuzz.distance import Levenshtein

        folded_queries = [q.lower() for q in queries]
        if self.small:
            # Every word competes; the order (nearest first, stable) only breaks exact score ties.
            distances = process.cdist(folded_queries, self.folded, scorer=Levenshtein.distance, dtype=np.int32)
            return [[self.folded[i] for i in np.argsort(row, kind="stable").tolist()] for row in distances]
        bounds = [distance_bound(len(q)) if max_distance is None else max_distance for q in folded_queries]
        # One cdist call for the whole batch: rapidfuzz vectorises it, several times faster than a
        # process.extract per query. Distances above the cutoff come back as cutoff + 1.
        distances = process.cdist(
            folded_queries, self.folded, scorer=Levenshtein.distance, score_cutoff=max(bounds), dtype=np.int32
        )
        result = []
        for bound, row in zip(bounds, distances):
            near = np.flatnonzero(row <= bound)
            # Stable sort: equally near words keep the lexicon's order (a frequency list: commoner first).
            near = near[np.argsort(row[near], kind="stable")][:LEXICON_MAX_CANDIDATES]
            result.append([self.folded[i] for i in near.tolist()])
        return result

    def log_prior(self, folded: str) -> float:
        """log P_lm(word) of a case-folded word (end of text included) under the shipped character language model:
        the estimate of how often the network's training text held it (see ctc_decode's ``_word_beats_reading``); cached."""
        prior = self._priors.get(folded)
        if prior is None:
            prior = self._priors[folded] = load_lm().log_prob(folded)
        return prior

    def variants(self, folded: str, reading: str) -> list[str]:
        """The spellings of one folded word to score against an image whose plain reading is ``reading``."""
        spellings = self.spellings[folded]
        if self.case == "keep":
            return list(spellings)
        out = [*spellings, folded, folded.upper(), folded[:1].upper() + folded[1:]]
        if len(reading) == len(folded):
            # The reading's own case pattern (e.g. "McDonald"): the model's per-character case evidence.
            out.append("".join(
                c.upper() if r.isupper() else c.lower() if r.islower() else c for c, r in zip(folded, reading)
            ))
        # Case mappings can change a word's length or leave the charset (e.g. German sharp s): dropped.
        return [v for v in dict.fromkeys(out) if len(v) == len(folded) and self.charset.supports(v)]


def dropped_report(lexicons: Iterable[Lexicon | None]) -> str | None:
    """What the distinct lexicons among ``lexicons`` dropped, together, as one line for a warning (``3 words
    dropped, 7 kept: ...``), or None when they dropped nothing. Per-image lexicons of one file share a Lexicon per
    word list, so each list counts once."""
    dropped, kept, seen = DroppedWords(), 0, set()
    for lex in lexicons:
        if lex is not None and id(lex) not in seen:
            seen.add(id(lex))
            dropped.update(lex.dropped)
            kept += len(lex.words)
    if not dropped:
        return None
    n = dropped.total
    return f"{n} word{'s' * (n != 1)} dropped, {kept} kept: {dropped.describe()}"


def read_lexicon_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of a lexicon file (UTF-8, a byte-order mark tolerated: some editors write one); raises
    LexiconFileError naming the file when it cannot be read or is not UTF-8."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise LexiconFileError(f"cannot read lexicon {name}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise LexiconFileError(f"lexicon {name} is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); "
                               f"save it as UTF-8") from None
    # Lines end at \n, \r\n or \r only, as a text file's do (str.splitlines would also split at \x85, \x0c, ...).
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def read_image_lexicons(path: str | os.PathLike[str], charset: Charset, case: str = "image") -> dict[str, Lexicon]:
    """Per-image lexicons from lines ``relative_path<TAB>word,word,...`` (paths as in labels.tsv), keyed by the
    normalised relative path; raises LexiconFileError naming the file and line of the first bad line (one whose
    words are all dropped, too). What the lists dropped: :func:`dropped_report` of the values."""
    lines = read_lexicon_lines(path)
    lexicons: dict[str, Lexicon] = {}
    shared: dict[str, Lexicon] = {}  # images of one scene share a word list: one Lexicon object
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{os.fspath(path)}, line {number}"
        rel, tab, words = line.partition("\t")
        if not tab or not rel.strip() or not words.strip():
            raise LexiconFileError(f"{where}: expected relative_path<TAB>word,word,... , got {line[:80]!r}")
        key = os.path.normpath(rel.strip())
        if key in lexicons:
            raise LexiconFileError(f"{where}: {rel.strip()!r} already has a lexicon")
        words = words.strip()
        if words not in shared:
            try:
                shared[words] = Lexicon((w.strip() for w in words.split(",")), charset, case)
            except ValueError as e:
                raise LexiconFileError(f"{where}: {e}") from None
        lexicons[key] = shared[words]
    if not lexicons:
        raise LexiconFileError(f"{os.fspath(path)}: no lexicon lines")
    return lexicons


LexiconArg = Lexicon | Sequence[Lexicon | None] | None


def per_sample_lexicons(lexicon: LexiconArg, count: int) -> list[Lexicon | None]:
    """One lexicon (or None) per sample: a single Lexicon is shared, a sequence gives each sample its own."""
    if lexicon is None or isinstance(lexicon, Lexicon):
        return [lexicon] * count
    lexicons = list(lexicon)
    if len(lexicons) != count:
        raise ValueError(f"got {len(lexicons)} per-image lexicons for {count} images")
    return lexicons


def as_lexicon(lexicon: Lexicon | Iterable[str] | None, charset: Charset) -> Lexicon | None:
    """``lexicon`` as a Lexicon for ``charset`` (a word iterable is built into one; None stays None)."""
    if lexicon is None or isinstance(lexicon, Lexicon):
        return lexicon
    return Lexicon(lexicon, charset)


def as_lexicons(
    lexicon: Lexicon | Iterable[str] | Sequence[Lexicon | None] | None, charset: Charset, count: int
) -> list[Lexicon | None]:
    """One Lexicon (or None) per image: a sequence of Lexicon/None items is per image, anything else is shared."""
    if isinstance(lexicon, (list, tuple)) and lexicon and all(x is None or isinstance(x, Lexicon) for x in lexicon):
        return per_sample_lexicons(lexicon, count)
    return [as_lexicon(lexicon, charset)] * count  # type: ignore[arg-type]
