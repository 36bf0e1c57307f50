"""Tests of issue 14's renderer v2: the v1 pin, each effect on/off, boxes with every effect on, determinism,
presets, and the background collector on a fake tree."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from crnn.errors import BackgroundSourceError
from crnn_synth_data import SynthConfig, SyntheticWordDataset, WordRenderer
from crnn_synth_data.background_collection import (
    Candidate, collect_backgrounds, debian_candidates, debian_licences, folder_candidates, licence_allowed,
    normalise_licence, text_score,
)
from crnn_synth_data.blending import blend
from crnn_synth_data.config import BLEND_MODES, PRESETS
from crnn_synth_data.palette import Palette
from crnn_synth_data.procedural_textures import dead_leaves, pink_noise

# sha1 of (image, shape, text, boxes) of v1 renders with the bundled font library (issue 30). Until then they were
# pinned with matplotlib's fonts, before issue 14's changes (commit 4cb201a), and those pins still held when
# the bundled library became the default: v1 stays the renderer that trained the shipped model, bit for bit.
V1_PINS = {
    "0:0:0": "fcb040b5a2adbcc2e71827d3302a10e211ed8065",
    "0:0:7": "5950be15b229e21f09f3c9d46fceec4ba4da015d",
    "0:3:123": "196a060a8355bc71da44ea8fb9440bea3097eaef",
    "0:11:4096": "8ed61030a857f198c41e8f94e5bd41115fea7b3d",
    "0:5:99999": "314cb9b459a09f4994cd2a667b941db725a2f632",
    "1:0:0": "647f7c0ac389f0edcdfe62b989f52419d5eaed8a",
    "1:0:7": "28125192b2394f5197a2aecb7d9c59b94d0f5801",
    "1:3:123": "39bb116a76f3668082951452fa29e56d730494f0",
    "1:11:4096": "19392bbfdc28e87e6eab17286a88d9a816676664",
    "1:5:99999": "3b995a392b41d68ac46a07d19cf98e8b80f5d135",
}

# Every new effect of v2 and the extra settings it needs to act on every sample.
EFFECTS = {
    "p_bg_flip": {"bg_image": 100.0}, "p_bg_color_shift": {"bg_image": 100.0},
    "p_texture_fill": {}, "p_blend": {}, "p_palette_colors": {}, "p_low_contrast": {},
    "p_glyph_jitter": {}, "p_glyph_elastic": {}, "p_glyph_color": {}, "p_extrude": {},
    "p_neighbor_words": {}, "p_clutter": {}, "p_strong_rotation": {}, "p_circle_arc": {"min_length": 6},
    "p_supersample": {}, "p_defocus": {"p_supersample": 1.0}, "p_zoom_blur": {"p_supersample": 1.0},
    "p_camera_motion": {"p_supersample": 1.0}, "p_lowres": {}, "p_gamma": {}, "p_lighting": {},
    "p_sensor_noise": {},
}


def _pin(s) -> str:
    return hashlib.sha1(s.image.tobytes() + str(s.image.shape).encode() + s.text.encode() + s.boxes.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def bg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny collected backgrounds folder (procedural images, manifest, palette)."""
    out = tmp_path_factory.mktemp("backgrounds")
    collect_backgrounds(out, candidates=[], procedural=4, max_side=128)
    return out


