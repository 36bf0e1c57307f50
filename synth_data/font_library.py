"""The bundled font library: where it lives, its manifest, and how it is built from licensed Debian font packages.

The library is its own small distribution (``fonts/`` in a clone: the package ``crnn_ocr_fonts``), so that the
inference-only install of crnn-ocr does not carry it. ``@bundled`` in ``SynthConfig.font_dirs`` is its folder.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import hashlib
import importlib.util
import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crnn_synth_data.config import SynthConfig

if TYPE_CHECKING:
    from crnn_synth_data.fonts import FontFace

log = logging.getLogger(__name__)

PACKAGE = "crnn_ocr_fonts"  # the distribution crnn-ocr-fonts, built from fonts/ in a clone
MANIFEST = "manifest.tsv"
EXCLUDED = "excluded.tsv"
FILES = "files"
LICENSES = "licenses"
MANIFEST_COLUMNS = ["file", "family", "style", "shipped_family", "licence", "package", "version", "origin",
                    "licence_file", "note"]
EXCLUDED_COLUMNS = ["family", "origin", "package", "licence", "reason"]

# Licences (normalised names) that allow redistributing the fonts, modified (subset) included.
ALLOWED_LICENCES = frozenset({
    "OFL-1.0", "OFL-1.1", "Apache-2.0", "MIT", "BSD-3-Clause", "public-domain", "Bitstream-Vera",
    "GPL-2+-with-font-exception", "GPL-3+-with-font-exception", "AGPL-3-with-font-exception",
    "GPL-2+", "GPL-3+", "GPL-3", "LGPL-2+", "AGPL-3+", "ParaType-Free-Font-License", "CC-BY-3.0", "CC-BY-SA-3.0",
})

# The raw licence names of Debian copyright files, as normalised names (first match wins).
_LICENCE_NAMES: list[tuple[str, str]] = [
    (r"^AGPL-3.*\b(FE|font.?exception)", "AGPL-3-with-font-exception"),
    (r"^AGPL-3(\.0)?\+", "AGPL-3+"),
    (r"^AGPL-3", "AGPL-3+"),
    (r"^GPL-2.*(FE|font.?exception)", "GPL-2+-with-font-exception"),
    (r"^GPL-3.*(FE|font.?exception)", "GPL-3+-with-font-exception"),
    (r"^GPL-3(\.0)?\+", "GPL-3+"),
    (r"^GPL-3", "GPL-3"),
    (r"^GPL-2", "GPL-2+"),
    (r"^LGPL-2", "LGPL-2+"),
    (r"^(SIL[-_ ]?)?(OFL|Open[-_ ]Font[-_ ]License)[-_ ]?1\.0", "OFL-1.0"),
    (r"^(SIL[-_ ]?)?(OFL|Open[-_ ]Font[-_ ]License)", "OFL-1.1"),
    (r"^SIL(-1\.1)?$", "OFL-1.1"),
    (r"^Apache-2", "Apache-2.0"),
    (r"^(MIT|Expat)$", "MIT"),
    (r"^BSD-3", "BSD-3-Clause"),
    (r"^public.?domain", "public-domain"),
    (r"^bitstream.?vera", "Bitstream-Vera"),
    (r"^ParaType", "ParaType-Free-Font-License"),
    (r"^CC-BY-3", "CC-BY-3.0"),
    (r"^CC-BY-SA-3", "CC-BY-SA-3.0"),
]
# Free-text copyright files (no DEP-5 header), searched in this order.
_LICENCE_TEXTS: list[tuple[str, str]] = [
    (r"Open Font License,?\s+Version 1\.0", "OFL-1.0"),
    (r"Open Font License,?\s+Version 1\.1", "OFL-1.1"),
    (r"GNU General Public\s+License", "GPL-2+"),
    (r"Public Domain", "public-domain"),
]
# Licences whose modified versions (a subset is one) must not carry the original name.
_RENAME_ALWAYS = frozenset({"ParaType-Free-Font-License"})
# The common licence texts a copyright file may point to instead of quoting them.
_COMMON_LICENSES = Path("/usr/share/common-licenses")


def bundled_font_dir() -> Path | None:
    """The folder of the bundled font library: the installed crnn-ocr-fonts package, else a clone's fonts/."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.origin:
        return Path(spec.origin).parent
    clone = Path(__file__).resolve().parent.parent / "fonts" / PACKAGE
    return clone if (clone / MANIFEST).is_file() else None


