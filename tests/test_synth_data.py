"""Tests of synth_data: determinism, labels, boxes, fonts, the on-the-fly dataset, writers/readers and the CLI."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crnn.charset import DEFAULT_CHARS
from crnn.errors import ConfigError
from crnn_synth_data import (
    FolderDataset,
    FolderWriter,
    LmdbDataset,
    LmdbWriter,
    SynthConfig,
    SyntheticWordDataset,
    WordRenderer,
    render_sample,
)
from crnn_synth_data.fonts import FontPool, FontWarning, expand_font_dirs, scan_font_file, scan_fonts
from crnn_synth_data.text import TextSampler

REPO = Path(__file__).resolve().parents[1]
DEJAVU = expand_font_dirs(["@bundled"])[0] / "DejaVu_Sans_Book.ttf"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> SynthConfig:
    """Matplotlib's fonts only (present wherever the project installs), with a private font cache."""
    cache = tmp_path_factory.mktemp("fontcache") / "fonts.json"
    return SynthConfig(font_dirs=["@bundled"], font_cache=str(cache))


@pytest.fixture(scope="module")
def renderer(config: SynthConfig) -> WordRenderer:
    return WordRenderer(config)


def _digest(img: np.ndarray) -> str:
    return hashlib.sha1(img.tobytes() + str(img.shape).encode()).hexdigest()


# --- config ---------------------------------------------------------------------------------


