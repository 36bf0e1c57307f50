"""Tests of crnn.decoding.lm_decode (prefix beam search with a character language model) and `decoder="lm"` in ctc_decode."""

from __future__ import annotations

import string
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from crnn.decoding import char_lm
from crnn.decoding.char_lm import CharLM, default_lm_path, load_lm
from crnn.charset import BLANK, Charset
from crnn.decoding.ctc_decode import (
    DECODERS,
    _text_char_confidences,
    _viterbi_batch_char_confidences,
    beam_search_decode,
    decode,
    sequence_log_likelihood,
)
from crnn.decoding.lexicon import Lexicon
from crnn.decoding.lm_decode import LM_WEIGHT, lm_beam_ids, lm_symbols
from crnn_training.char_lm import estimate
from tests import reference_lm_decode as reference
from tests.reference_lm_decode import reference_decode

CHARS = string.ascii_letters + string.digits + "-@"
CHARSET = Charset(CHARS)
WORDS = ["hello", "hollow", "help", "yellow", "tell", "shell", "cold", "clock", "lock", "look", "book", "cook"] * 3


@pytest.fixture(scope="module")
def lm() -> CharLM:
    # '@' is outside the model's alphabet: it reads as UNK.
    return estimate(WORDS, string.ascii_lowercase + string.digits + "-", order=5)


def lm_prefix_beam_search(log_probs: np.ndarray, lm: CharLM, symbols: list[int], beam_width: int = 10,
                          alpha: float = 0.35, beta: float = 1.0) -> list[int]:
    """The batched search on one image (T, C)."""
    assert symbols == lm_symbols(CHARSET, lm)
    return lm_beam_ids(log_probs[None], [len(log_probs)], CHARSET, lm, beam_width, alpha, beta)[0]


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
        lm_beam_ids(spell("a")[None, :, :5], [3], CHARSET, lm, 5)
    with pytest.raises(ValueError, match="shape"):
        lm_beam_ids(spell("a"), [3], CHARSET, lm, 5)
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


# ---------------------------------------------------------------------------------------------------------------
# The batched search against the reference (the per-image Python search it replaced, tests/reference_lm_decode.py):
# the same texts, confidences and character confidences, on cases chosen to be hard for a reimplementation.
# ---------------------------------------------------------------------------------------------------------------

SHIPPED = Charset(string.digits + string.ascii_letters + string.punctuation + " ")


def normalise(logits: np.ndarray) -> np.ndarray:
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)


def spelled(charset: Charset, texts: list[str], gap: bool = True, peak: float = 0.9) -> np.ndarray:
    """(B, T, C): each text spelled (char, blank, ... or char, char, ... without gaps), the rest share 1 - peak."""
    frames = max(2 * len(t) + 1 for t in texts)
    out = np.full((len(texts), frames, charset.num_classes), (1 - peak) / (charset.num_classes - 1))
    out[:, :, BLANK] = peak
    for b, text in enumerate(texts):
        for i, c in enumerate(text):
            t = 2 * i + 1 if gap else i + 1
            out[b, t] = (1 - peak) / (charset.num_classes - 1)
            out[b, t, charset.encode(c)[0]] = peak
    return np.log(out / out.sum(-1, keepdims=True))