def read_manifest(folder: Path) -> dict[str, dict[str, str]]:
    """The library's manifest rows by file name (``files/NAME``); empty when ``folder`` has none."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


def normalise_font_licence(raw: str) -> str:
    """A Debian copyright file's licence name ("GPL-3+ with font exception", "SIL-OFL-1.1") as a normalised one."""
    name = raw.strip()
    for pattern, norm in _LICENCE_NAMES:
        if re.search(pattern, name, re.I):
            return norm
    return "unknown"


@dataclass
class PackageLicence:
    """The licence rules of one Debian package's copyright file."""

    rules: list[tuple[str, str]]  # (Files pattern, raw licence), in file order: later ones win
    default: str  # the raw licence of ``Files: *`` (or of a free-text file)
    text: str
    reserved_names: bool  # the text declares Reserved Font Names (OFL): a modified font must be renamed

    def licence_of(self, path: Path) -> str:
        """The normalised licence of an installed file of this package."""
        found = self.default
        for pattern, lic in self.rules:
            base = pattern.rsplit("/", 1)[-1]
            if fnmatch.fnmatch(path.name, base) and base != "*":
                found = lic
        return normalise_font_licence(found) if found else "unknown"


def read_package_licence(copyright_text: str) -> PackageLicence:
    """The licence rules of a Debian copyright file (DEP-5 or free text)."""
    # "with Reserved Font Name X" after a copyright line declares one; the OFL's own text only defines the term,
    # and templates say "with Reserved Font Name <Reserved Font Name>".
    reserved = bool(re.search(r"with\s+Reserved\s+Font\s+Names?\s*[^<\s]", copyright_text, re.I))
    rules: list[tuple[str, str]] = []
    default = ""
    if copyright_text.lstrip().lower().startswith("format:"):
        for stanza in re.split(r"\n\s*\n", copyright_text):
            files = re.search(r"^Files:\s*(.+(?:\n[ \t]+.+)*)", stanza, re.M)
            lic = re.search(r"^License:[ \t]*(.+)$", stanza, re.M)
            if not (files and lic):
                continue
            for pattern in files.group(1).split():
                if pattern == "*":
                    default = lic.group(1)
                elif not pattern.startswith("debian/"):
                    rules.append((pattern, lic.group(1)))
        if normalise_font_licence(default) != "unknown":
            return PackageLicence(rules, default, copyright_text, reserved)
    for pattern, norm in _LICENCE_TEXTS:
        if re.search(pattern, copyright_text, re.I):
            return PackageLicence(rules, norm, copyright_text, reserved)
    return PackageLicence(rules, default, copyright_text, reserved)


@dataclass
class LibraryReport:
    """What a build wrote and left out."""

    kept: list[dict[str, str]] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    size: int = 0


def _owners(paths: Iterable[Path]) -> dict[str, str]:
    """The Debian package owning each path (as given and resolved), by path; absent when none owns it."""
    names = sorted({str(p) for p in paths} | {str(p.resolve()) for p in paths})
    out = subprocess.run(["dpkg", "-S", *names], capture_output=True, text=True, check=False).stdout
    owner: dict[str, str] = {}
    for line in out.splitlines():
        pkgs, sep, path = line.partition(": ")
        if sep and "diversion" not in pkgs:
            owner[path] = pkgs.split(",")[0].split(":")[0].strip()
    return owner


