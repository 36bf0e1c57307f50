"""The bundled font library (issue 30): what it holds, its manifest and licences, and that rendering uses it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont

from crnn.errors import NoFontsError
from crnn_synth_data import font_library
from crnn_synth_data.config import SynthConfig
from crnn_synth_data.font_library import (
    ALLOWED_LICENCES, EXCLUDED, FILES, MANIFEST, bundled_font_dir, normalise_font_licence, read_manifest,
    read_package_licence)
from crnn_synth_data.fonts import HIDE_HOST_FONTS_ENV, FontPool, expand_font_dirs, scan_fonts

LIBRARY = Path(__file__).resolve().parent.parent / "fonts" / "crnn_ocr_fonts"


@pytest.fixture(scope="module")
def manifest() -> dict[str, dict[str, str]]:
    return read_manifest(LIBRARY)


def test_a_clone_finds_the_bundled_library() -> None:
    assert bundled_font_dir() == LIBRARY


def test_the_default_font_dirs_are_the_bundled_library_only() -> None:
    assert SynthConfig().font_dirs == ["@bundled"]
    assert expand_font_dirs(SynthConfig().font_dirs) == [LIBRARY / FILES]


def test_the_tests_never_see_the_hosts_fonts() -> None:
    # conftest sets it: a font installed by hand can no more make a test pass here and fail on a fresh machine.
    assert os.environ.get(HIDE_HOST_FONTS_ENV) == "1"
    assert expand_font_dirs(["@system", "@matplotlib", "/usr/share/fonts", "/usr/share/fonts/truetype"]) == []


def test_the_manifest_lists_every_file_and_only_them(manifest: dict[str, dict[str, str]]) -> None:
    on_disk = {f"{FILES}/{p.name}" for p in (LIBRARY / FILES).iterdir()}
    assert on_disk == set(manifest)


def test_every_font_has_a_licence_that_allows_redistribution_and_its_text(manifest: dict[str, dict[str, str]]) -> None:
    for name, row in manifest.items():
        assert row["licence"] in ALLOWED_LICENCES, name
        assert row["package"] and (LIBRARY / row["licence_file"]).is_file(), name


def test_the_library_holds_at_least_250_families_in_under_30_mb(manifest: dict[str, dict[str, str]]) -> None:
    assert len({row["family"] for row in manifest.values()}) >= 250
    assert sum(p.stat().st_size for p in LIBRARY.rglob("*") if p.is_file()) < 30e6


def test_every_family_left_out_says_why() -> None:
    rows = (LIBRARY / EXCLUDED).read_text(encoding="utf-8").splitlines()
    assert rows[0].split("\t") == font_library.EXCLUDED_COLUMNS
    assert all(line.split("\t")[-1].strip() for line in rows[1:])


def test_a_renamed_font_no_longer_carries_its_original_name(manifest: dict[str, dict[str, str]]) -> None:
    renamed = [(name, row) for name, row in manifest.items() if row["note"].startswith("renamed")]
    assert renamed  # OFL Reserved Font Names, ParaType
    for name, row in renamed[:40]:
        with TTFont(LIBRARY / name, lazy=True) as font:
            names = {rec.toUnicode() for rec in font["name"].names if rec.nameID in (1, 3, 4, 6, 16, 21)}
        assert row["shipped_family"] != row["family"]
        assert not any(row["family"].lower() in n.lower() for n in names), (name, names)


def test_every_bundled_face_is_usable_and_subset_to_the_charset(manifest: dict[str, dict[str, str]]) -> None:
    config = SynthConfig()
    faces, reports = scan_fonts(config)
    assert len(faces) == len(manifest) and reports[0].broken == 0
    charset = {ord(c) for c in config.charset}
    with TTFont(LIBRARY / next(iter(manifest)), lazy=True) as font:
        assert set(font.getBestCmap()) <= charset


def test_without_the_bundled_library_the_error_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(font_library, "bundled_font_dir", lambda: None)
    with pytest.raises(NoFontsError, match=r"pip install \./fonts.*font_dirs=@system"):
        FontPool(SynthConfig(font_cache=None))


@pytest.mark.parametrize(("raw", "want"), [
    ("OFL-1.1", "OFL-1.1"), ("SIL-OFL-1.1", "OFL-1.1"), ("SIL", "OFL-1.1"), ("OFL-1.1-RFN", "OFL-1.1"),
    ("SIL_Open_Font_License_1.1", "OFL-1.1"), ("OFL-1.0", "OFL-1.0"),
    ("GPL-2+FE", "GPL-2+-with-font-exception"), ("GPL-3+_with-font-exception", "GPL-3+-with-font-exception"),
    ("GPL-3-only+FE", "GPL-3+-with-font-exception"), ("AGPL-3 with Font exception", "AGPL-3-with-font-exception"),
    ("GPL-2.0", "GPL-2+"), ("Apache-2", "Apache-2.0"), ("Expat", "MIT"), ("bitstream-vera", "Bitstream-Vera"),
    ("CC-BY-NC-4.0", "unknown"), ("Freeware", "unknown"), ("", "unknown"),
])
def test_licence_names_are_normalised(raw: str, want: str) -> None:
    assert normalise_font_licence(raw) == want


DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: example

Files: *
Copyright: 2010 Someone, {rfn}
License: OFL-1.1

Files: fonts/Special*.ttf
License: GPL-3+ with font exception

Files: debian/*
License: GPL-2+

License: OFL-1.1
 "Reserved Font Name" refers to any names specified as such after the copyright statement(s).
"""


