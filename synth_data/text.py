"""What the synthetic images say: a lexicon plus generators of numbers, codes, punctuation and phrases."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from pathlib import Path

from crnn_synth_data.config import SynthConfig

UPPER = string.ascii_uppercase
DIGITS = string.digits
ALNUM = string.ascii_letters + string.digits


def load_lexicon(config: SynthConfig) -> list[str]:
    """Words most frequent first, from ``config.words_file`` or else wordfreq, filtered to the charset."""
    if config.words_file:
        lines = Path(config.words_file).expanduser().read_text(encoding="utf-8").splitlines()
        raw = [w.strip() for w in lines]
    else:
        try:
            import wordfreq
        except ImportError:
            raise ImportError(
                "synth_data needs either SynthConfig.words_file (see `crnn synth --export-words`) "
                "or the wordfreq package (pip install 'crnn-ocr[synth]')"
            ) from None
        # Over-fetch: about 1 in 10 entries are emoji, accented or digit-normalised tokens.
        raw = wordfreq.top_n_list("en", int(config.lexicon_size * 1.3) + 100)
    words = _clean_words(raw, config)[: config.lexicon_size]
    if not words:
        raise ValueError("the lexicon is empty after keeping words that fit the charset and max_length")
    return words


def _clean_words(raw: list[str], config: SynthConfig) -> list[str]:
    """Unique words made of letters (and inner apostrophes / dots) that the charset can encode."""
    allowed = set(config.charset)
    seen: set[str] = set()
    out = []
    for w in raw:
        # wordfreq folds every digit to "0": such tokens are not real words.
        if not w or w in seen or "0" in w or not set(w) <= allowed or len(w) > config.max_length:
            continue
        if not w[0].isalpha() or not all(c.isalpha() or c in "'." for c in w):
            continue
        seen.add(w)
        out.append(w)
    return out


def export_words(path: str | Path, count: int = 50_000, config: SynthConfig | None = None) -> int:
    """Write the lexicon (``count`` words, most frequent first, one a line); returns how many were written."""
    base = config or SynthConfig()
    words = load_lexicon(SynthConfig.from_dict({**base.to_dict(), "lexicon_size": count}))
    Path(path).write_text("\n".join(words) + "\n", encoding="utf-8")
    return len(words)


def _weighted(pairs: list[tuple[float, object]]) -> tuple[list[object], list[float]]:
    """Choices and cumulative weights for random.choices."""
    items = [p[1] for p in pairs if p[0] > 0]
    cum, total = [], 0.0
    for w, _ in (p for p in pairs if p[0] > 0):
        total += w
        cum.append(total)
    if not items:
        raise ValueError("all proportions are zero")
    return items, cum


class TextSampler:
    """Draws label texts of every kind in the configured proportions; every text fits the charset."""

    def __init__(self, config: SynthConfig, words: list[str] | None = None) -> None:
        self.config = config
        self.words = words if words is not None else load_lexicon(config)
        self.allowed = set(config.charset)
        self.short_words = [w for w in self.words[:20000] if 2 <= len(w) <= 7 and "'" not in w]
        self.contractions = [w for w in self.words[:20000] if "'" in w]
        by_len: dict[int, list[str]] = {}
        for w in self.words:
            by_len.setdefault(len(w), []).append(w)
        self.by_length = by_len
        # Balanced draws use lengths with enough words; a lone 20-letter word would repeat endlessly.
        self.lengths = sorted(n for n, ws in by_len.items() if len(ws) >= 20) or sorted(by_len)
        c = config
        self.kinds, self.kind_cum = _weighted([
            (c.kind_word, self.word), (c.kind_number, self.number), (c.kind_alnum, self.alnum),
            (c.kind_punct_word, self.punct_word), (c.kind_phrase, self.phrase),
            (c.kind_random_chars, self.random_chars),
        ])
        self.cases, self.case_cum = _weighted(
            [(c.case_lower, str.lower), (c.case_upper, str.upper), (c.case_title, _title)]
        )
        self.symbols = "".join(ch for ch in config.charset if not ch.isalnum() and ch != " ")
        self.alnum_chars = "".join(ch for ch in config.charset if ch.isalnum()) or config.charset.strip()
        self.number_makers: list[Callable[[random.Random], str]] = [
            _integer, _price, _percent, _date, _time, _phone, _code, _ordinal, _measure, _decimal,
        ]

    def sample(self, r: random.Random) -> str:
        """A text of min_length..max_length characters, drawn with ``r``."""
        c = self.config
        for _ in range(100):
            kind = r.choices(self.kinds, cum_weights=self.kind_cum)[0]
            text = kind(r)  # type: ignore[operator]
            if c.min_length <= len(text) <= c.max_length and text.strip() == text and set(text) <= self.allowed:
                return text
        return self.word(r)[: c.max_length]

    def case(self, r: random.Random, text: str) -> str:
        """``text`` in lower, UPPER or Title case."""
        return r.choices(self.cases, cum_weights=self.case_cum)[0](text)  # type: ignore[operator]

    def raw_word(self, r: random.Random) -> str:
        """A lexicon word: by frequency rank, or (length_balance of the time) with a uniform length."""
        if r.random() < self.config.length_balance:
            return r.choice(self.by_length[r.choice(self.lengths)])
        return self.words[int(len(self.words) * r.random() ** self.config.word_rank_power)]

    def word(self, r: random.Random) -> str:
        """A cased lexicon word."""
        return self.case(r, self.raw_word(r))

    def number(self, r: random.Random) -> str:
        """A price, date, time, phone number, code, ordinal, measure or plain number."""
        return r.choice(self.number_makers)(r)

    def alnum(self, r: random.Random) -> str:
        """A random letters-and-digits string (licence plates, part numbers)."""
        n = r.randint(1, min(12, self.config.max_length))
        style = r.random()
        if style < 0.4:
            pool = UPPER + DIGITS
        elif style < 0.7:
            pool = self.alnum_chars
        else:
            pool = string.ascii_lowercase + DIGITS
        return "".join(r.choice(pool) for _ in range(n))

    def random_chars(self, r: random.Random) -> str:
        """Any charset characters (rare symbols included), length uniform up to max_length."""
        n = r.randint(max(self.config.min_length, 1), self.config.max_length)
        pool = self.config.charset.replace(" ", "")
        return "".join(r.choice(pool) for _ in range(n))

    def punct_word(self, r: random.Random) -> str:
        """A word with punctuation: don't, e-mail, (24), "Hello", www.site.com, #tag."""
        w = self.word(r)
        u = r.random()
        if u < 0.12:
            return self.case(r, r.choice(self.contractions)) if self.contractions else w + "'s"
        if u < 0.3:
            return w + r.choice(".,!?:;") if r.random() < 0.85 else w + r.choice(["...", "!!", "?!"])
        if u < 0.42:
            return w + r.choice("-/&+_") + self.case(r, r.choice(self.short_words or self.words))
        if u < 0.55:
            left, right = r.choice(['()', '""', "''", "[]", "{}", "<>", "**", "``"])
            inner = w if r.random() < 0.7 else str(r.randint(0, 999))
            return left + inner + right
        if u < 0.65:
            return r.choice("#@$*~^|\\=") + w
        if u < 0.75:
            return w + r.choice(["'s", "'S", "s'", "%", "*", "=", "|", "~", "^", "\\"])
        if u < 0.85:
            tld = r.choice(["com", "org", "net", "co.uk", "de", "io"])
            host = w.lower() + "." + tld
            return ("www." + host) if r.random() < 0.5 else host
        return w[: len(w) // 2] + r.choice("-.'") + w[len(w) // 2 :] if len(w) > 3 else w + "-"

    def phrase(self, r: random.Random) -> str:
        """Two or three short words separated by single spaces, sometimes with a number."""
        n = r.choice([2, 2, 2, 3])
        parts = [r.choice(self.short_words or self.words) for _ in range(n)]
        if r.random() < 0.2:
            parts[r.randrange(n)] = self.number(r)
        return self.case(r, " ".join(parts))

    def line(self, r: random.Random) -> str:
        """A multi-word line: ``multiword_words`` lexicon words one space apart, sometimes with ", . - &", cased as a
        whole, at most ``multiword_max_length`` characters (fewer words when long ones do not fit)."""
        c = self.config
        lo, hi = c.multiword_words
        n = r.randint(lo, hi)
        limit = c.multiword_max_length
        parts: list[str] = []
        for _ in range(20):  # long words are redrawn, so lines of n words stay the common case
            parts = [self.raw_word(r) for _ in range(n)]
            if sum(map(len, parts)) + n - 1 <= limit:
                break
        while len(parts) > 1 and sum(map(len, parts)) + len(parts) - 1 > limit:
            parts.pop(r.randrange(len(parts)))
        if len(parts) > 1 and r.random() < c.multiword_punct:
            parts = _punctuate(r, parts, limit, self.allowed)
        text = self.case(r, " ".join(parts))
        return text if len(text) <= limit else text[:limit].rstrip()


def _punctuate(r: random.Random, parts: list[str], limit: int, allowed: set[str]) -> list[str]:
    """``parts`` with one mark as signs and headings use it: "Food, Drinks", "Open Daily.", "Bed & Breakfast",
    "Exit - Parking"; unchanged when the mark does not fit ``limit`` or the charset."""
    mark = r.choice(",.&-")
    out = list(parts)
    if mark == ",":
        k = r.randrange(len(out) - 1)
        out[k] += ","
    elif mark == ".":
        out[-1] += "."
    else:
        out.insert(r.randrange(1, len(out)), mark)  # a word of its own between two words
    if mark not in allowed or sum(map(len, out)) + len(out) - 1 > limit:
        return parts
    return out


def _title(text: str) -> str:
    """Capitalise the first letter of each space-separated word (``don't`` -> ``Don't``)."""
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice(DIGITS) for _ in range(n))