@functools.lru_cache(maxsize=None)
def _package_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _shipped_name(family: str) -> str:
    """A neutral family name for a font whose licence forbids its original name on a modified version."""
    return f"crnn-renamed-{hashlib.sha1(family.encode('utf-8')).hexdigest()[:8]}"


def _rename(font, family: str) -> None:  # noqa: ANN001 - a fontTools TTFont
    """Give every name of ``font`` that carries its family the neutral ``family`` instead (name table and CFF)."""
    name = font["name"]
    style = name.getBestSubFamilyName() or "Regular"
    ps = re.sub(r"[^A-Za-z0-9-]", "", f"{family}-{style}")[:63]
    for rec in list(name.names):
        if rec.nameID in (16, 17, 21, 22):  # typographic names would otherwise win over ID 1
            name.removeNames(nameID=rec.nameID)
    for rec in name.names:
        new = {1: family, 3: f"{family} {style}", 4: f"{family} {style}", 6: ps}.get(rec.nameID)
        if new is not None:
            rec.string = new
    if "CFF " in font:
        cff = font["CFF "].cff
        cff.fontNames = [ps]
        top = cff.topDictIndex[0]
        for key, value in (("FamilyName", family), ("FullName", f"{family} {style}")):
            if hasattr(top, key):
                setattr(top, key, value)


def subset_face(path: str, index: int, charset: str):  # noqa: ANN201 - a fontTools TTFont
    """Face ``index`` of ``path`` subset to ``charset`` (names kept, no layout features: the renderer places glyphs)."""
    try:
        return _subset(path, index, charset, ())
    except AssertionError:  # a malformed optional table (e.g. a 'gasp' of an unknown version): leave it out
        return _subset(path, index, charset, ("gasp", "hdmx", "VDMX", "LTSH", "kern"))


def _subset(path: str, index: int, charset: str, drop: tuple[str, ...]):  # noqa: ANN202
    from fontTools import subset

    opts = subset.Options()
    opts.drop_tables += list(drop)
    opts.name_IDs = ["*"]  # keep family/style names: sampling groups faces by family
    opts.name_languages = ["*"]
    opts.layout_features = []
    opts.font_number = index
    opts.notdef_outline = True
    font = subset.load_font(path, opts)
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=sorted({ord(c) for c in charset}))
    sub.subset(font)
    font.recalcTimestamp = False  # a rebuild writes the same bytes
    return font


def font_file_name(font, family: str, style: str, used: set[str]) -> str:  # noqa: ANN001 - a fontTools TTFont
    """A file name for a subset face, "Family_Style.ttf" (.otf for CFF outlines), unique among ``used`` (updated)."""
    ext = ".otf" if "CFF " in font or "CFF2" in font else ".ttf"
    stem = "".join(ch if ch.isalnum() else "_" for ch in f"{family}-{style}")[:80]
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return f"{name}{ext}"


