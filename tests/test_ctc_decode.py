"""Tests of crnn.decoding.ctc_decode: likelihoods, greedy, prefix beam search and lexicon decoding."""

from __future__ import annotations

import itertools
import math
import string

import numpy as np
import pytest
import torch

from crnn.charset import BLANK, Charset
from crnn.errors import LexiconFileError
from crnn.decoding.ctc_decode import (
    _word_beats_reading,
    beam_search_decode,
    decode,
    greedy_decode,
    lexicon_decode,
    sequence_log_likelihood,
)
from crnn.decoding.lexicon import SMALL_LEXICON_WORDS, Lexicon, distance_bound, dropped_report, read_image_lexicons

AB = Charset("ab")
LOWER = Charset(string.ascii_lowercase)


def as_log_probs(*frames: list[float]) -> torch.Tensor:
    """(1, T, C) log-probs from per-frame probability rows."""
    return torch.tensor([frames], dtype=torch.float64).log()


def peaked(path: list[int], num_classes: int, peak: float = 0.97) -> torch.Tensor:
    """(T, C) log-probs with ``peak`` on each frame's path label, the rest spread evenly."""
    rest = (1 - peak) / (num_classes - 1)
    probs = torch.full((len(path), num_classes), rest, dtype=torch.float64)
    probs[torch.arange(len(path)), torch.tensor(path)] = peak
    return probs.log()


def path_for(text: str, charset: Charset, frames_per_char: int = 2) -> list[int]:
    """A frame path spelling ``text``: each char repeated, separated by blanks."""
    path = [BLANK]
    for i in charset.encode(text):
        path += [i] * frames_per_char + [BLANK]
    return path


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    previous = BLANK
    for label in path:
        if label != BLANK and label != previous:
            out.append(label)
        previous = label
    return tuple(out)


def brute_force(log_probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """P(labelling) for every labelling, by enumerating all paths of log_probs (T, C)."""
    probs = log_probs.exp().numpy()
    frames, classes = probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(classes), repeat=frames):
        p = float(np.prod(probs[np.arange(frames), list(path)]))
        totals[collapse(path)] = totals.get(collapse(path), 0.0) + p
    return totals


def one(log_probs: torch.Tensor) -> torch.Tensor:
    return torch.tensor([log_probs.shape[1]])


ALL_DECODERS = [
    pytest.param(lambda lp, n, cs: greedy_decode(lp, n, cs), id="greedy"),
    pytest.param(lambda lp, n, cs: beam_search_decode(lp, n, cs, beam_width=10), id="beam"),
    pytest.param(lambda lp, n, cs: decode(lp, n, cs, "beam", beam_width=3), id="decode-beam3"),
]


# --- sequence_log_likelihood -------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_sequence_log_likelihood_matches_path_enumeration(seed: int) -> None:
    torch.manual_seed(seed)
    log_probs = torch.randn(1, 4, 3, dtype=torch.float64).log_softmax(-1)
    exact = brute_force(log_probs[0])
    labellings = [(), (1,), (2, 1), (1, 1), (1, 2, 1)]
    batch = log_probs.expand(len(labellings), -1, -1)
    got = sequence_log_likelihood(batch, torch.full((len(labellings),), 4), labellings)
    for labelling, value in zip(labellings, got.tolist()):
        assert value == pytest.approx(math.log(exact[labelling]), abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_sequence_log_likelihood_matches_torch_ctc_loss(seed: int) -> None:
    """The numpy forward algorithm equals torch's ctc_loss (the implementation it replaced) on ragged batches."""
    generator = torch.Generator().manual_seed(seed)
    batch, frames = 6, 15
    log_probs = (torch.randn(batch, frames, LOWER.num_classes, generator=generator, dtype=torch.float64) * 3).log_softmax(-1)
    lengths = torch.tensor([15, 12, 9, 6, 15, 3])
    targets = [[1, 2, 3], [4, 4, 5], [], [7, 7, 7, 7], [9] * 8, [2, 3]]
    expected = -torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), torch.tensor([i for t in targets for i in t]), lengths,
        torch.tensor([len(t) for t in targets]), blank=BLANK, reduction="none",
    )
    got = sequence_log_likelihood(log_probs.numpy(), lengths.numpy(), targets)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-10)


