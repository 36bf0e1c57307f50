"""Tests of crnn.lm_decode (prefix beam search with a character language model) and `decoder="lm"` in ctc_decode."""

from __future__ import annotations

import string

import numpy as np
import pytest

from crnn.char_lm import CharLM
from crnn.charset import BLANK, Charset
from crnn.ctc_decode import DECODERS, beam_search_decode, decode, sequence_log_likelihood
from crnn.lm_decode import lm_beam_ids, lm_prefix_beam_search, lm_symbols
from crnn_training.char_lm import estimate

CHARS = string.ascii_letters + string.digits + "-@"
CHARSET = Charset(CHARS)
WORDS = ["hello", "hollow", "help", "yellow", "tell", "shell", "cold", "clock", "lock", "look", "book", "cook"] * 3


@pytest.fixture(scope="module")
def lm() -> CharLM:
    # '@' is outside the model's alphabet: it reads as UNK.
    return estimate(WORDS, string.ascii_lowercase + string.digits + "-", order=5)


def random_log_probs(seed: int, frames: int, peak: float = 3.0) -> np.ndarray:
    """(T, C) log-softmax of random logits, a few classes made likely per frame (like a real model's outputs)."""
    g = np.random.default_rng(seed)
    logits = g.normal(0, 1, (frames, CHARSET.num_classes))
    logits[np.arange(frames), g.integers(0, CHARSET.num_classes, frames)] += peak * 2
    logits[np.arange(frames), g.integers(0, CHARSET.num_classes, frames)] += peak
    logits[:, BLANK] += g.normal(peak, 1.5, frames)
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


def from_rows(rows: list[dict[str, float]]) -> np.ndarray:
    """(T, C) log-probs: each frame gives some characters (or '' for the blank) a probability, the rest share what is left."""
    out = np.empty((len(rows), CHARSET.num_classes))
    for t, row in enumerate(rows):
        rest = (1 - sum(row.values())) / (CHARSET.num_classes - len(row))
        out[t] = rest
        for char, p in row.items():
            out[t, BLANK if char == "" else CHARSET.encode(char)[0]] = p
    return np.log(out)


def spell(text: str, ambiguous: dict[int, tuple[str, float]] | None = None, peak: float = 0.96) -> np.ndarray:
    """Frames spelling ``text`` (char, blank, ...); at position i, ``ambiguous[i] = (other, p)`` gives ``other`` p."""
    rows: list[dict[str, float]] = [{"": peak}]
    for i, char in enumerate(text):
        if ambiguous and i in ambiguous:
            other, p = ambiguous[i]
            rows.append({other: p, char: peak - p})
        else:
            rows.append({char: peak})
        rows.append({"": peak})
    return from_rows(rows)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("beam_width", [1, 3, 10])
def test_alpha_zero_equals_plain_beam_search(lm: CharLM, seed: int, beam_width: int) -> None:
    log_probs = random_log_probs(seed, frames=8 + seed)
    plain = beam_search_decode(log_probs[None], np.array([len(log_probs)]), CHARSET, beam_width)
    ids = lm_prefix_beam_search(log_probs, lm, lm_symbols(CHARSET, lm), beam_width, alpha=0.0, beta=0.0)
    assert CHARSET.decode(ids) == plain[0].text


@pytest.mark.parametrize("text, position, other", [("hello", 1, "o"), ("look", 0, "I"), ("cold", 2, "1"), ("book", 3, "x")])
def test_the_language_model_flips_an_ambiguous_character(lm: CharLM, text: str, position: int, other: str) -> None:
    """The image favours a wrong character a little (0.50 vs 0.46): plain beam search reads it, the LM fixes it."""
    log_probs = spell(text, {position: (other, 0.50)})
    misread = text[:position] + other + text[position + 1:]
    plain = beam_search_decode(log_probs[None], np.array([len(log_probs)]), CHARSET, 10)
    assert plain[0].text == misread
    ids = lm_prefix_beam_search(log_probs, lm, lm_symbols(CHARSET, lm), 10, alpha=0.5, beta=0.0)
    assert CHARSET.decode(ids) == text


