import string

import pytest

from crnn.charset import BLANK, DEFAULT_CHARS, Charset
from crnn.errors import UnsupportedCharacterError


def test_default_charset_is_printable_ascii_plus_space() -> None:
    cs = Charset()
    assert len(cs.chars) == 95
    assert set(cs.chars) == set(string.printable[:94]) | {" "}
    assert cs.num_classes == 96 and BLANK == 0


@pytest.mark.parametrize("text", ["", "a", "Hello, World!", "$9.99", "(24) don't e-mail", DEFAULT_CHARS])
def test_round_trip(text: str) -> None:
    cs = Charset()
    ids = cs.encode(text)
    assert all(0 < i < cs.num_classes for i in ids)
    assert cs.decode(ids) == text


def test_decode_skips_blank() -> None:
    cs = Charset("abc")
    assert cs.decode([0, 1, 0, 2, 3, 0]) == "abc"


@pytest.mark.parametrize("text,bad", [("café", "é"), ("tab\there", "\t"), ("€uro ñ", "€ñ")])
def test_encode_names_unsupported_characters(text: str, bad: str) -> None:
    with pytest.raises(UnsupportedCharacterError) as e:
        Charset().encode(text)
    for c in bad:
        assert repr(c)[1:-1] in str(e.value)


def test_decode_out_of_range() -> None:
    with pytest.raises(ValueError):
        Charset("ab").decode([3])


def test_duplicates_refused_and_dict_round_trip() -> None:
    with pytest.raises(ValueError):
        Charset("aba")
    cs = Charset("xyz")
    assert Charset.from_dict(cs.to_dict()) == cs