def test_sequence_log_likelihood_empty_and_impossible_targets() -> None:
    log_probs = torch.randn(3, 4, 3, dtype=torch.float64).log_softmax(-1)
    got = sequence_log_likelihood(log_probs, torch.tensor([4, 2, 2]), [[], [1, 1], [1, 2]])
    assert got[0].item() == pytest.approx(log_probs[0, :, BLANK].sum().item())
    assert got[1].item() == -math.inf  # "aa" needs a blank between: 3 frames
    assert math.isfinite(got[2].item())


def test_sequence_log_likelihood_rejects_blank_in_target() -> None:
    log_probs = torch.randn(1, 4, 3).log_softmax(-1)
    with pytest.raises(ValueError):
        sequence_log_likelihood(log_probs, torch.tensor([4]), [[0, 1]])


# --- greedy vs beam ----------------------------------------------------------------------------


def test_beam_finds_labelling_that_best_path_misses() -> None:
    # Best path is blank-blank (P=0.16, text ""), but "a" sums 0.35^2 + 2*0.35*0.4 = 0.4025.
    log_probs = as_log_probs([0.4, 0.35, 0.25], [0.4, 0.35, 0.25])
    greedy = greedy_decode(log_probs, one(log_probs), AB)[0]
    beam = beam_search_decode(log_probs, one(log_probs), AB)[0]
    assert greedy.text == ""
    assert greedy.confidence == pytest.approx(0.16)
    assert greedy.char_confidences == ()
    assert beam.text == "a"
    assert beam.confidence == pytest.approx(0.4025)
    assert beam.char_confidences == pytest.approx((0.35,))


def test_beam_beats_greedy_on_longer_input() -> None:
    # Best path -,-,-,b gives "b" (P=0.1807); "ab" spreads over many paths and reaches 0.264.
    log_probs = as_log_probs([0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.4, 0.1, 0.5])
    exact = brute_force(log_probs[0])
    best = max(exact, key=exact.get)
    greedy = greedy_decode(log_probs, one(log_probs), AB)[0]
    beam = beam_search_decode(log_probs, one(log_probs), AB, beam_width=10)[0]
    assert AB.encode(beam.text) == list(best)
    assert beam.confidence == pytest.approx(exact[best])
    assert (greedy.text, beam.text) == ("b", "ab")
    assert greedy.confidence == pytest.approx(0.1807)
    assert beam.confidence == pytest.approx(0.264)


@pytest.mark.parametrize("seed", range(6))
def test_wide_beam_is_exact_on_small_inputs(seed: int) -> None:
    torch.manual_seed(seed)
    log_probs = (torch.randn(1, 4, 3, dtype=torch.float64) * 1.5).log_softmax(-1)
    exact = brute_force(log_probs[0])
    best = max(exact, key=exact.get)
    beam = beam_search_decode(log_probs, one(log_probs), AB, beam_width=50)[0]
    assert AB.encode(beam.text) == list(best)
    assert beam.confidence == pytest.approx(exact[best])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("beam_width", [1, 5, 10])
def test_beam_equals_greedy_on_peaked_inputs(seed: int, beam_width: int) -> None:
    rng = np.random.default_rng(seed)
    paths = [rng.integers(0, LOWER.num_classes, size=20).tolist() for _ in range(4)]
    log_probs = torch.stack([peaked(p, LOWER.num_classes) for p in paths])
    lengths = torch.full((4,), 20)
    greedy = greedy_decode(log_probs, lengths, LOWER)
    beam = beam_search_decode(log_probs, lengths, LOWER, beam_width=beam_width)
    assert [p.text for p in beam] == [p.text for p in greedy]
    for g, b in zip(greedy, beam):
        assert b.confidence == pytest.approx(g.confidence)
        assert b.char_confidences == pytest.approx(g.char_confidences)