@pytest.mark.parametrize(("rfn", "reserved"), [
    ("with Reserved Font Name Example.", True),
    ("with Reserved Font Name <Reserved Font Name>.", False),  # the OFL's template, not a declaration
    ("all rights reserved.", False),
])
def test_a_declared_reserved_font_name_is_found_and_the_ofl_definition_is_not(rfn: str, reserved: bool) -> None:
    lic = read_package_licence(DEP5.format(rfn=rfn))
    assert lic.reserved_names is reserved
    assert lic.licence_of(Path("/usr/share/fonts/x/Example-Bold.ttf")) == "OFL-1.1"
    assert lic.licence_of(Path("/usr/share/fonts/x/Special-Regular.ttf")) == "GPL-3+-with-font-exception"


def test_a_free_text_copyright_file_is_read() -> None:
    text = "This Font Software is licensed under the SIL Open Font License, Version 1.0.\n"
    assert read_package_licence(text).licence_of(Path("a.ttf")) == "OFL-1.0"


def test_list_fonts_names_each_familys_source_and_licence(capsys: pytest.CaptureFixture[str],
                                                          manifest: dict[str, dict[str, str]]) -> None:
    from crnn_synth_data.cli import main

    assert main(["--list-fonts"]) == 0
    out = capsys.readouterr().out
    families = [line for line in out.splitlines() if "  bundled: " in line]
    assert len(families) == len({row["shipped_family"] for row in manifest.values()})
    assert any("DejaVu Sans" in line and "Bitstream-Vera, Debian fonts-dejavu" in line for line in families)


def test_the_manifest_file_is_in_the_library() -> None:
    assert (LIBRARY / MANIFEST).is_file() and (LIBRARY / "licenses").is_dir()


def test_crnn_synth_without_fonts_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crnn_synth_data.cli import main

    rc = main(["--preview", str(tmp_path / "p.png"), "--count", "1", "--set", "font_dirs=@system",
               "--set", "font_cache=none"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("crnn synth: no usable fonts") and len(err.strip().splitlines()) == 1


def test_building_a_library_never_empties_a_folder_that_is_not_one(tmp_path: Path) -> None:
    from crnn_synth_data.font_library import build_font_library

    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="holds no font library"):
        build_font_library(SynthConfig(font_cache=None), [], tmp_path)
    assert (tmp_path / "files" / "mine.txt").read_text() == "keep"
