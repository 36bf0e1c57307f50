"""The charset: maps text to CTC class indices and back (index 0 is the CTC blank)."""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence

from crnn.errors import UnsupportedCharacterError

# The 94 printable ASCII characters (digits, letters, punctuation) plus the space.
DEFAULT_CHARS: str = string.digits + string.ascii_letters + string.punctuation + " "
BLANK: int = 0


class Charset:
    """An ordered set of characters; class ``i + 1`` is ``chars[i]`` and class 0 is the CTC blank."""

    def __init__(self, chars: str = DEFAULT_CHARS) -> None:
        if not chars:
            raise ValueError("a charset needs at least one character")
        duplicates = sorted({c for c in chars if chars.count(c) > 1})
        if duplicates:
            raise ValueError(f"charset has duplicate characters: {duplicates!r}")
        self.chars = chars
        self._index = {c: i + 1 for i, c in enumerate(chars)}

    @property
    def num_classes(self) -> int:
        """Number of output classes of a model using this charset (characters + blank)."""
        return len(self.chars) + 1

    def __len__(self) -> int:
        return self.num_classes

    def __contains__(self, char: object) -> bool:
        return char in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Charset) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"Charset({self.chars!r})"

    def unsupported(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that this charset lacks, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self._index))

    def supports(self, text: str) -> bool:
        """Whether every character of ``text`` can be encoded."""
        return all(c in self._index for c in text)

    def encode(self, text: str) -> list[int]:
        """Class indices (1..len(chars)) of ``text``; raises UnsupportedCharacterError naming bad characters."""
        try:
            return [self._index[c] for c in text]
        except KeyError:
            bad = self.unsupported(text)
            raise UnsupportedCharacterError(
                f"text {text!r} has characters outside the charset: {''.join(bad)!r}"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of class indices, skipping the blank; no CTC collapsing (see ctc_decode for that)."""
        chars = self.chars
        out = []
        for i in ids:
            i = int(i)
            if i == BLANK:
                continue
            if not 0 < i <= len(chars):
                raise ValueError(f"class index {i} is outside this charset (1..{len(chars)})")
            out.append(chars[i - 1])
        return "".join(out)

    def to_dict(self) -> dict[str, str]:
        """A JSON-able description, stored in every checkpoint."""
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Charset:
        """Rebuild a charset stored with :meth:`to_dict`."""
        return cls(data["chars"])

    def subset_indices(self, chars: Sequence[str]) -> list[int]:
        """Class indices of ``chars`` (used to carry output rows across charsets when fine-tuning)."""
        return [self._index[c] for c in chars]
