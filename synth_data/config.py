"""SynthConfig: every knob of the synthetic word renderer, with realistic defaults."""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import Field, model_validator

from crnn.charset import DEFAULT_CHARS
from crnn.config import Config, FieldProblem, apply_overrides, parse_value

# Tokens accepted in ``font_dirs`` besides real folders (expanded by crnn_synth_data.fonts). The bundled
# library (fonts/ in a clone, the crnn-ocr-fonts package when installed) is the default; the host's fonts are
# an opt-in, so that the data does not depend on what a machine happens to have installed.
BUNDLED_FONTS = "@bundled"
SYSTEM_FONTS = "@system"
MATPLOTLIB_FONTS = "@matplotlib"

BLEND_MODES = ("multiply", "screen", "overlay", "soft_light", "hard_light", "darken", "lighten", "difference")

# The v2 mix (issue 14): photographs, textured and blended text, per-glyph variation, the camera chain,
# stronger geometry and clutter. A preset only supplies defaults: fields given explicitly win. v1 (every
# new effect off) is the renderer that trained the shipped model, kept bit-for-bit (tests/test_synth_effects.py).
PRESETS: dict[str, dict[str, Any]] = {
    "v1": {},
    "v2": {
        "p_bg_flip": 0.5, "p_bg_color_shift": 0.5, "bg_image": 0.35,
        "p_texture_fill": 0.12, "p_blend": 0.2, "p_palette_colors": 0.4, "p_low_contrast": 0.06,
        "p_glyph_jitter": 0.15, "p_glyph_elastic": 0.08, "p_glyph_color": 0.1,
        "p_extrude": 0.05, "max_border": 4, "max_shadow_offset": 8, "max_shadow_blur": 4.0,
        "p_neighbor_words": 0.15, "p_clutter": 0.15,
        "p_strong_rotation": 0.05, "p_circle_arc": 0.04, "perspective_strength": 0.18,
        "p_supersample": 0.1, "p_defocus": 0.5, "p_zoom_blur": 0.15, "p_camera_motion": 0.2,
        "p_lowres": 0.15, "p_gamma": 0.2, "p_lighting": 0.15, "p_sensor_noise": 0.1,
    },
}