@pytest.fixture(scope="module")
def base(bg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthConfig:
    """v1 with the bundled fonts and the tiny backgrounds folder: every new effect off."""
    cache = tmp_path_factory.mktemp("fontcache") / "fonts.json"
    return SynthConfig(font_dirs=["@bundled"], font_cache=str(cache), backgrounds_dir=str(bg_dir))


@pytest.mark.parametrize("color", [False, True])
def test_v1_renders_what_the_shipped_model_was_trained_on(color: bool) -> None:
    r = WordRenderer(SynthConfig(font_dirs=["@bundled"], font_cache=None, color=color))
    for key, want in V1_PINS.items():
        c, seed, index = (int(v) for v in key.split(":"))
        if c == color:
            assert _pin(r.render(seed, index)) == want, key


def test_presets_fill_only_the_fields_not_given() -> None:
    v2 = SynthConfig(preset="v2")
    assert all(getattr(v2, k) == v for k, v in PRESETS["v2"].items())
    assert SynthConfig(preset="v2", p_blend=0.0).p_blend == 0.0
    assert SynthConfig.from_dict(v2.to_dict()) == v2
    assert SynthConfig().with_overrides(["preset=v2"]) == v2
    assert v2.with_overrides(["preset=v1"]) == SynthConfig()
    assert SynthConfig(height=48).replace(preset="v2") == SynthConfig(preset="v2", height=48)
    assert all(getattr(SynthConfig(), k) == 0.0 for k in EFFECTS)  # v1: every new effect off
    with pytest.raises(ValueError, match="unknown blend mode"):
        SynthConfig(blend_modes=["multiply", "glow"])


@pytest.mark.parametrize("effect", sorted(EFFECTS))
def test_each_effect_changes_the_image_when_on(base: SynthConfig, effect: str) -> None:
    extra = EFFECTS[effect]
    off = WordRenderer(base.replace(**extra))
    on = WordRenderer(base.replace(**extra, **{effect: 1.0}))
    changed = 0
    for i in range(6):
        a, b = off.render(2, i), on.render(2, i)
        changed += a.image.shape != b.image.shape or not np.array_equal(a.image, b.image)
    assert changed >= 3, f"{effect}=1 changed only {changed} of 6 images"


def _all_on(base: SynthConfig) -> SynthConfig:
    on = {**{k: 1.0 for k in EFFECTS}, "p_circle_arc": 0.5, "p_strong_rotation": 0.5, "p_low_contrast": 0.0}
    return base.replace(**on, bg_image=1.0, color=True)


def test_every_effect_on_keeps_valid_character_boxes(base: SynthConfig) -> None:
    r = WordRenderer(_all_on(base))
    for i in range(40):
        s = r.render(5, i)
        h, w = s.image.shape[:2]
        assert s.image.dtype == np.uint8 and h == base.height and w >= base.min_width
        assert s.boxes.shape == (len(s.text.replace(" ", "")), 4), s.text
        b = s.boxes
        assert np.isfinite(b).all()
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
        assert ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) > 0).mean() > 0.5  # most characters keep an area


def test_v2_is_deterministic_per_seed_and_index_across_workers(base: SynthConfig) -> None:
    import torch

    config = _all_on(base).replace(color=False)
    direct = WordRenderer(config)
    fresh = WordRenderer(config)
    assert all(np.array_equal(direct.render(9, i).image, fresh.render(9, i).image) for i in (3, 1, 2))

    def texts(workers: int) -> list[tuple[str, str]]:
        ds = SyntheticWordDataset(config, seed=9, block_size=4)
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=list)
        out = []
        for k, batch in enumerate(loader):
            out += [(s.text, hashlib.sha1(s.image.tobytes()).hexdigest()) for s in batch]
            if k == 2:
                break
        return out

    assert texts(0) == texts(2)


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_blend_modes_stay_in_range_and_differ_from_normal(mode: str) -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 255, (3, 8, 8)).astype(np.float32)
    top = np.array([200.0, 40.0, 120.0], np.float32)[:, None, None]
    out = blend(mode, base, top)
    assert out.shape == base.shape and out.min() >= 0 and out.max() <= 255.001
    assert not np.allclose(out, np.broadcast_to(top, base.shape))


def test_procedural_images_have_natural_statistics() -> None:
    rng = np.random.default_rng(1)
    for img in (dead_leaves(rng, 128), pink_noise(rng, 128)):
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8 and img.std() > 10
        # Natural images: spectral power falls with frequency (low band far above the high band).
        g = np.abs(np.fft.fft2(img.mean(2) - img.mean())) ** 2
        assert g[1:4, 1:4].mean() > 20 * g[40:60, 40:60].mean()


# --- the collector --------------------------------------------------------------------------


def _photo(path: Path, seed: int) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(pink_noise(np.random.default_rng(seed), 96), cv2.COLOR_RGB2BGR))
    return path


def _text_image(path: Path) -> Path:
    img = np.full((240, 600, 3), 235, np.uint8)
    for row in range(4):
        cv2.putText(img, "EXIT MAIN STREET 42", (10, 45 + row * 55), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (20, 20, 20), 3)
    cv2.imwrite(str(path), img)
    return path


def test_licences_are_read_and_filtered() -> None:
    assert normalise_licence("Creative Commons Attribution-ShareAlike 3.0 License") == "CC-BY-SA-3.0"
    assert normalise_licence("LGPLv3") == "LGPL-3+"
    assert normalise_licence("Creative Commons Attribution-NonCommercial 4.0") == "CC-BY-NC-4.0"
    for ok in ("CC0-1.0", "CC-BY-SA-4.0", "GPL-2+", "LGPL-3+", "public-domain"):
        assert licence_allowed(ok), ok
    for bad in ("CC-BY-NC-4.0", "CC-BY-ND-3.0", "CC-BY-NC-SA-2.0", "unknown", "proprietary"):
        assert not licence_allowed(bad), bad
    dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-2+\n\n" \
           "Files: walls/nc-*\nLicense: CC-BY-NC-4.0\n"
    assert debian_licences(dep5) == ([("walls/nc-*", "CC-BY-NC-4.0")], "GPL-2+")