def _integer(r: random.Random) -> str:
    n = r.choice([1, 1, 2, 2, 3, 4, 5, 6, 7])
    value = str(r.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1))
    return f"{int(value):,}" if n > 3 and r.random() < 0.5 else value


def _price(r: random.Random) -> str:
    whole = r.choice([r.randint(0, 9), r.randint(10, 99), r.randint(100, 9999)])
    cents = r.choice(["99", "95", "49", "00", "50", f"{r.randint(0, 99):02d}"])
    body = f"{whole:,}" if whole >= 1000 and r.random() < 0.5 else str(whole)
    if r.random() < 0.75:
        body += "." + cents
    return r.choice(["$", "$", "", "-$", "+"]) + body if r.random() < 0.85 else body + r.choice(["$", "c", "p"])


def _percent(r: random.Random) -> str:
    v = str(r.randint(1, 100)) if r.random() < 0.7 else f"{r.uniform(0, 99):.1f}"
    return r.choice(["", "", "-", "+"]) + v + "%"


def _date(r: random.Random) -> str:
    d, m, y = r.randint(1, 31), r.randint(1, 12), r.randint(1950, 2039)
    sep = r.choice("/.-")
    style = r.randrange(5)
    if style == 0:
        return f"{d:02d}{sep}{m:02d}{sep}{y}"
    if style == 1:
        return f"{y}-{m:02d}-{d:02d}"
    if style == 2:
        return f"{m}{sep}{d}{sep}{y % 100:02d}"
    if style == 3:
        return f"{d}/{m}"
    return str(y) if r.random() < 0.5 else f"'{y % 100:02d}"