def test_a_clear_reading_stands_against_the_language_model(lm: CharLM) -> None:
    """A non-word the image shows clearly is kept: the LM only decides between readings the image allows."""
    log_probs = spell("hxqlo7")
    ids = lm_prefix_beam_search(log_probs, lm, lm_symbols(CHARSET, lm), 10, alpha=0.5, beta=1.0)
    assert CHARSET.decode(ids) == "hxqlo7"


def test_case_comes_from_the_image(lm: CharLM) -> None:
    log_probs = spell("HeLlo", {1: ("a", 0.5)})
    ids = lm_prefix_beam_search(log_probs, lm, lm_symbols(CHARSET, lm), 10, alpha=0.5, beta=0.0)
    assert CHARSET.decode(ids) == "HeLlo"


def test_unknown_characters_are_read(lm: CharLM) -> None:
    """'@' is in the charset but not in the model's alphabet: it scores as UNK and can still be read."""
    assert lm_symbols(CHARSET, lm)[CHARSET.encode("@")[0]] == lm.unk
    ids = lm_prefix_beam_search(spell("a@b"), lm, lm_symbols(CHARSET, lm), 10, alpha=0.5, beta=1.0)
    assert CHARSET.decode(ids) == "a@b"


@pytest.mark.parametrize("frames", [0, 1, 5])
def test_empty_outputs(lm: CharLM, frames: int) -> None:
    blank = np.full((frames, CHARSET.num_classes), np.log(0.01 / (CHARSET.num_classes - 1)))
    blank[:, BLANK] = np.log(0.99)
    assert lm_prefix_beam_search(blank, lm, lm_symbols(CHARSET, lm), 10) == []


def test_results_are_deterministic(lm: CharLM) -> None:
    log_probs = np.stack([random_log_probs(s, 20) for s in range(6)])
    first = lm_beam_ids(log_probs, [20, 15, 20, 3, 0, 20], CHARSET, lm, 8, 0.7, 0.5)
    for _ in range(2):
        assert lm_beam_ids(log_probs, [20, 15, 20, 3, 0, 20], CHARSET, lm, 8, 0.7, 0.5) == first


def test_bad_arguments_are_refused(lm: CharLM) -> None:
    with pytest.raises(ValueError, match="beam_width"):
        lm_prefix_beam_search(spell("a"), lm, lm_symbols(CHARSET, lm), 0)
    with pytest.raises(ValueError, match="shape"):
        lm_prefix_beam_search(spell("a")[:, :5], lm, lm_symbols(CHARSET, lm), 5)
    with pytest.raises(ValueError, match="lm_weight"):
        lm_beam_ids(spell("a")[None], [3], CHARSET, lm, 5, alpha=-1.0)


def test_decode_lm_uses_the_shipped_model_and_keeps_ctc_confidences() -> None:
    """decode(decoder="lm"): padded frames ignored, confidence = P(text | image) from the CTC outputs alone."""
    assert "lm" in DECODERS
    charset = Charset(string.digits + string.ascii_letters + string.punctuation + " ")
    lp = np.full((2, 9, charset.num_classes), -12.0)
    for b, text in enumerate(["Dog", "at"]):
        lp[b, :, BLANK] = -0.01
        for t, c in zip((1, 3, 5), text):
            lp[b, t, charset.encode(c)[0]] = -0.01
            lp[b, t, BLANK] = -12.0
    lengths = np.array([9, 5])
    lp = lp - np.logaddexp.reduce(lp, axis=-1, keepdims=True)
    preds = decode(lp, lengths, charset, decoder="lm", beam_width=5)
    assert [p.text for p in preds] == ["Dog", "at"]
    expected = np.exp(sequence_log_likelihood(lp, lengths, [charset.encode("Dog"), charset.encode("at")]))
    assert np.allclose([p.confidence for p in preds], expected)
    assert all(len(p.char_confidences) == len(p.text) for p in preds)
    same = decode(lp, lengths, charset, decoder="lm", beam_width=5, lm_weight=0.0)
    assert [p.text for p in same] == [p.text for p in decode(lp, lengths, charset, decoder="beam", beam_width=5)]