@pytest.mark.parametrize("decode_fn", ALL_DECODERS)
@pytest.mark.parametrize(
    ("path", "text"),
    [
        ([1, BLANK, 1], "aa"),
        ([1, 1, 1], "a"),
        ([1, 1, BLANK, BLANK, 1, 2, 2], "aab"),
        ([BLANK, BLANK, BLANK], ""),
    ],
)
def test_repeated_characters_need_a_blank(decode_fn, path: list[int], text: str) -> None:
    log_probs = peaked(path, AB.num_classes, peak=0.99).unsqueeze(0)
    assert decode_fn(log_probs, one(log_probs), AB)[0].text == text


# --- padding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", ["greedy", "beam", "lexicon"])
def test_padded_frames_are_ignored(decoder: str) -> None:
    torch.manual_seed(0)
    words = ["cat", "dog", "house", "tree"]
    lexicon = Lexicon(words, LOWER)
    samples = [peaked(path_for(w, LOWER), LOWER.num_classes, 0.8) for w in ("cat", "hose", "tre")]
    frames = 20
    batch = torch.randn(len(samples), frames, LOWER.num_classes, dtype=torch.float64).mul(5)
    batch = batch.log_softmax(-1)  # garbage everywhere, overwritten by the valid frames below
    for b, s in enumerate(samples):
        batch[b, : len(s)] = s
    lengths = torch.tensor([len(s) for s in samples])

    def run(lp: torch.Tensor, n: torch.Tensor):
        if decoder == "lexicon":
            return lexicon_decode(lp, n, LOWER, lexicon)
        return decode(lp, n, LOWER, decoder)

    padded = run(batch, lengths)
    for b, s in enumerate(samples):
        alone = run(s.unsqueeze(0), one(s.unsqueeze(0)))[0]
        assert padded[b].text == alone.text
        assert padded[b].confidence == pytest.approx(alone.confidence)
        assert padded[b].char_confidences == pytest.approx(alone.char_confidences)
    if decoder == "lexicon":
        assert [p.text for p in padded] == ["cat", "house", "tree"]


# --- confidences -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_greedy_confidence_is_sequence_likelihood(seed: int) -> None:
    torch.manual_seed(seed)
    log_probs = (torch.randn(3, 12, LOWER.num_classes) * 4).log_softmax(-1)
    lengths = torch.tensor([12, 7, 1])
    predictions = greedy_decode(log_probs, lengths, LOWER)
    expected = np.exp(sequence_log_likelihood(
        log_probs.double(), lengths, [LOWER.encode(p.text) for p in predictions]
    ))
    assert [p.confidence for p in predictions] == pytest.approx(expected.tolist(), rel=1e-9)


@pytest.mark.parametrize("decode_fn", ALL_DECODERS)
@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
def test_confidences_are_probabilities(decode_fn, scale: float) -> None:
    torch.manual_seed(1)
    log_probs = (torch.randn(4, 16, LOWER.num_classes) * scale).log_softmax(-1)
    lengths = torch.tensor([16, 10, 3, 0])
    for p in decode_fn(log_probs, lengths, LOWER):
        assert 0.0 <= p.confidence <= 1.0
        assert len(p.char_confidences) == len(p.text)
        assert all(0.0 <= c <= 1.0 for c in p.char_confidences)


def test_char_confidences_follow_best_alignment() -> None:
    # "ab" over 4 frames: best alignment a,a,b,b; char conf = max per-frame prob of each char.
    log_probs = as_log_probs(
        [0.1, 0.6, 0.3], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.2, 0.5]
    )
    for prediction in (
        greedy_decode(log_probs, one(log_probs), AB)[0],
        beam_search_decode(log_probs, one(log_probs), AB)[0],
    ):
        assert prediction.text == "ab"
        assert prediction.char_confidences == pytest.approx((0.8, 0.6))


def test_empty_text_confidence_is_all_blank_path() -> None:
    log_probs = as_log_probs([0.9, 0.05, 0.05], [0.8, 0.1, 0.1])
    for prediction in (
        greedy_decode(log_probs, one(log_probs), AB)[0],
        beam_search_decode(log_probs, one(log_probs), AB)[0],
    ):
        assert prediction.text == ""
        assert prediction.confidence == pytest.approx(0.72)
        assert prediction.char_confidences == ()