def _time(r: random.Random) -> str:
    h, m = r.randint(0, 23), r.choice([0, 0, 15, 30, 45, r.randint(0, 59)])
    if r.random() < 0.5:
        return f"{h:02d}:{m:02d}" if r.random() < 0.5 else f"{h}:{m:02d}"
    suffix = r.choice(["am", "pm", "AM", "PM", "a.m.", "p.m."])
    h12 = h % 12 or 12
    clock = f"{h12}:{m:02d}" if m or r.random() < 0.5 else str(h12)
    space = " " if len(suffix) == 2 and r.random() < 0.5 else ""
    return clock + space + suffix


def _phone(r: random.Random) -> str:
    style = r.randrange(5)
    if style == 0:
        return f"{_digits(r, 3)}-{_digits(r, 4)}"
    if style == 1:
        return f"({_digits(r, 3)}) {_digits(r, 3)}-{_digits(r, 4)}"
    if style == 2:
        return f"+{r.randint(1, 99)}-{_digits(r, 3)}-{_digits(r, 3)}-{_digits(r, 4)}"
    if style == 3:
        return f"{_digits(r, 3)}.{_digits(r, 3)}.{_digits(r, 4)}"
    return f"0{_digits(r, 2)} {_digits(r, 4)} {_digits(r, 4)}"


def _code(r: random.Random) -> str:
    style = r.randrange(6)
    if style == 0:
        return "".join(r.choice(UPPER) for _ in range(r.randint(1, 3))) + r.choice(["-", "", " "]) + _digits(r, r.randint(1, 4))
    if style == 1:
        return r.choice(["No.", "no.", "#", "Nr.", "Rt.", "I-", "A", "B", "Apt."]) + str(r.randint(1, 999))
    if style == 2:
        return _digits(r, r.randint(2, 5)) + r.choice(UPPER)
    if style == 3:
        return f"{r.choice(UPPER)}{_digits(r, 1)}{r.choice(UPPER)} {_digits(r, 1)}{r.choice(UPPER)}{r.choice(UPPER)}"
    if style == 4:
        return f"{_digits(r, 3)}-{_digits(r, 2)}-{_digits(r, 4)}"
    return r.choice(["SKU", "REF", "ID", "Ref", "Code", "Tel", "Fax"]) + r.choice([":", "#", ": ", " "]) + _digits(r, r.randint(3, 7))


def _ordinal(r: random.Random) -> str:
    n = r.randint(1, 120)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix.upper() if r.random() < 0.3 else suffix}"


def _measure(r: random.Random) -> str:
    v = str(r.randint(1, 999)) if r.random() < 0.7 else f"{r.uniform(0, 99):.1f}"
    unit = r.choice(["kg", "g", "mg", "lb", "lbs", "oz", "ml", "L", "cm", "mm", "km", "m", "ft", "in", "mph", "km/h", "KB", "GB", "W", "V", "x"])
    if unit == "x":
        return f"{r.randint(1, 99)}x{r.randint(1, 99)}"
    return v + r.choice(["", "", " "]) + unit


def _decimal(r: random.Random) -> str:
    return f"{r.uniform(-100, 1000):.{r.randint(1, 3)}f}"