def test_config_round_trip_and_unknown_keys() -> None:
    c = SynthConfig(height=48, p_curve=0.5, font_dirs=["/x"], pad_vertical=(0.0, 0.2))
    assert SynthConfig.from_dict(c.to_dict()) == c
    assert c.to_dict()["pad_vertical"] == [0.0, 0.2]  # JSON/YAML-able
    with pytest.raises(ConfigError, match="unknown synth config key 'no_such_knob'"):
        SynthConfig.from_dict({"no_such_knob": 1})
    with pytest.raises(ConfigError, match="synth config key 'height'"):
        SynthConfig.from_dict({"height": "tall"})
    o = c.with_overrides(["height=40", "color=true", "font_dirs=/a,/b", "words_file=none", "jpeg_quality=10,50"])
    assert (o.height, o.color, o.font_dirs, o.words_file, o.jpeg_quality) == (40, True, ["/a", "/b"], None, (10, 50))


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("charset=0123456789", "charset", "0123456789"),  # text stays verbatim, not a YAML number
        ("charset=ab: #c", "charset", "ab: #c"),
        ("font_cache=", "font_cache", None),
        ("font_dirs=/one", "font_dirs", ["/one"]),
        ("stretch_range=[0.5, 2]", "stretch_range", (0.5, 2.0)),
        ("color=off", "color", False),
        ("p_blur=1e-3", "p_blur", 0.001),
    ],
)
def test_overrides_parse_by_the_field_type(item: str, key: str, value: object) -> None:
    assert getattr(SynthConfig().with_overrides([item]), key) == value


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["nope=1"], "unknown synth config key 'nope'"),
        (["jpeg_quality=1,2,3"], "synth config key 'jpeg_quality'"),
        (["color=maybe"], "synth config key 'color'"),
        (["height"], "expected key=value"),
    ],
)
def test_bad_overrides_raise_one_config_error(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SynthConfig().with_overrides(items)


def test_assignment_is_validated() -> None:
    c = SynthConfig()
    c.height = 40
    with pytest.raises(ConfigError, match="synth config key 'height'"):
        c.height = "tall"  # type: ignore[assignment]


def test_cli_bad_setting_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from crnn_synth_data.cli import main

    assert main(["--preview", str(tmp_path / "p.png"), "--set", "no_such_knob=1"]) == 2
    assert capsys.readouterr().err == "crnn synth: unknown synth config key 'no_such_knob'\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("height: tall\n")
    assert main(["--preview", str(tmp_path / "p.png"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crnn synth: synth config key 'height'") and err.count("\n") == 1


# --- rendering ------------------------------------------------------------------------------


def test_same_seed_same_images(config: SynthConfig, renderer: WordRenderer) -> None:
    fresh = WordRenderer(config)
    for i in range(12):
        a, b = renderer.render(7, i), fresh.render(7, i)
        assert a.text == b.text and np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    # The order of rendering does not matter either (no hidden state between samples).
    assert np.array_equal(fresh.render(7, 3).image, renderer.render(7, 3).image)
    assert np.array_equal(render_sample(config, 7, 5).image, renderer.render(7, 5).image)
    other = [renderer.render(8, i).image for i in range(5)]
    assert not all(np.array_equal(x, renderer.render(7, i).image) for i, x in enumerate(other))


def test_images_labels_and_boxes(renderer: WordRenderer) -> None:
    allowed = set(DEFAULT_CHARS)
    for i in range(150):
        s = renderer.render(1, i)
        assert s.image.dtype == np.uint8 and s.image.ndim == 2 and s.image.shape[0] == 32
        assert s.image.shape[1] >= 8
        assert 1 <= len(s.text) <= 25 and set(s.text) <= allowed and s.text.strip() == s.text
        n = len(s.text.replace(" ", ""))
        assert s.boxes.shape == (n, 4) and s.boxes.dtype == np.float32
        h, w = s.image.shape
        x0, y0, x1, y1 = s.boxes.T
        assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= w).all() and (y1 <= h).all()
        assert (x0 <= x1).all() and (y0 <= y1).all()
        centers = (x0 + x1) / 2
        assert (np.diff(centers) > -1.0).all(), f"boxes out of reading order for {s.text!r}"


def test_color_output(config: SynthConfig) -> None:
    s = WordRenderer(SynthConfig.from_dict({**config.to_dict(), "color": True, "height": 48})).render(0, 0)
    assert s.image.shape[0] == 48 and s.image.shape[2] == 3


def test_text_mix(renderer: WordRenderer) -> None:
    r = random.Random(0)
    texts = [renderer.texts.sample(r) for _ in range(2000)]
    assert sum(t.isupper() for t in texts) > 300
    assert sum(t.islower() for t in texts) > 300
    assert sum(t[:1].isupper() and t[1:].islower() for t in texts) > 150
    assert sum(any(c.isdigit() for c in t) for t in texts) > 150
    assert sum(" " in t for t in texts) > 50
    assert sum(any(c in "'-.,()$%:/" for c in t) for t in texts) > 150
    assert max(len(t) for t in texts) >= 18
    used = set("".join(texts))
    assert len(set(DEFAULT_CHARS) - used) <= 3


def test_words_file_replaces_wordfreq(tmp_path: Path, config: SynthConfig) -> None:
    words = tmp_path / "words.txt"
    words.write_text("alpha\nbeta\ngamma\nd\u00e9j\u00e0\n", encoding="utf-8")
    c = SynthConfig.from_dict({**config.to_dict(), "words_file": str(words), "kind_word": 1.0,
                               "kind_number": 0, "kind_alnum": 0, "kind_punct_word": 0, "kind_phrase": 0,
                               "kind_random_chars": 0})
    sampler = TextSampler(c)
    assert sampler.words == ["alpha", "beta", "gamma"]  # the accented word is outside the charset
    r = random.Random(1)
    assert {sampler.sample(r).lower() for _ in range(100)} == {"alpha", "beta", "gamma"}


# --- fonts ----------------------------------------------------------------------------------


def _subset_font(src: Path, dst: Path, chars: str) -> None:
    from fontTools import subset

    opts = subset.Options()
    opts.name_IDs = ["*"]
    font = subset.load_font(str(src), opts)
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=[ord(c) for c in chars])
    sub.subset(font)
    font.save(str(dst))


def test_font_without_digits_is_not_used_for_digits(tmp_path: Path) -> None:
    _subset_font(DEJAVU, tmp_path / "LettersOnly.ttf", DEFAULT_CHARS.translate({ord(d): None for d in "0123456789"}))
    _subset_font(DEJAVU, tmp_path / "Full.ttf", DEFAULT_CHARS)
    c = SynthConfig(font_dirs=[str(tmp_path)], font_cache=None)
    letters_only = scan_font_file(tmp_path / "LettersOnly.ttf", c.charset)[0]
    assert not set("0123456789") & letters_only.chars and set("abcXYZ") <= letters_only.chars
    pool = FontPool(c)
    assert len(pool.faces) == 2
    r = random.Random(0)
    with_digits = {Path(pool.pick("Tel 0123", r).path).name for _ in range(200)}
    letters = {Path(pool.pick("Hello", r).path).name for _ in range(200)}
    assert with_digits == {"Full.ttf"}
    assert letters == {"Full.ttf", "LettersOnly.ttf"}


def test_corrupt_font_is_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "broken.ttf").write_bytes(b"this is not a font" * 50)
    _subset_font(DEJAVU, tmp_path / "Good.ttf", DEFAULT_CHARS)
    c = SynthConfig(font_dirs=[str(tmp_path)], font_cache=str(tmp_path / "cache.json"))
    for _ in range(2):  # fresh scan, then from the cache: both warn
        with pytest.warns(FontWarning, match="broken.ttf"):
            faces, reports = scan_fonts(c)
        assert [Path(f.path).name for f in faces] == ["Good.ttf"]
        assert reports[0].broken == 1 and reports[0].usable == 1


# --- on-the-fly dataset ---------------------------------------------------------------------


def _as_list(batch):
    return batch


def _stream(ds: SyntheticWordDataset, workers: int, batch_size: int) -> list:
    from torch.utils.data import DataLoader

    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=_as_list)
    return [s for batch in loader for s in batch]


