"""Tests of the renderer's multi-word line samples (issue 35): off changes nothing, on gives lines of lexicon words
with visible, measured word gaps, inside a line-box crop, short enough for the trainer; the config checks."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from crnn.errors import ConfigError
from crnn.models.crnn import CRNN
from crnn_synth_data import SynthConfig, WordRenderer
from crnn_synth_data.fonts import FontPool, GlyphSet, expand_font_dirs, scan_font_file
from crnn_synth_data.layout import layout_line
from crnn_synth_data.text import TextSampler
from crnn_training.data import ctc_frames_needed

FONTS = expand_font_dirs(["@bundled"])[0]
FACES = ["DejaVu_Sans_Book.ttf", "DejaVu_Serif_Book.ttf", "DejaVu_Sans_Mono_Book.ttf"]
# Short and long words, so that the length limit has to drop or redraw words.
WORDS = ["the", "and", "of", "shop", "open", "daily", "coffee", "market", "street", "station", "pharmacy",
         "restaurant", "international", "refrigerators", "administration", "it's", "st.", "responsibilities"]
# Geometry that keeps a crop axis-aligned, so that boxes measure gaps and margins directly.
FLAT = {"p_rotate": 0.0, "p_perspective": 0.0, "p_shear": 0.0, "p_curve": 0.0, "p_stretch": 0.0, "p_distort": 0.0,
        "p_midground": 0.0}

# sha1 of (image, shape, text, boxes) of default renders with the three faces and WORDS, made by the renderer before
# multi-word lines existed (commit 3deef26): with p_multiword 0 the stream is the same, byte for byte.
BEFORE = {
    "0:0": "2aa1a34374ba785e890efe7262e43b406af2e47f",
    "0:1": "e49f45c41dba68e95d02d136204aea40f1bfc2b1",
    "0:2": "07a184fda0fe972ba74e4cf7784ae9ba42d56951",
    "0:3": "0435e3737a53d3debb56a14eb1900dada3353bba",
    "0:4": "f15f2dbd61f9fdfc064a62af08c5c2b6969af47b",
    "0:5": "07d4ea517f8991aa3c90dcbb7010262cbc668fd8",
    "0:6": "762c0bbc23fe443b521275e73abeb4eff8c0691e",
    "0:7": "09b3ff596582d82764f7d481a99d711c5ae4e402",
    "7:0": "2a60cd507d968e0e7f8de0962d53e3e2adef1d65",
    "7:1": "f3bd6449245e13d392c151c1d915fe18e20a44b5",
    "7:2": "a23a059722bd2ad23b6cde712676d29d9465c283",
    "7:3": "84792e0fb009135289103817143157af97b97418",
    "7:4": "20e116f861fa1080746ffedda95699507c6996a5",
    "7:5": "b2db2c6617dcaf1c0597564cf9e717cf5f332be9",
    "7:6": "e5d3352a5b37722aa90e7236a9ff440b1e9750de",
    "7:7": "e2d7a4bb10b720a56b3a256da853cb764e291f07",
}


@pytest.fixture(scope="module")
def pool() -> FontPool:
    config = SynthConfig(font_cache=None)
    return FontPool(config, [f for name in FACES for f in scan_font_file(FONTS / name, config.charset)])


def _renderer(pool: FontPool, **changes: object) -> WordRenderer:
    return WordRenderer(SynthConfig(font_cache=None, **changes), fonts=pool, words=WORDS)


def _pin(s) -> str:
    return hashlib.sha1(s.image.tobytes() + str(s.image.shape).encode() + s.text.encode() + s.boxes.tobytes()).hexdigest()


@pytest.mark.parametrize("seed", [0, 7])
def test_off_renders_the_same_samples_as_before(pool: FontPool, seed: int) -> None:
    # p_multiword 0 draws nothing, and the other multi-word knobs are then inert (the v1 pins of
    # tests/test_synth_effects.py hold the default stream with the whole font library too).
    before = _renderer(pool)
    off = _renderer(pool, p_multiword=0.0, multiword_words=(3, 3), multiword_gap=(2.0, 3.0), multiword_punct=1.0,
                    multiword_max_length=5, multiword_pad=(0.5, 0.5))
    for i in range(8):
        assert _pin(before.render(seed, i)) == _pin(off.render(seed, i)) == BEFORE[f"{seed}:{i}"], i


@pytest.mark.parametrize(("words", "limit"), [((2, 4), 24), ((2, 2), 24), ((3, 4), 16), ((2, 4), 30)])
def test_on_gives_lines_of_lexicon_words_within_the_limit(pool: FontPool, words: tuple[int, int], limit: int) -> None:
    r = _renderer(pool, p_multiword=1.0, multiword_words=words, multiword_max_length=limit, multiword_punct=0.0)
    lexicon = {w.lower() for w in WORDS}
    counts = []
    for i in range(30):
        s = r.render(1, i)
        parts = s.text.split(" ")
        assert len(s.text) <= limit and "" not in parts, s.text  # single spaces, none at the ends
        assert {p.lower() for p in parts} <= lexicon, s.text
        assert s.boxes.shape == (len(s.text) - s.text.count(" "), 4)
        counts.append(len(parts))
    assert max(counts) <= words[1] and min(counts) >= 1
    assert np.mean([words[0] <= n for n in counts]) > 0.8  # long words are redrawn before a word is dropped


@pytest.mark.parametrize("max_width", [384, 512])
def test_lines_fit_the_trainers_frames(pool: FontPool, max_width: int) -> None:
    # The trainer squeezes wider images to max_width and skips labels needing more CTC frames than the image has.
    r = _renderer(pool, p_multiword=1.0)
    for i in range(40):
        s = r.render(2, i)
        ids = [ord(c) for c in s.text]
        assert ctc_frames_needed(ids) <= CRNN.frames_for_width(min(s.image.shape[1], max_width)), s.text


@pytest.mark.parametrize("punct", [0.0, 1.0])
def test_punctuation_share(pool: FontPool, punct: float) -> None:
    sampler = TextSampler(SynthConfig(multiword_punct=punct), WORDS)
    r = random.Random(3)
    lines = [sampler.line(r) for _ in range(200)]
    marked = [any(m in line for m in ",&-") or line.endswith(".") and not line.lower().endswith("st.") for line in lines]
    if punct == 0.0:
        assert not any(m in line for line in lines for m in ",&-")
    else:
        assert np.mean(marked) > 0.8  # every line that has room gets one mark
        for line in lines:  # "&" and "-" stand between two words, as in "Fish & Chips"
            assert line.count("&") == line.count(" & ") and line.count("-") == line.count(" - "), line


@pytest.mark.parametrize("gap", [2.0, 7.0, 15.5])
@pytest.mark.parametrize("text", ["AT HIGH", "fish & chips", "Wo- il y", "x  y"])
def test_layout_puts_each_words_ink_word_gap_after_the_last(pool: FontPool, text: str, gap: float) -> None:
    gs = GlyphSet(pool.faces[0], 32)
    line = layout_line(gs, text, tracking=-2.0, word_gap=gap)
    b = line.boxes
    start = 0
    for word in [w for w in text.split(" ") if w][:-1]:
        start += len(word)
        assert abs(b[start, 0] - b[:start, 2].max() - gap) <= 0.5  # the pen is rounded to whole pixels
    plain = layout_line(gs, text, tracking=-2.0)
    assert plain.boxes.shape == b.shape and np.array_equal(plain.boxes[: len(text.split(" ")[0])], b[: len(text.split(" ")[0])])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rendered_lines_show_their_gaps_inside_a_line_box(pool: FontPool, seed: int) -> None:
    lo, hi = 0.1, 0.25
    r = _renderer(pool, p_multiword=1.0, multiword_pad=(lo, hi), **FLAT)
    for i in range(15):
        s = r.render(seed, i)
        h, w = s.image.shape
        b = s.boxes
        ink_h = float(b[:, 3].max() - b[:, 1].min())
        # A little margin on every side, never a cut (pads are shares of the ink height; 1 px for rounding).
        assert lo * ink_h - 1 <= b[:, 0].min() <= hi * ink_h + 1, (s.text, b[:, 0].min(), ink_h)
        assert lo * ink_h - 1 <= w - b[:, 2].max() <= hi * ink_h + 1, s.text
        assert lo * ink_h - 1 <= b[:, 1].min() <= hi * ink_h + 1, s.text
        assert lo * ink_h - 1 <= h - b[:, 3].max() <= hi * ink_h + 1, s.text
        # Every space is a visible gap: the next word's ink starts right of all the ink before it.
        start = 0
        for word in s.text.split(" ")[:-1]:
            start += len(word)
            assert b[start, 0] > b[:start, 2].max(), s.text


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [("p_multiword", 0.0, True), ("p_multiword", 1.0, True), ("p_multiword", 0.3, True), ("p_multiword", -0.1, False),
     ("p_multiword", 1.5, False), ("multiword_punct", 2.0, False), ("multiword_words", (2, 4), True),
     ("multiword_words", (0, 2), False), ("multiword_words", (4, 2), False), ("multiword_gap", (0.0, 1.0), False),
     ("multiword_gap", (1.5, 1.0), False), ("multiword_pad", (-0.1, 0.2), False), ("multiword_max_length", 2, False),
     ("p_multiwords", 0.3, False)],
)
def test_config_checks(key: str, value: object, ok: bool) -> None:
    if ok:
        assert getattr(SynthConfig.from_dict({key: value}), key) == value
        return
    with pytest.raises(ConfigError, match=key):
        SynthConfig.from_dict({key: value})
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    with pytest.raises(ConfigError, match=key):
        SynthConfig().with_overrides([f"{key}={text}"])
