"""SynthConfig: every knob of the synthetic word renderer, with realistic defaults."""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic import Field, model_validator

from crnn.charset import DEFAULT_CHARS
from crnn.config import Config, parse_value

# Tokens accepted in ``font_dirs`` besides real folders (expanded by crnn_synth_data.fonts).
SYSTEM_FONTS = "@system"
MATPLOTLIB_FONTS = "@matplotlib"


class SynthConfig(Config):
    """All settings of the renderer; probabilities are per sample, lengths in output pixels unless noted."""

    kind = "synth"

    # --- output ---
    height: int = 32
    color: bool = False  # True: Sample.image is (H, W, 3) RGB instead of gray
    min_width: int = 8
    charset: str = DEFAULT_CHARS

    # --- text (proportions of the kinds of text; normalised, need not sum to 1) ---
    words_file: str | None = None  # one word per line, most frequent first; None: wordfreq
    lexicon_size: int = 50_000
    word_rank_power: float = 2.0  # rank = N * u**power: >1 favours frequent words
    min_length: int = 1
    max_length: int = 25
    length_balance: float = 0.25  # share of words drawn with a uniform length instead of by rank
    kind_word: float = 0.64
    kind_number: float = 0.10
    kind_alnum: float = 0.06
    kind_punct_word: float = 0.10
    kind_phrase: float = 0.08
    kind_random_chars: float = 0.02  # any charset characters, so rare symbols are not starved
    case_lower: float = 0.40
    case_upper: float = 0.38
    case_title: float = 0.22

    # --- fonts ---
    font_dirs: list[str] = Field(default_factory=lambda: [SYSTEM_FONTS, MATPLOTLIB_FONTS])
    # File-name patterns (case-insensitive) of fonts whose glyphs are not the characters they map:
    # symbols, pictograms, keyboard keys, math alphabets that draw "$" as "£".
    exclude_fonts: list[str] = Field(
        default_factory=lambda: [
            "*Emoji*", "*Symbol*", "*Dingbat*", "D050000L*", "STIX*", "*Math*", "*Braille*",
            "LinLibertine_I*", "LinBiolinum_K*", "Winks*", "Wargames*", "*Initials*", "Euterpe*",
            "f500*", "flatline*", "RadisSans*", "cmex10*", "cmsy10*", "cmmi10*", "cmti10*",
        ]
    )
    font_cache: str | None = "~/.cache/crnn-ocr/synth_fonts.json"  # None: rescan every start
    font_size: int = 32  # glyph rasterisation size (px); the warp rescales to ``height``
    min_font_coverage: float = 0.5  # a face must cover this share of the charset's letters+digits

    # --- colours and backgrounds ---
    min_contrast: float = 0.25  # minimum luminance difference (0..1) between text and background
    p_light_on_dark: float = 0.38
    p_gray: float = 0.35  # share of unsaturated (gray / black / white) colours
    bg_flat: float = 0.25
    bg_gradient: float = 0.20
    bg_noise: float = 0.15
    bg_texture: float = 0.25
    bg_image: float = 0.15  # used only when backgrounds_dir is set
    backgrounds_dir: str | None = None  # natural images (jpg/png) to crop backgrounds from
    p_panel_edge: float = 0.12  # a second colour region (edge of a sign) behind the text

    # --- text styling ---
    p_border: float = 0.12
    p_shadow: float = 0.12
    p_outline_only: float = 0.03  # hollow letters: only the border is visible
    p_fake_bold: float = 0.08
    p_midground: float = 0.25  # partial text lines above/below
    p_tight_spacing: float = 0.15  # touching or overlapping characters
    p_wide_spacing: float = 0.1

    # --- geometry ---
    p_rotate: float = 0.5
    max_rotation: float = 10.0  # degrees
    p_perspective: float = 0.4
    perspective_strength: float = 0.12  # corner jitter as a share of text height
    p_shear: float = 0.2  # slanted (fake italic) text
    max_shear: float = 0.3
    p_stretch: float = 0.4  # condensed or expanded text
    stretch_range: tuple[float, float] = (0.7, 1.35)
    p_curve: float = 0.15
    max_curve: float = 0.3  # curve amplitude as a share of text height
    pad_vertical: tuple[float, float] = (-0.04, 0.3)  # padding per side, share of text height
    pad_horizontal: tuple[float, float] = (-0.02, 0.45)

    # --- degradations (albumentations) ---
    p_blur: float = 0.35
    blur_sigma: tuple[float, float] = (0.3, 1.3)
    p_motion_blur: float = 0.1
    p_noise: float = 0.25
    noise_std: tuple[float, float] = (0.01, 0.06)
    p_jpeg: float = 0.35
    jpeg_quality: tuple[int, int] = (25, 95)
    p_brightness_contrast: float = 0.4
    p_downscale: float = 0.25
    downscale_range: tuple[float, float] = (0.35, 0.85)
    p_distort: float = 0.1  # elastic or grid distortion

    # --- orientation layouts (crnn_synth_data.orientation; issue 18): all off by default ---
    # Shares of samples turned 90 / 180 / 270 degrees clockwise, or re-laid as vertical stacked letters
    # (one upright letter under the other), after everything above; the text stays the reading.
    p_rotate_90: float = Field(0.0, ge=0.0, le=1.0)
    p_rotate_180: float = Field(0.0, ge=0.0, le=1.0)
    p_rotate_270: float = Field(0.0, ge=0.0, le=1.0)
    p_stacked: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _orientation_shares(self) -> SynthConfig:
        total = self.p_rotate_90 + self.p_rotate_180 + self.p_rotate_270 + self.p_stacked
        if total > 1.0 + 1e-9:
            raise ValueError(f"p_rotate_90 + p_rotate_180 + p_rotate_270 + p_stacked is {total:g}, more than 1")
        return self

    @classmethod
    def parse_override(cls, key: str, text: str) -> Any:
        """A ``--set key=value`` text as the field's value: lists and pairs comma-separated, text verbatim."""
        field = cls.model_fields.get(key)
        if field is None:
            return parse_value(text)  # an unknown key: from_dict names it
        text = text.strip()
        hint = field.annotation
        args = get_args(hint)
        if get_origin(hint) in (list, tuple) and not text.startswith("["):
            return [v.strip() for v in text.split(",") if v.strip()]  # font_dirs=/a,/b  jpeg_quality=10,50
        if hint is str or (str in args and type(None) in args):
            # Not YAML: a charset such as "0123456789" or "#!:" must stay the text it is.
            return None if type(None) in args and text.lower() in ("", "none", "null") else text
        return parse_value(text)