def test_dataloader_order_independent_of_workers(config: SynthConfig, renderer: WordRenderer) -> None:
    ds = SyntheticWordDataset(config, seed=3, length=16, block_size=4)
    one = _stream(ds, 0, 4)
    two = _stream(ds, 2, 4)
    assert [s.text for s in one] == [s.text for s in two]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(one, two))
    expected = [renderer.render(3, i) for i in range(16)]
    assert all(np.array_equal(a.image, e.image) for a, e in zip(one, expected))
    assert len({_digest(s.image) for s in two}) == 16  # workers rendered distinct samples


def test_ranks_and_workers_partition_the_stream(config: SynthConfig) -> None:
    seen = []
    for rank in range(2):
        ds = SyntheticWordDataset(config, seed=0, rank=rank, world_size=2, length=24, block_size=3)
        seen.append([ds.global_index(i) for i in range(24)])
    assert seen[0][:6] == [0, 1, 2, 6, 7, 8] and seen[1][:3] == [3, 4, 5]
    assert sorted(seen[0] + seen[1]) == list(range(48))
    resumed = SyntheticWordDataset(config, world_size=2, rank=1, block_size=3)
    resumed.set_start(48)
    assert [resumed.global_index(i) for i in range(3)] == [51, 52, 53]


def test_start_continues_the_stream(config: SynthConfig, renderer: WordRenderer) -> None:
    ds = SyntheticWordDataset(config, seed=2, length=3, start=10)
    assert [s.text for s in ds] == [renderer.render(2, i).text for i in (10, 11, 12)]


# --- writers and readers --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["lmdb", "folder"])
def test_writers_round_trip(tmp_path: Path, renderer: WordRenderer, fmt: str) -> None:
    samples = [renderer.render(4, i) for i in range(10)]
    out = tmp_path / "data"
    with (LmdbWriter(out) if fmt == "lmdb" else FolderWriter(out)) as w:
        for s in samples:
            w.add(s.image, s.text)
    ds = LmdbDataset(out) if fmt == "lmdb" else FolderDataset(out)
    assert len(ds) == 10 and ds.skipped == 0
    for i, s in enumerate(samples):
        img, text = ds[i]
        assert text == s.text and np.array_equal(img, s.image)