# --- lexicon -----------------------------------------------------------------------------------


def random_words(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_lowercase))
    return ["".join(rng.choice(letters, size=rng.integers(3, 11))) for _ in range(count)]


@pytest.fixture(scope="module")
def big_lexicon() -> tuple[list[str], Lexicon]:
    words = random_words(50_000, seed=0)
    return words, Lexicon(words, LOWER)


@pytest.mark.parametrize("index", [7, 12_345, 49_999])
@pytest.mark.parametrize("decoder", ["lexicon_decode", "decode-greedy", "decode-beam"])
def test_lexicon_picks_the_right_word(big_lexicon, index: int, decoder: str) -> None:
    words, lexicon = big_lexicon
    target = words[index]
    # One character is misread: the wrong one wins its frames, the right one comes second.
    path = path_for(target, LOWER)
    probs = peaked(path, LOWER.num_classes, peak=0.9).exp()
    position = 1 + 3 * (len(target) // 2)  # first frame of the middle character
    wrong = LOWER.encode("z" if target[len(target) // 2] != "z" else "y")[0]
    right = path[position]
    for frame in (position, position + 1):
        probs[frame] = 0.002
        probs[frame, wrong], probs[frame, right] = 0.55, 0.4
    log_probs = (probs / probs.sum(-1, keepdim=True)).log().unsqueeze(0)
    lengths = one(log_probs)

    assert greedy_decode(log_probs, lengths, LOWER)[0].text != target
    if decoder == "lexicon_decode":
        prediction = lexicon_decode(log_probs, lengths, LOWER, lexicon)[0]
    else:
        prediction = decode(log_probs, lengths, LOWER, decoder.split("-")[1], lexicon=lexicon)[0]
    assert prediction.text == target
    expected = float(np.exp(sequence_log_likelihood(log_probs, lengths, [LOWER.encode(target)])[0]))
    assert prediction.confidence == pytest.approx(expected)
    assert len(prediction.char_confidences) == len(target)


def test_small_lexicon_always_returns_one_of_its_words() -> None:
    lexicon = Lexicon(["abcdefghij", "zzzzzzzzzzzz"], LOWER)
    log_probs = peaked(path_for("abcxyz", LOWER), LOWER.num_classes).unsqueeze(0)
    prediction = lexicon_decode(log_probs, one(log_probs), LOWER, lexicon, max_distance=1)[0]
    assert prediction.text in {"abcdefghij", "zzzzzzzzzzzz"}
    assert prediction.in_lexicon is True
    assert 0.0 <= prediction.confidence <= 1.0


LETTERS = Charset(string.ascii_letters + string.digits)


def misread(text: str, charset: Charset, positions: list[int], peak: float = 0.9) -> torch.Tensor:
    """(1, T, C) log-probs spelling ``text`` where the characters at ``positions`` lose their frames to a wrong
    one (0.55) and come second (0.4): the greedy text differs there, the true text stays the likeliest word."""
    path = path_for(text, charset)
    probs = peaked(path, charset.num_classes, peak=peak).exp()
    for k in positions:
        frame = 1 + 3 * k  # first frame of character k
        right = path[frame]
        wrong_char = "q" if text[k].lower() != "q" else "x"
        wrong = charset.encode(wrong_char.upper() if text[k].isupper() and wrong_char.upper() in charset else wrong_char)[0]
        for f in (frame, frame + 1):
            probs[f] = 0.05 / (charset.num_classes - 2)
            probs[f, wrong], probs[f, right] = 0.55, 0.4
    return (probs / probs.sum(-1, keepdim=True)).log().unsqueeze(0)


@pytest.fixture(scope="module")
def big_cased_lexicon() -> list[str]:
    return random_words(20_000, seed=1)


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("shown", ["HELLO", "Hello", "hello", "HeLLo"])
@pytest.mark.parametrize("decoder", ["lexicon_decode", "decode-greedy", "decode-beam"])
def test_lower_case_list_reads_any_case_and_keeps_the_image_case(
    big_cased_lexicon, size: str, shown: str, decoder: str
) -> None:
    words = ["hello", "world", "help"] + (big_cased_lexicon if size == "large" else [])
    lexicon = Lexicon(words, LETTERS)
    assert lexicon.small == (size == "small")
    log_probs = misread(shown, LETTERS, [2])  # greedy text: one letter off, in the image's case
    lengths = one(log_probs)
    if decoder == "lexicon_decode":
        prediction = lexicon_decode(log_probs, lengths, LETTERS, lexicon)[0]
    else:
        prediction = decode(log_probs, lengths, LETTERS, decoder.split("-")[1], lexicon=lexicon)[0]
    assert prediction.text == shown
    assert prediction.in_lexicon is True
    expected = float(np.exp(sequence_log_likelihood(log_probs, lengths, [LETTERS.encode(shown)])[0]))
    assert prediction.confidence == pytest.approx(expected)


@pytest.mark.parametrize("spelling", ["hello", "HELLO", "Hello"])
def test_lexicon_case_keep_returns_the_lexicon_spelling(spelling: str) -> None:
    lexicon = Lexicon([spelling, "world"], LETTERS, case="keep")
    log_probs = misread("HeLLo", LETTERS, [])
    assert lexicon_decode(log_probs, one(log_probs), LETTERS, lexicon)[0].text == spelling


def test_unknown_lexicon_case_is_refused() -> None:
    with pytest.raises(ValueError, match="keep"):
        Lexicon(["a"], LOWER, case="title")


@pytest.mark.parametrize("target,others", [
    ("house", ["mouse", "horse", "table", "houses"]),
    ("recognition", ["a", "an", "the", "recognitions", "cognition"]),
])
def test_small_lexicon_scores_every_word_even_far_from_the_reading(target: str, others: list[str]) -> None:
    log_probs = misread(target, LOWER, list(range(len(target))))  # every character misread
    lengths = one(log_probs)
    reading = greedy_decode(log_probs, lengths, LOWER)[0].text
    assert reading == "q" * len(target)  # as far from the target as a reading can be ...
    assert len(target) > distance_bound(len(reading))
    prediction = lexicon_decode(log_probs, lengths, LOWER, Lexicon([*others, target], LOWER))[0]
    assert prediction.text == target  # ... yet, scored by P(word | image), the target wins
    assert prediction.in_lexicon is True


@pytest.mark.parametrize("decoder", ["lexicon_decode", "decode-greedy", "decode-beam"])
@pytest.mark.parametrize("shown", ["20451987", "Zq9x7"])
def test_large_lexicon_without_a_near_word_returns_the_reading_flagged(
    big_cased_lexicon, decoder: str, shown: str
) -> None:
    lexicon = Lexicon(big_cased_lexicon, LETTERS)
    assert not lexicon.small
    log_probs = misread(shown, LETTERS, [])
    lengths = one(log_probs)
    if decoder == "lexicon_decode":
        prediction = lexicon_decode(log_probs, lengths, LETTERS, lexicon)[0]
    else:
        prediction = decode(log_probs, lengths, LETTERS, decoder.split("-")[1], lexicon=lexicon)[0]
    plain = greedy_decode(log_probs, lengths, LETTERS)[0]
    assert prediction.text == plain.text == shown
    assert prediction.in_lexicon is False
    assert prediction.confidence == pytest.approx(plain.confidence)
    assert prediction.to_dict()["in_lexicon"] is False


@pytest.mark.parametrize("shown,near", [("Hellq", "hello"), ("WORLDS", "world"), ("zebrq", "zebra")])
def test_large_lexicon_keeps_a_sure_reading_outside_it(big_cased_lexicon, shown: str, near: str) -> None:
    # One edit from a list word, but read with no doubt: likelier a word outside the list than that word.
    lexicon = Lexicon([near, *big_cased_lexicon], LETTERS)
    log_probs = misread(shown, LETTERS, [], peak=0.97)
    prediction = lexicon_decode(log_probs, one(log_probs), LETTERS, lexicon)[0]
    assert (prediction.text, prediction.in_lexicon) == (shown, False)
    # The same reading with the list word a close second: the word wins, in the image's case.
    doubt = misread(near if shown[0].islower() else near.capitalize() if shown[1].islower() else near.upper(),
                    LETTERS, [len(near) - 1])
    assert lexicon_decode(doubt, one(doubt), LETTERS, lexicon)[0].in_lexicon is True


@pytest.mark.parametrize("shown,near", [("Cinerama", "cinema"), ("MOSSER", "moser"), ("Ramada", "ramadan")])
def test_large_lexicon_keeps_a_name_read_right_when_a_list_word_is_near(big_cased_lexicon, shown: str,
                                                                        near: str) -> None:
    # A name the list lacks, read fairly surely (0.9 a frame), with a real word an edit or two away: the word
    # explains the image far worse, and the list's prior (large for a word the language model finds rare, small
    # for a common one) does not make up for it. The uniform prior over unlisted strings used to pick the word.
    lexicon = Lexicon([near, *big_cased_lexicon], LETTERS)
    log_probs = misread(shown, LETTERS, [], peak=0.9)
    prediction = lexicon_decode(log_probs, one(log_probs), LETTERS, lexicon)[0]
    assert (prediction.text, prediction.in_lexicon) == (shown, False)


@pytest.mark.parametrize("common,rare", [("the", "thx"), ("and", "anq")])
def test_small_lexicon_divides_out_the_training_prior(common: str, rare: str) -> None:
    # The frames are as sure of one word as of the other (the last character's frames split evenly between them):
    # P(word | image) ties, and the closed list's uniform prior over the training text's prior breaks the tie for
    # the word that text made rare, instead of the common one the network's posterior leans to when it cannot tell.
    path = path_for(common, LOWER)
    probs = peaked(path, LOWER.num_classes, peak=0.9).exp()
    frame = 1 + 3 * (len(common) - 1)
    for f in (frame, frame + 1):
        probs[f] = 0.1 / (LOWER.num_classes - 2)
        probs[f, LOWER.encode(common[-1])[0]] = probs[f, LOWER.encode(rare[-1])[0]] = 0.45
    log_probs = (probs / probs.sum(-1, keepdim=True)).log().unsqueeze(0)
    scores = sequence_log_likelihood(log_probs.expand(2, -1, -1), np.full(2, log_probs.shape[1]),
                                     [LOWER.encode(common), LOWER.encode(rare)])
    assert scores[0] == pytest.approx(scores[1])
    for words in ([common, rare], [rare, common]):
        assert lexicon_decode(log_probs, one(log_probs), LOWER, Lexicon(words, LOWER))[0].text == rare


@pytest.mark.parametrize("word_prior,wins", [(-30.0, True), (-5.0, False)])
def test_a_rare_list_word_needs_less_evidence_than_a_common_one(word_prior: float, wins: bool) -> None:
    # The reading is e^2 likelier than the word. Bonus log(1 + 1 / (N P_lm(word))): ~19 nats for a word the
    # training text almost never had (P_lm = e^-30), ~0 for a common one (e^-5) that the network already expects.
    assert _word_beats_reading(-3.0, -1.0, word_prior, 50_000) is wins


PUNCT = Charset(string.ascii_letters + string.digits + "().,!'-")


@pytest.mark.parametrize("shown,misread_at,expected", [
    ("Hurdle.", [], "Hurdle."),         # a list word with a full stop: found, the stop kept
    ("(telling)", [3], "(telling)"),    # misread inside brackets: corrected, brackets kept
    ("HOLD!!", [1], "HOLD!!"),
    ("don't", [], "don't"),              # inner punctuation is part of the word
])
def test_large_lexicon_keeps_the_punctuation_around_a_word(big_cased_lexicon, shown: str, misread_at: list[int],
                                                           expected: str) -> None:
    lexicon = Lexicon(["hurdle", "telling", "hold", "don't", *big_cased_lexicon], PUNCT)
    log_probs = misread(shown, PUNCT, misread_at)
    prediction = lexicon_decode(log_probs, one(log_probs), PUNCT, lexicon)[0]
    assert (prediction.text, prediction.in_lexicon) == (expected, True)
    # A small (closed) list returns its words as listed.
    assert lexicon_decode(log_probs, one(log_probs), PUNCT, Lexicon(["hurdle", "telling", "hold"], PUNCT))[0].text \
        in {"Hurdle", "telling", "HOLD", "hold", "Hold", "hurdle", "Telling", "TELLING", "HURDLE"}


def test_predictions_without_a_lexicon_have_no_flag() -> None:
    log_probs = misread("abc", LOWER, [])
    prediction = greedy_decode(log_probs, one(log_probs), LOWER)[0]
    assert prediction.in_lexicon is None
    assert list(prediction.to_dict()) == ["text", "confidence", "char_confidences"]


def test_per_sample_lexicons() -> None:
    log_probs = torch.cat([misread("cat", LOWER, [1]), misread("cat", LOWER, [1])])
    lengths = torch.tensor([log_probs.shape[1]] * 2)
    preds = decode(log_probs, lengths, LOWER, lexicon=[Lexicon(["cat", "dog"], LOWER), None])
    assert [p.text for p in preds] == ["cat", "cqt"]
    assert [p.in_lexicon for p in preds] == [True, None]
    with pytest.raises(ValueError, match="2 images"):
        decode(log_probs, lengths, LOWER, lexicon=[None])


def test_small_lexicon_size_is_a_few_hundred_words() -> None:
    assert 100 <= SMALL_LEXICON_WORDS <= 1000
    assert [distance_bound(n) for n in (1, 2, 3, 6, 9)] == [0, 0, 1, 2, 3]


def test_read_image_lexicons(tmp_path) -> None:
    path = tmp_path / "lex.tsv"
    path.write_text("a/1.png\tHELLO,WORLD,HELLO\n\n./a/2.png\tHELLO,WORLD,HELLO\nb.png\tcat\n", encoding="utf-8")
    lexicons = read_image_lexicons(path, LETTERS)
    assert set(lexicons) == {"a/1.png", "a/2.png", "b.png"}
    assert lexicons["a/1.png"].words == ["HELLO", "WORLD"]
    assert lexicons["a/1.png"] is lexicons["a/2.png"]  # one object per word list


@pytest.mark.parametrize("bad,why", [
    ("c.png HELLO,WORLD", "expected relative_path<TAB>"),
    ("c.png\t", "expected relative_path<TAB>"),
    ("\tHELLO", "expected relative_path<TAB>"),
    ("a.png\tWORLD", "'a.png' already has a lexicon"),
    ("c.png\t\u00e9t\u00e9,\u20ac", "lexicon has no usable words"),
])
def test_per_image_lexicon_file_bad_line_names_the_line(tmp_path, bad: str, why: str) -> None:
    path = tmp_path / "lex.tsv"
    path.write_text(f"a.png\tHELLO\nb.png\tWORLD,HELP\n{bad}\nd.png\tOK\n", encoding="utf-8")
    with pytest.raises(LexiconFileError, match=f"line 3: {why}"):
        read_image_lexicons(path, LETTERS)


def test_lexicon_scores_words_as_written() -> None:
    charset = Charset(string.ascii_letters)
    lexicon = Lexicon(["Paris", "paris"], charset)
    log_probs = peaked(path_for("Paris", charset), charset.num_classes).unsqueeze(0)
    assert lexicon_decode(log_probs, one(log_probs), charset, lexicon)[0].text == "Paris"


def test_lexicon_from_file_skips_unsupported_words(tmp_path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("\ufeffhello\n\nworld\r\ncafé\n  \nnaïve\nhello\nok\n", encoding="utf-8")
    lexicon = Lexicon.from_file(path, LOWER)
    assert lexicon.words == ["hello", "world", "ok"]
    assert lexicon.skipped == 2
    assert len(lexicon) == 3 and "world" in lexicon


def test_lexicon_without_usable_words_is_rejected() -> None:
    with pytest.raises(ValueError, match="no usable words"):
        Lexicon(["ÉTÉ", ""], LOWER)


def test_lexicon_counts_every_dropped_word_by_reason() -> None:
    lexicon = Lexicon(["hello", "wor\tld", "café", "", "  ", "ok", "naïve", "été", "über"], LOWER)
    assert lexicon.words == ["hello", "ok"] and lexicon.skipped == 7
    assert lexicon.dropped.counts == {"tab": 1, "charset": 4, "empty": 2}
    report = dropped_report([lexicon, None, lexicon])  # a lexicon given twice counts once
    assert report is not None and report.startswith("7 words dropped, 2 kept: 1 with a tab")
    assert "'wor\\tld'" in report  # the tab shown, not printed raw
    assert "4 with characters the model cannot read, e.g. 'café', 'naïve', 'été', ..." in report  # 3 named
    assert report.endswith("; 2 empty or blank")
    assert dropped_report([Lexicon(["ok"], LOWER), None]) is None


def test_lexicon_file_of_tab_separated_lines_is_refused_naming_the_file(tmp_path) -> None:
    path = tmp_path / "freq.tsv"
    path.write_text("the\t100\nof\t90\n", encoding="utf-8")
    with pytest.raises(LexiconFileError, match=r"lexicon .*freq.tsv has no usable words: 2 with a tab"):
        Lexicon.from_file(path, LOWER)


@pytest.mark.parametrize("read", [lambda p: Lexicon.from_file(p, LOWER), lambda p: read_image_lexicons(p, LOWER)],
                         ids=["word list", "per-image"])
def test_non_utf8_lexicon_file_is_one_error_naming_the_file(tmp_path, read) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"a.png\tok\nb.png\tna\xefve\n")
    with pytest.raises(LexiconFileError, match=r"lexicon .*latin1.txt is not UTF-8 text \(byte 0xef on line 2\)"):
        read(path)
    with pytest.raises(LexiconFileError, match="cannot read lexicon .*missing.txt"):
        read(tmp_path / "missing.txt")


def test_per_image_lexicon_drops_are_reported_once_per_word_list(tmp_path) -> None:
    path = tmp_path / "lex.tsv"
    path.write_text("a.png\tcat,café,,dog\nb.png\tcat,café,,dog\nc.png\tcow\tx,pig\n", encoding="utf-8")
    lexicons = read_image_lexicons(path, LOWER)
    assert lexicons["a.png"].words == ["cat", "dog"] and lexicons["c.png"].words == ["pig"]
    assert dropped_report(lexicons.values()) == ("3 words dropped, 3 kept: 1 with a tab (a column separator, never "
                                                 "part of a word), e.g. 'cow\\tx'; 1 with characters the model cannot "
                                                 "read, e.g. 'café'; 1 empty or blank")


def test_lexicon_charset_must_match() -> None:
    lexicon = Lexicon(["ab"], AB)
    log_probs = peaked(path_for("abc", LOWER), LOWER.num_classes).unsqueeze(0)
    with pytest.raises(ValueError, match="charset"):
        lexicon_decode(log_probs, one(log_probs), LOWER, lexicon)


# --- dispatcher and validation -----------------------------------------------------------------


def test_unknown_decoder_names_the_choices() -> None:
    log_probs = peaked([1, 0], AB.num_classes).unsqueeze(0)
    with pytest.raises(ValueError, match="greedy, beam"):
        decode(log_probs, one(log_probs), AB, "viterbi")


@pytest.mark.parametrize(
    ("shape", "lengths"),
    [((2, 5, 3), [5]), ((1, 5, 3), [6]), ((1, 5, 4), [5]), ((5, 3), [5])],
    ids=["lengths-size", "too-long", "wrong-classes", "2d"],
)
def test_bad_shapes_raise(shape: tuple[int, ...], lengths: list[int]) -> None:
    log_probs = torch.randn(*shape).log_softmax(-1)
    with pytest.raises(ValueError):
        greedy_decode(log_probs, torch.tensor(lengths), AB)


def test_beam_width_must_be_positive() -> None:
    log_probs = peaked([1, 0], AB.num_classes).unsqueeze(0)
    with pytest.raises(ValueError, match="beam_width"):
        beam_search_decode(log_probs, one(log_probs), AB, beam_width=0)


def test_empty_batch() -> None:
    log_probs = torch.zeros(0, 5, AB.num_classes)
    assert decode(log_probs, torch.zeros(0, dtype=torch.long), AB, "beam") == []