def build_font_library(config: SynthConfig, faces: list[FontFace], out_dir: str | Path,
                       progress: Callable[[int, int], None] | None = None) -> LibraryReport:
    """Write the ``faces`` (crnn_synth_data.fonts.scan_fonts) whose licence allows redistribution into ``out_dir``.

    Each face is subset to the charset and renamed where its licence asks a modified font to be; the folder
    gets files/, manifest.tsv, excluded.tsv (with the reason of each family left out) and licenses/ (each
    source package's copyright file and the common licence texts they point to). One face per family and
    style: the first folder of ``font_dirs`` wins.
    """
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise FileExistsError(f"{out} is not empty and holds no font library ({MANIFEST}); give an empty or new folder")
    if out.exists():  # a library being rebuilt: its fonts and licences are written anew
        shutil.rmtree(out / FILES, ignore_errors=True)
        shutil.rmtree(out / LICENSES, ignore_errors=True)
    (out / FILES).mkdir(parents=True, exist_ok=True)
    (out / LICENSES).mkdir(parents=True, exist_ok=True)
    owner = _owners(Path(f.path) for f in faces)
    licences: dict[str, PackageLicence] = {}
    report = LibraryReport()
    seen: set[tuple[str, str]] = set()
    used_names: set[str] = set()
    common_needed: set[str] = set()
    for i, face in enumerate(faces):
        if progress:
            progress(i, len(faces))
        path = Path(face.path)
        package = owner.get(str(path)) or owner.get(str(path.resolve())) or ""
        if (face.family, face.style) in seen:
            continue  # the same face from another folder (matplotlib's DejaVu, a symlink farm)
        lic_name = "unknown"
        if package:
            if package not in licences:
                cfile = Path("/usr/share/doc") / package / "copyright"
                text = cfile.read_text(encoding="utf-8", errors="replace") if cfile.is_file() else ""
                licences[package] = read_package_licence(text)
            lic_name = licences[package].licence_of(path)
        if lic_name not in ALLOWED_LICENCES:
            why = ("no Debian package owns the file, so no licence is known" if not package
                   else f"licence {lic_name!r} is not one that allows redistribution (or could not be read)")
            report.excluded.append({"family": face.family, "origin": str(path), "package": package,
                                    "licence": lic_name, "reason": why})
            continue
        seen.add((face.family, face.style))
        pl = licences[package]
        note = ""
        shipped_family = face.family
        if lic_name in _RENAME_ALWAYS:
            note = f"renamed: the {lic_name} forbids the original name on a modified (subset) font"
        elif lic_name.startswith("OFL") and pl.reserved_names:
            note = "renamed: the OFL's Reserved Font Name may not be used by a modified (subset) font"
        elif lic_name == "Bitstream-Vera" and re.search(r"bitstream|vera", face.family, re.I):
            note = "renamed: the Bitstream Vera licence forbids 'Bitstream' and 'Vera' in a modified font's name"
        try:
            font = subset_face(face.path, face.index, config.charset)
        except Exception as e:  # one unsubsettable face must not stop the build
            report.excluded.append({"family": face.family, "origin": str(path), "package": package,
                                    "licence": lic_name, "reason": f"cannot be subset: {type(e).__name__}"})
            continue
        if note:
            shipped_family = _shipped_name(face.family)
            _rename(font, shipped_family)
        target = out / FILES / font_file_name(font, shipped_family, face.style, used_names)
        font.save(str(target))
        font.close()
        report.size += target.stat().st_size
        lic_file = f"{LICENSES}/{package}.copyright"
        if not (out / lic_file).exists():
            shutil.copyfile(Path("/usr/share/doc") / package / "copyright", out / lic_file)
            common_needed.update(re.findall(r"/usr/share/common-licenses/([A-Za-z0-9.+-]+)", pl.text))
        report.kept.append({"file": f"{FILES}/{target.name}", "family": face.family, "style": face.style,
                            "shipped_family": shipped_family, "licence": lic_name, "package": package,
                            "version": _package_version(package), "origin": str(path), "licence_file": lic_file,
                            "note": note})
    for name in sorted(common_needed):
        src = _COMMON_LICENSES / name.rstrip(".")
        if src.is_file():
            shutil.copyfile(src, out / LICENSES / f"common-{src.name}")
    _write_tsv(out / MANIFEST, report.kept, MANIFEST_COLUMNS)
    _write_tsv(out / EXCLUDED, _families_left_out(report), EXCLUDED_COLUMNS)
    return report


def _families_left_out(report: LibraryReport) -> list[dict[str, str]]:
    """Excluded faces, one row per family and reason, without families that the library holds anyway."""
    kept = {row["family"] for row in report.kept}
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for row in report.excluded:
        if row["family"] not in kept:
            rows.setdefault((row["family"], row["reason"]), row)
    return sorted(rows.values(), key=lambda r: (r["family"].lower(), r["origin"]))


def _write_tsv(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, delimiter="\t", lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({c: " ".join(str(row.get(c, "")).split()) for c in columns})  # no tab or newline inside