def test_lmdb_layout(tmp_path: Path) -> None:
    import lmdb

    with LmdbWriter(tmp_path / "db") as w:
        w.add(np.full((32, 40), 200, np.uint8), "hello")
        w.add(np.zeros((32, 20), np.uint8), "A1")
    env = lmdb.open(str(tmp_path / "db"), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(b"num-samples") == b"2"
        assert txn.get(b"label-000000001") == b"hello" and txn.get(b"label-000000002") == b"A1"
        assert txn.get(b"image-000000001")[:4] == b"\x89PNG"
    env.close()


def test_folder_reader_skips_bad_samples(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    Image.fromarray(np.full((20, 50), 128, np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "accent.png")
    (tmp_path / "labels.tsv").write_text(
        "good.png\tGood\nmissing.png\tGone\naccent.png\tcaf\u00e9\ncorrupt.png\tBroken\nno tab here\n", encoding="utf-8"
    )
    with caplog.at_level("WARNING"):
        ds = FolderDataset(tmp_path)
    assert len(ds) == 2 and ds.skipped == 3
    assert "missing.png" in caplog.text and "accent.png" in caplog.text
    img, text = ds[1]  # corrupt.png: replaced by the next readable sample instead of crashing
    assert text == "Good" and img.shape == (20, 50)
    assert ds.skipped == 4


@pytest.mark.skipif(not Path("/work/shared/benchmarks/IIIT5K/labels.tsv").is_file(), reason="benchmark not present")
def test_reads_a_real_benchmark_folder() -> None:
    ds = FolderDataset("/work/shared/benchmarks/IIIT5K")
    img, text = ds[0]
    assert len(ds) > 2900 and img.ndim == 2 and img.dtype == np.uint8 and text


# --- command line ---------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "crnn_synth_data.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_preview_writes_a_png(tmp_path: Path, config: SynthConfig) -> None:
    res = _cli("--preview", str(tmp_path / "grid.png"), "--count", "8", "--boxes",
               "--set", "font_dirs=@bundled", "--set", f"font_cache={config.font_cache}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with Image.open(tmp_path / "grid.png") as im:
        assert im.format == "PNG" and im.width > 200 and im.height > 100


def test_cli_writes_datasets_with_workers(tmp_path: Path, config: SynthConfig) -> None:
    from crnn_synth_data.cli import main

    sets = ["--set", "font_dirs=@bundled", "--set", f"font_cache={config.font_cache}"]
    res = _cli("--count", "12", "--out", str(tmp_path / "f"), "--format", "folder", "--workers", "2",
               "--seed", "5", *sets, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert main(["--count", "12", "--out", str(tmp_path / "db"), "--workers", "1", "--seed", "5", *sets]) == 0
    folder, lmdb_ds = FolderDataset(tmp_path / "f"), LmdbDataset(tmp_path / "db")
    assert len(folder) == len(lmdb_ds) == 12
    # Same seed, different process counts and formats: the same dataset.
    assert all(np.array_equal(folder[i][0], lmdb_ds[i][0]) and folder[i][1] == lmdb_ds[i][1] for i in range(12))


def test_cli_list_fonts_and_export_words(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from crnn_synth_data.cli import main

    assert main(["--list-fonts", "--set", "font_dirs=@bundled", "--set", "font_cache=none"]) == 0
    out = capsys.readouterr().out
    assert "usable" in out and "total:" in out
    words = tmp_path / "words.txt"
    assert main(["--export-words", str(words), "--count", "500"]) == 0
    lines = words.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 500 and lines[0] == "the" and all(set(w) <= set(DEFAULT_CHARS) for w in lines)
    assert main(["--set", "no_such=1", "--list-fonts"]) == 2


def test_collect_fonts_makes_a_small_carryable_folder(tmp_path: Path) -> None:
    import warnings

    from crnn_synth_data.fonts import collect_fonts

    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.ttf").write_bytes(b"garbage")
    _subset_font(DEJAVU, src / "LettersOnly.ttf", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    (src / "DejaVuSans.ttf").write_bytes(DEJAVU.read_bytes())
    with pytest.warns(FontWarning, match="broken.ttf"):
        n, size = collect_fonts(SynthConfig(font_dirs=[str(src)], font_cache=None), tmp_path / "out")
    assert n == 2 and size > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", FontWarning)
        faces, _ = scan_fonts(SynthConfig(font_dirs=[str(tmp_path / "out")], font_cache=None))
    assert sorted(len(f.chars) for f in faces) == [52, 95]