def test_collector_on_a_fake_tree(tmp_path: Path) -> None:
    pkg = tmp_path / "usr/share/backgrounds/fakepkg"
    pkg.mkdir(parents=True)
    files = [_photo(pkg / "free.jpg", 1), _photo(pkg / "nc-photo.jpg", 2), _text_image(pkg / "sign.png"),
             _photo(pkg / "logo-wall.png", 3)]
    doc = tmp_path / "doc/fakepkg"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nLicense: CC0-1.0\n\nFiles: nc-*\nLicense: CC-BY-NC-4.0\n", encoding="utf-8")
    cands = debian_candidates(["fakepkg", "not-installed"], tmp_path / "doc", lambda p: files if p == "fakepkg" else [])
    assert {c.path.name: c.licence for c in cands}["nc-photo.jpg"] == "CC-BY-NC-4.0"
    out = tmp_path / "out"
    rep = collect_backgrounds(out, cands, procedural=2, max_side=64, exclude=["*/logo-*"])
    kept = {Path(r["origin"]).name for r in rep.kept if r["source"] == "debian"}
    reasons = {Path(r["origin"]).name: r["reason"] for r in rep.excluded}
    assert kept == {"free.jpg"}
    assert reasons["nc-photo.jpg"].startswith("licence") and reasons["logo-wall.png"].startswith("exclusion list")
    assert reasons["sign.png"].startswith("text detected")
    manifest = (out / "manifest.tsv").read_text().splitlines()
    assert manifest[0].split("\t")[:4] == ["file", "source", "package", "licence"] and len(manifest) == 1 + 3
    for line in manifest[1:]:
        rel = line.split("\t")[0]
        assert cv2.imread(str(out / rel)).shape[0] <= 64
    pal = Palette.load(out)
    assert pal is not None and len(pal.sets) == 3
    bg, fg = pal.pair(random.Random(0), 0.0)
    assert bg.shape == fg.shape == (3,)
    assert json.loads((out / "palette.json").read_text())["version"] == 1


def test_text_score_separates_signs_from_photos(tmp_path: Path) -> None:
    sign = cv2.cvtColor(cv2.imread(str(_text_image(tmp_path / "t.png"))), cv2.COLOR_BGR2RGB)
    assert text_score(sign) >= 2
    assert text_score(pink_noise(np.random.default_rng(0), 256)) < 2


def test_a_labeled_folder_is_refused_as_a_background_source(tmp_path: Path, base: SynthConfig) -> None:
    labeled = tmp_path / "bench"
    labeled.mkdir()
    _photo(labeled / "1.png", 1)
    (labeled / "labels.tsv").write_text("1.png\tword\n", encoding="utf-8")
    (labeled / "LICENSE").write_text("CC0-1.0\n", encoding="utf-8")
    with pytest.raises(BackgroundSourceError, match="labeled text data set"):
        folder_candidates(labeled)
    with pytest.raises(BackgroundSourceError, match="labeled text data set"):
        collect_backgrounds(tmp_path / "o", [Candidate(labeled / "1.png", "folder", "x", "CC0-1.0")], procedural=0)
    with pytest.raises(BackgroundSourceError, match="labeled text data set"):
        WordRenderer(base.replace(backgrounds_dir=str(labeled)))


def test_cli_collect_backgrounds_refuses_a_labeled_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from crnn_synth_data.cli import main

    labeled = tmp_path / "set"
    labeled.mkdir()
    (labeled / "labels.tsv").write_text("a.png\tx\n", encoding="utf-8")
    rc = main(["--collect-backgrounds", str(tmp_path / "o"), "--background-source", str(labeled), "--procedural", "0"])
    assert rc == 2 and "labeled text data set" in capsys.readouterr().err


def test_cli_previews_the_v2_renderer(tmp_path: Path, bg_dir: Path) -> None:
    from PIL import Image

    from crnn_synth_data.cli import main

    out = tmp_path / "v2.png"
    rc = main(["--preview", str(out), "--count", "4", "--set", "preset=v2", "--set", "font_dirs=@bundled",
               "--set", f"backgrounds_dir={bg_dir}", "--set", "font_cache=none"])
    assert rc == 0 and Image.open(out).size[0] > 100