def hard_cases(charset: Charset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Batches of (log_probs (B, T, C), lengths (B,)) named after what makes them hard."""
    g = np.random.default_rng(7)
    c = charset.num_classes
    enc = lambda s: charset.encode(s)[0]  # noqa: E731
    cases = {}
    # Exact ties: two classes equally likely in a frame, and case variants (same language-model score: "Hello"
    # and "hello" tie exactly, so only the order of insertion can decide).
    tie = np.full((3, 7, c), 1e-3)
    tie[:, :, BLANK] = 0.5
    for b, (x, y) in enumerate([("h", "H"), ("o", "0"), ("l", "I")]):
        tie[b, 1, enc(x)] = tie[b, 1, enc(y)] = 0.4
        tie[b, 3, enc("e")] = tie[b, 5, enc("l")] = 0.8
    tie[2, 3, BLANK] = tie[2, 3, enc("e")] = 0.45  # the blank ties a character too
    cases["ties"] = (np.log(tie / tie.sum(-1, keepdims=True)), np.array([7, 7, 7]))
    # Repeated characters, with and without the blank a repeat needs, and runs of one character.
    lp = np.concatenate([spelled(charset, ["book", "aaaa", "hello", "llll"]),
                         spelled(charset, ["book", "aaaa", "hello", "llll"], gap=False, peak=0.6)], axis=0)
    cases["repeats"] = (lp, np.array([9, 9, 11, 9, 5, 5, 6, 5]))
    # Blanks: all blank, blank with faint characters, no frames, one frame; garbage in the padding frames.
    blank = normalise(g.normal(0, 1, (5, 12, c)) - 12.0)
    blank[:, :, BLANK] = 0.0
    blank = normalise(blank)
    blank[1, 4] = normalise(np.log(np.r_[0.5, np.full(c - 1, 0.5 / (c - 1))]))
    cases["blanks"] = (np.where(np.arange(12)[None, :, None] < np.array([12, 12, 0, 1, 3])[:, None, None], blank,
                                g.normal(0, 5, blank.shape)), np.array([12, 12, 0, 1, 3]))
    # Long sequences: 300 frames of peaked random outputs.
    logits = g.normal(0, 1, (2, 300, c))
    logits[np.arange(2)[:, None], np.arange(300)[None], g.integers(0, c, (2, 300))] += 7
    logits[:, :, BLANK] += g.normal(3, 2, (2, 300))
    cases["long"] = (normalise(logits), np.array([300, 257]))
    # Near-uniform frames: every class above the pruning threshold, the most entries a frame can have.
    cases["near-uniform"] = (normalise(g.normal(0, 0.05, (3, 15, c))), np.array([15, 9, 15]))
    # Like a real network's outputs: a few likely classes per frame, lengths mixed in one batch.
    logits = g.normal(0, 1, (16, 40, c))
    for _ in range(3):
        logits[np.arange(16)[:, None], np.arange(40)[None], g.integers(0, c, (16, 40))] += g.uniform(2, 9, (16, 40))
    logits[:, :, BLANK] += g.normal(4, 3, (16, 40))
    cases["realistic"] = (normalise(logits), g.integers(1, 41, 16))
    return cases


CASES = list(hard_cases(SHIPPED))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("beam_width", [1, 2, 10, 16])
@pytest.mark.parametrize("lm_weight", [None, 0.0, 1.5])
def test_fast_lm_decoder_gives_the_references_predictions(case: str, beam_width: int, lm_weight: float | None) -> None:
    """decode(decoder="lm") with the shipped language model: texts, confidences and character confidences equal."""
    log_probs, lengths = hard_cases(SHIPPED)[case]
    fast = decode(log_probs, lengths, SHIPPED, decoder="lm", beam_width=beam_width, lm_weight=lm_weight)
    slow = reference_decode(log_probs, lengths, SHIPPED, "lm", load_lm(), beam_width,
                            LM_WEIGHT if lm_weight is None else lm_weight)
    assert fast == slow


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("beam_width", [1, 3, 10])
def test_fast_beam_decoder_gives_the_references_predictions(case: str, beam_width: int) -> None:
    log_probs, lengths = hard_cases(SHIPPED)[case]
    fast = decode(log_probs, lengths, SHIPPED, decoder="beam", beam_width=beam_width)
    assert fast == reference_decode(log_probs, lengths, SHIPPED, "beam", None, beam_width)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("alpha, beta", [(0.0, 0.0), (0.35, 1.0), (0.7, 0.5), (2.0, 3.0), (0.5, -1.0)])
def test_fast_search_equals_the_reference_with_any_weights(lm: CharLM, seed: int, alpha: float, beta: float) -> None:
    """The search alone, with another (small, order-5) language model, unknown characters ('@') and any beta."""
    log_probs = np.stack([random_log_probs(seed * 10 + i, 24, peak=1.0 + i) for i in range(5)])
    lengths = [24, 17, 1, 0, 24]
    assert lm_beam_ids(log_probs, lengths, CHARSET, lm, 6, alpha, beta) == \
        reference.lm_beam_ids(log_probs, lengths, CHARSET, lm, 6, alpha, beta)


@pytest.mark.parametrize("words", [["hello", "yellow", "HELP", "book", "b00k"],
                                   [f"w{i:03d}{c}" for i in range(300) for c in "ab"] + ["hello", "book"]],
                         ids=["small", "large"])
def test_lexicon_decoding_on_the_fast_search_gives_the_references_predictions(words: list[str]) -> None:
    """With a lexicon the decoder's reading is the query: the same readings, so the same words and flags."""
    lexicon = Lexicon(words, SHIPPED)
    for case in ["repeats", "ties", "realistic"]:
        log_probs, lengths = hard_cases(SHIPPED)[case]
        fast = decode(log_probs, lengths, SHIPPED, decoder="lm", lexicon=lexicon)
        assert fast == reference_decode(log_probs, lengths, SHIPPED, "lm", load_lm(), lexicon=lexicon)


def test_an_images_reading_does_not_depend_on_its_batch() -> None:
    log_probs, lengths = hard_cases(SHIPPED)["realistic"]
    together = decode(log_probs, lengths, SHIPPED, decoder="lm")
    alone = [decode(log_probs[b:b + 1, :n], [n], SHIPPED, decoder="lm")[0] for b, n in enumerate(lengths)]
    assert together == alone


def test_the_search_survives_the_language_models_table_being_emptied(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full table is emptied mid-search (here every few rows, also by other threads): the beams fetch their rows
    again, and the texts stay the reference's."""
    lm = CharLM.load(default_lm_path())  # a fresh model: its table starts empty
    monkeypatch.setattr(char_lm, "TABLE_LIMIT", 60)
    monkeypatch.setattr(char_lm, "MERGE_KEYS", 8)
    log_probs, lengths = hard_cases(SHIPPED)["realistic"]
    log_probs, lengths = log_probs[:3], lengths[:3]
    expected = reference.lm_beam_ids(log_probs, lengths, SHIPPED, lm, beam_width=4)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: lm_beam_ids(log_probs, lengths, SHIPPED, lm, beam_width=4), range(6)))
    assert all(r == expected for r in results)
    assert lm._table.generation > 0