class SynthConfig(Config):
    """All settings of the renderer; probabilities are per sample, lengths in output pixels unless noted."""

    kind = "synth"

    # The defaults of every field not given explicitly: v1 (the shipped model's renderer) or v2 (issue 14).
    preset: Literal["v1", "v2"] = "v1"

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
    font_dirs: list[str] = Field(default_factory=lambda: [BUNDLED_FONTS])
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
    p_bg_flip: float = 0.0  # photo crops mirrored left-right
    p_bg_color_shift: float = 0.0  # photo crops with hue/saturation shifted
    p_texture_fill: float = 0.0  # letters filled with a photo (or procedural) texture instead of a colour
    p_blend: float = 0.0  # text composited with a blend mode (BLEND_MODES) instead of painted over
    blend_modes: list[str] = Field(default_factory=lambda: list(BLEND_MODES))
    p_palette_colors: float = 0.0  # colour pairs from the collector's k-means palette (backgrounds_dir/palette.json)
    p_low_contrast: float = 0.0  # text contrast only ``low_contrast`` (faded, low-contrast signs)
    low_contrast: float = 0.15

    # --- text styling ---
    p_border: float = 0.12
    p_shadow: float = 0.12
    p_outline_only: float = 0.03  # hollow letters: only the border is visible
    p_fake_bold: float = 0.08
    p_midground: float = 0.25  # partial text lines above/below
    p_tight_spacing: float = 0.15  # touching or overlapping characters
    p_wide_spacing: float = 0.1
    max_border: int = Field(3, ge=1, le=4)  # outline radius in canvas pixels
    max_shadow_offset: int = Field(4, ge=1)  # canvas pixels
    max_shadow_blur: float = 2.0
    p_extrude: float = 0.0  # 3-D letters: the mask swept a few pixels in one direction, darker
    p_glyph_jitter: float = 0.0  # per-character size, baseline and rotation jitter
    glyph_jitter: tuple[float, float, float] = (0.12, 0.08, 8.0)  # size share, baseline share of size, degrees
    p_glyph_elastic: float = 0.0  # per-character elastic distortion (hand-painted, deformed letters)
    p_glyph_color: float = 0.0  # per-character colour variation
    p_neighbor_words: float = 0.0  # words left/right on the same line, cut by the crop
    p_clutter: float = 0.0  # lines, poles, frame or sign edges in the background

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
    p_strong_rotation: float = 0.0  # rotation up to ``max_strong_rotation`` instead of ``max_rotation``
    max_strong_rotation: float = 30.0
    p_circle_arc: float = 0.0  # text along a circular arc (curved signs, stamps)
    max_arc_degrees: float = 180.0  # angle the text spans at most

    # --- camera chain (crnn_synth_data.camera): optics at high resolution, then the sensor ---
    p_supersample: float = 0.0  # draw at 2-4x the output size first, so that blurs act on a fine image
    supersample_range: tuple[float, float] = (2.0, 4.0)
    p_defocus: float = 0.0  # disc blur (of the high-resolution image when supersampled)
    p_zoom_blur: float = 0.0
    p_camera_motion: float = 0.0  # motion blur at high resolution
    p_lowres: float = 0.0  # downscale so that text is ``lowres_text_height`` px high, then back up
    lowres_text_height: tuple[float, float] = (8.0, 20.0)
    p_gamma: float = 0.0
    p_lighting: float = 0.0  # shadows, highlights or vignetting (albumentations Illumination)
    p_sensor_noise: float = 0.0  # ISO noise (colour and luminance)

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

    # --- multi-word lines (issue 35): a detector's line box holds several words; 0 keeps every stream as it was ---
    # A sample is then 2-4 lexicon words on one baseline, one space apart, cropped with a small margin on every side.
    p_multiword: float = Field(0.0, ge=0.0, le=1.0)
    multiword_words: tuple[int, int] = (2, 4)  # how many words (uniform, inclusive)
    multiword_max_length: int = Field(24, ge=3)  # characters of the whole line, spaces included
    multiword_punct: float = Field(0.2, ge=0.0, le=1.0)  # share of lines with one of ", . - &"
    # The ink gap between two words, as a multiple of the face's space advance (drawn log-uniformly): 0.6 is a
    # typesetter's tightest (TeX shrinks a 1/3 em space to 2/9 em, 0.67x), 2.0 a widely spaced sign or heading.
    multiword_gap: tuple[float, float] = (0.6, 2.0)
    multiword_pad: tuple[float, float] = (0.05, 0.3)  # crop margin per side, share of text height (never cut)

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

    @model_validator(mode="after")
    def _multiword_ranges(self) -> SynthConfig:
        lo, hi = self.multiword_words
        if not 1 <= lo <= hi:
            raise FieldProblem("multiword_words", "must be 1 <= low <= high", (lo, hi))
        if not 0 < self.multiword_gap[0] <= self.multiword_gap[1]:
            raise FieldProblem("multiword_gap", "must be 0 < low <= high", tuple(self.multiword_gap))
        if not 0 <= self.multiword_pad[0] <= self.multiword_pad[1]:
            raise FieldProblem("multiword_pad", "must be 0 <= low <= high", tuple(self.multiword_pad))
        return self

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        # The preset fills the fields the caller did not give: SynthConfig(preset="v2", p_blend=0) is v2 without blends.
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            return {**PRESETS[data["preset"]], **data}
        return data

    @model_validator(mode="after")
    def _known_blend_modes(self) -> SynthConfig:
        unknown = sorted(set(self.blend_modes) - set(BLEND_MODES))
        if unknown:
            raise ValueError(f"unknown blend mode(s) {unknown}; known: {', '.join(BLEND_MODES)}")
        return self

    def _explicit(self) -> dict[str, Any]:
        # Values equal to the current preset's came from it (pydantic counts them as set): a new preset replaces them.
        old = PRESETS[self.preset]
        return {k: v for k, v in self.model_dump(mode="json", exclude_unset=True).items() if not (k in old and v == old[k])}

    def with_overrides(self, overrides: list[str]) -> SynthConfig:
        """A copy with ``key=value`` overrides; ``preset=v2`` re-derives the fields that were not set explicitly."""
        return type(self).from_dict(apply_overrides(self._explicit(), overrides, self.parse_override))

    def replace(self, **changes: Any) -> SynthConfig:
        """A validated copy with ``changes``; a new ``preset`` re-derives the fields that were not set explicitly."""
        if "preset" not in changes:
            return super().replace(**changes)
        return type(self)(**{**self._explicit(), **changes})

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