@pytest.mark.parametrize("seed", range(4))
def test_batched_character_confidences_equal_the_per_image_ones(seed: int) -> None:
    """Including texts that cannot be aligned (longer than the frames allow), repeats, empty texts and no frames."""
    g = np.random.default_rng(seed)
    log_probs = np.stack([random_log_probs(seed * 10 + i, 12) for i in range(6)])
    lengths = [12, 7, 0, 3, 12, 1]
    texts = [g.integers(1, CHARSET.num_classes, g.integers(0, 9)).tolist() for _ in lengths]
    texts[1] = [5, 5, 5, 5]  # 4 repeats need 7 frames: just fits
    texts[3] = [5, 5]  # needs 3
    texts[5] = [1, 2]  # cannot fit in one frame
    expected = [reference._viterbi_char_confidences(log_probs[b, :n], t)
                for b, (n, t) in enumerate(zip(lengths, texts))]
    assert _viterbi_batch_char_confidences(log_probs, lengths, texts) == expected


@pytest.mark.parametrize("tie", ["none", "blank-and-char", "two-chars", "near", "clear-by-a-hair"])
def test_character_confidences_of_a_greedy_reading_equal_the_viterbi_ones(tie: str) -> None:
    """A text equal to the best path's takes the greedy confidences only where no other alignment can tie it:
    frames whose two best classes are (nearly) equal go through the Viterbi pass, whose results are the reference."""
    log_probs = np.stack([random_log_probs(i, 14, peak=3.0) for i in range(4)])
    for b in range(4):
        t = 2 + b
        top = int(log_probs[b, t].argmax())
        other = BLANK if top != BLANK else 1
        if tie != "none":
            other = 5 if tie == "two-chars" and top != 5 else other
            gap = {"blank-and-char": 0.0, "two-chars": 0.0, "near": 1e-12, "clear-by-a-hair": 1e-6}[tie]
            row = log_probs[b, t].copy()
            row[other] = row[top] - gap
            log_probs[b, t] = row - np.logaddexp.reduce(row)
    lengths = [14, 14, 9, 12]
    greedy = [list(map(int, CHARSET.encode(p.text))) for p in decode(log_probs, lengths, CHARSET, decoder="greedy")]
    expected = [reference._viterbi_char_confidences(log_probs[b, :n], ids)
                for b, (n, ids) in enumerate(zip(lengths, greedy))]
    assert _text_char_confidences(log_probs, lengths, greedy) == expected
