"""`crnn synth --collect-backgrounds DIR`: photographs and textures that may be redistributed and trained on,
gathered from installed packages (scikit-image, Debian wallpapers) and procedural generators, with a manifest."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from crnn.errors import BackgroundSourceError
from crnn_synth_data.backgrounds import IMAGE_SUFFIXES, refuse_labeled_folder
from crnn_synth_data.palette import image_palette, write_palette
from crnn_synth_data.procedural_textures import dead_leaves, pink_noise

MANIFEST = "manifest.tsv"
EXCLUDED = "excluded.tsv"
# Wallpaper and artwork packages of Debian (apt-get install them; absent ones are skipped).
DEBIAN_PACKAGES = ("gnome-backgrounds", "plasma-workspace-wallpapers", "mate-backgrounds", "ukui-wallpapers",
                   "mypaint-data-extras")
# scikit-image's bundled photographs (skimage/data, no download) without text; licences from its data/README.txt.
# Left out: text, page (text), coins (inscriptions), logo, rocket (lettering), astronaut (badges, flag), and the
# synthetic or scientific images (chessboard, phantom, cell, microaneurysms, retina, ihc, multipage, lfw).
SKIMAGE_IMAGES = {
    "brick.png": "CC0-1.0", "grass.png": "CC0-1.0", "gravel.png": "CC0-1.0", "camera.png": "CC0-1.0",
    "chelsea.png": "CC0-1.0", "coffee.png": "CC0-1.0", "horse.png": "public-domain", "moon.png": "public-domain",
    "hubble_deep_field.jpg": "public-domain", "motorcycle_left.png": "CC-BY-4.0", "color.png": "CC0-1.0",
    "clock_motion.png": "CC0-1.0",
}
# Files seen to show text, logos or writing (checked by eye on a contact sheet); matched on the path's end.
EXCLUDE_LIST = (
    "*/screenshot.*",  # Plasma's previews of the desktop: window titles and menus
    "*/Float-into-MATE.png",  # the MATE logo
    "*/symbolic-*.webp", "*/vnc-*.webp",  # GNOME: icon glyphs
    "*/FlyingKonqui/*",  # a mascot with a K logo
)
# Licences that allow redistribution and derived works (training); NC and ND variants are refused.
_ALLOWED = re.compile(r"^(CC0|CC-BY(-SA)?|GPL|LGPL|MIT|BSD|Apache|Expat|public-domain|OFL|Zlib|FTL)", re.I)


@dataclass
class Candidate:
    """An image that may be collected, with where it came from and under which licence."""

    path: Path
    source: str  # "debian", "skimage", "folder" or "procedural"
    package: str
    licence: str


@dataclass
class CollectionReport:
    """What a collection kept and left out, and why."""

    kept: list[dict]
    excluded: list[dict]
    size: int


def licence_allowed(licence: str) -> bool:
    """Whether an SPDX-like licence name allows redistribution and training (no NC, no ND)."""
    name = licence.strip()
    return bool(_ALLOWED.match(name)) and not re.search(r"-NC|-ND|non-?commercial|no-?deriv", name, re.I)


def normalise_licence(text: str) -> str:
    """A licence statement ("Creative Commons Attribution-ShareAlike 3.0", "LGPLv3", "GPL-2+") as an SPDX-like name."""
    t = text.strip()
    m = re.search(r"creative\s*commons\s*([A-Za-z\- ]+?)\s*(\d\.\d)", t, re.I)
    if m:
        words = m.group(1).lower()
        parts = ["CC"]
        if "zero" in words:
            return "CC0-1.0"
        parts.append("BY")
        if "noncommercial" in words.replace("-", ""):
            parts.append("NC")
        if "sharealike" in words.replace("-", "").replace(" ", ""):
            parts.append("SA")
        if "noderiv" in words.replace("-", "").replace(" ", ""):
            parts.append("ND")
        return "-".join(parts) + f"-{m.group(2)}"
    m = re.match(r"^(L?GPL)v?-?(\d)", t, re.I)
    if m:
        return f"{m.group(1).upper()}-{m.group(2)}+"
    if re.search(r"lesser general public license", t, re.I):
        return "LGPL-2+"
    if re.search(r"general public license", t, re.I):
        return "GPL-2+"
    if re.search(r"public domain", t, re.I):
        return "public-domain"
    return t.split()[0] if t else "unknown"


def debian_licences(copyright_text: str) -> tuple[list[tuple[str, str]], str]:
    """(file pattern, licence) rules of a Debian copyright file, later rules winning, and the package's default.

    Reads machine-readable (DEP-5) files and the older free-text form ("- name.jpg: ... Licensed under X").
    """
    rules: list[tuple[str, str]] = []
    default = "unknown"
    if copyright_text.lstrip().lower().startswith("format:"):
        for stanza in re.split(r"\n\s*\n", copyright_text):
            files = re.search(r"^Files:\s*(.+(?:\n[ \t]+.+)*)", stanza, re.M)
            lic = re.search(r"^License:\s*(\S+)", stanza, re.M)
            if files and lic:
                for pattern in files.group(1).split():
                    rules.append((pattern, lic.group(1)))
        for pattern, lic in rules:
            if pattern == "*":
                default = lic
        return [(p, lic) for p, lic in rules if p != "*"], default
    pending: list[str] = []
    for line in copyright_text.splitlines():
        m = re.match(r"^\s*-\s+([\w.*\-]+):?\s*$", line)
        if m:
            pending.append(m.group(1))
            continue
        m = re.search(r"Licensed under (.+?)\.?$", line)
        if m and pending:
            rules.extend((name, normalise_licence(m.group(1))) for name in pending)
            pending = []
    m = re.search(r"^Licen[cs]es?:\s*\n(.+?)(?:\n\s*\n|\Z)", copyright_text, re.M | re.S)
    if m:
        default = normalise_licence(m.group(1))
    return rules, default


def _licence_of(path: Path, rules: list[tuple[str, str]], default: str) -> str:
    # KDE wallpapers name their own licence beside the images, more precisely than the package.
    for parent in path.parents[:4]:
        meta = parent / "metadata.json"
        if meta.is_file():
            try:
                lic = json.loads(meta.read_text(encoding="utf-8")).get("KPlugin", {}).get("License")
            except (OSError, ValueError):
                lic = None
            if lic:
                return normalise_licence(lic)
    found = default
    for pattern, lic in rules:
        if fnmatch.fnmatch(path.name, pattern) or fnmatch.fnmatch(str(path), "*/" + pattern.lstrip("/")):
            found = lic
    return found


def dpkg_files(package: str) -> list[Path]:
    """The files an installed Debian package owns (empty when it is not installed)."""
    try:
        out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return [Path(line) for line in out.splitlines() if line.strip()]


def debian_candidates(
    packages: Iterable[str] = DEBIAN_PACKAGES, doc_root: Path = Path("/usr/share/doc"),
    list_files: Callable[[str], list[Path]] = dpkg_files,
) -> list[Candidate]:
    """Images of the installed wallpaper packages, each with the licence its copyright file gives it."""
    out = []
    for pkg in packages:
        files = [p for p in list_files(pkg) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not files:
            continue
        cfile = doc_root / pkg / "copyright"
        text = cfile.read_text(encoding="utf-8", errors="replace") if cfile.is_file() else ""
        rules, default = debian_licences(text)
        out.extend(Candidate(p, "debian", pkg, _licence_of(p, rules, default)) for p in sorted(files))
    return out


def skimage_candidates() -> list[Candidate]:
    """scikit-image's bundled photographs without text (none when scikit-image is not installed)."""
    try:
        from skimage import data
    except ImportError:
        return []
    root = Path(data.data_dir)
    return [Candidate(root / name, "skimage", "scikit-image", lic) for name, lic in SKIMAGE_IMAGES.items()
            if (root / name).is_file()]


def folder_candidates(folder: Path) -> list[Candidate]:
    """The images of a user's folder, under the licence named by the first line of its LICENSE file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BackgroundSourceError(f"{folder}: not a folder")
    refuse_labeled_folder(folder)
    lic_file = next((folder / n for n in ("LICENSE", "LICENSE.txt", "COPYING", "copyright") if (folder / n).is_file()), None)
    if lic_file is None:
        raise BackgroundSourceError(f"{folder}: no LICENSE file naming the images' licence (e.g. 'CC0-1.0' on its first line)")
    lines = lic_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    licence = normalise_licence(lines[0]) if lines else "unknown"
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise BackgroundSourceError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return [Candidate(p, "folder", folder.name, licence) for p in files]


def text_score(rgb: np.ndarray) -> int:
    """How many text-like rows of characters an image shows: runs of >= 4 blobs of similar height side by
    side, in either polarity (a heuristic: 0 on most photographs, several on signs, pages and screenshots)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    k = 768 / max(gray.shape)
    if k < 1:
        gray = cv2.resize(gray, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    rows = 0
    for polarity in (cv2.THRESH_BINARY, cv2.THRESH_BINARY_INV):
        binary = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, polarity, 25, 15)
        n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        blobs = []
        for x, y, w, h, area in stats[1:]:
            if 8 <= h <= 80 and 0.15 <= w / h <= 1.3 and 0.15 <= area / (w * h) <= 0.85:
                blobs.append((x, y, w, h))
        blobs.sort()
        used = set()
        for i, (x, y, w, h) in enumerate(blobs):
            if i in used:
                continue
            run, last = [i], (x, y, w, h)
            for j in range(i + 1, min(len(blobs), i + 200)):
                bx, by, bw, bh = blobs[j]
                lx, ly, lw, lh = last
                if bx - (lx + lw) > 1.2 * lh:
                    if bx > lx + lw + 3 * lh:
                        break
                    continue
                if 0.7 <= bh / lh <= 1.4 and abs((by + bh) - (ly + lh)) < 0.3 * lh and bx >= lx + lw - 0.2 * lw:
                    run.append(j)
                    last = blobs[j]
            if len(run) >= 4:
                rows += 1
                used.update(run)
    return rows


def image_hash(rgb: np.ndarray) -> int:
    """A 64-bit difference hash of the image's central square: the same picture at another size hashes alike."""
    h, w = rgb.shape[:2]
    m = min(h, w)
    square = rgb[(h - m) // 2 : (h + m) // 2, (w - m) // 2 : (w + m) // 2]
    g = cv2.resize(cv2.cvtColor(square, cv2.COLOR_RGB2GRAY), (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (g[:, 1:] > g[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def _excluded_by_list(path: Path, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(str(path), p) for p in patterns)


def _load(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def collect_backgrounds(
    out_dir: str | Path, candidates: list[Candidate] | None = None, procedural: int = 60, max_side: int = 640,
    text_rows: int = 2, exclude: Iterable[str] = EXCLUDE_LIST, seed: int = 0,
    progress: Callable[[str], None] | None = None,  # called once per candidate and per generated image
) -> CollectionReport:
    """Write the usable candidates (default: scikit-image + Debian packages) and ``procedural`` generated images
    into ``out_dir`` as JPEGs at most ``max_side`` px, with ``manifest.tsv``, ``excluded.tsv`` and ``palette.json``.

    A candidate is left out when its licence does not allow redistribution and training, when it is on the
    ``exclude`` list, or when :func:`text_score` finds ``text_rows`` or more rows of characters in it.
    """
    out = Path(out_dir)
    if candidates is None:
        candidates = skimage_candidates() + debian_candidates()
    for cand in candidates:
        for parent in [cand.path.parent, *cand.path.parents[:3]]:
            if (parent / "labels.tsv").is_file():
                raise BackgroundSourceError(f"{cand.path} belongs to a labeled text data set ({parent / 'labels.tsv'})")
    (out / "images").mkdir(parents=True, exist_ok=True)
    kept: list[dict] = []
    excluded: list[dict] = []
    palettes = {}
    names: set[str] = set()
    hashes: list[int] = []
    size = 0

    def save(rgb: np.ndarray, cand: Candidate, stem: str) -> None:
        nonlocal size
        k = max_side / max(rgb.shape[:2])
        if k < 1:
            rgb = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        name, n = f"{cand.source}-{stem}", 1
        while name in names:
            n += 1
            name = f"{cand.source}-{stem}-{n}"
        names.add(name)
        rel = f"images/{name}.jpg"
        cv2.imwrite(str(out / rel), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
        nbytes = (out / rel).stat().st_size
        size += nbytes
        palettes[rel] = image_palette(rgb, seed=len(palettes))
        kept.append({"file": rel, "source": cand.source, "package": cand.package, "licence": cand.licence,
                     "origin": str(cand.path), "width": rgb.shape[1], "height": rgb.shape[0], "bytes": nbytes})

    for cand in candidates:
        if progress:
            progress(str(cand.path))
        reason = None
        if not licence_allowed(cand.licence):
            reason = f"licence {cand.licence}"
        elif _excluded_by_list(cand.path, exclude):
            reason = "exclusion list (shows text or logos)"
        rgb = None
        if reason is None:
            rgb = _load(cand.path)
            if rgb is None:
                reason = "unreadable"
            else:
                rows = text_score(rgb)
                digest = image_hash(rgb)
                if rows >= text_rows:
                    reason = f"text detected ({rows} rows of characters)"
                elif any(bin(digest ^ d).count("1") <= 6 for d in hashes):
                    reason = "duplicate (the same picture at another size)"
                else:
                    hashes.append(digest)
        if reason is not None:
            excluded.append({"origin": str(cand.path), "source": cand.source, "package": cand.package,
                             "licence": cand.licence, "reason": reason})
            continue
        stem = re.sub(r"[^A-Za-z0-9]+", "_", "_".join(cand.path.parts[-3:]).rsplit(".", 1)[0])[-60:]
        save(rgb, cand, stem)
    rng = np.random.default_rng(seed)
    for i in range(procedural):
        kind = "dead_leaves" if i % 2 == 0 else "pink_noise"
        if progress:
            progress(kind)
        rgb = dead_leaves(rng) if kind == "dead_leaves" else pink_noise(rng)
        save(rgb, Candidate(Path(f"{kind}/{i:04d}"), "procedural", "crnn-ocr", "CC0-1.0"), f"{kind}_{i:04d}")
    _write_tsv(out / MANIFEST, kept, ["file", "source", "package", "licence", "origin", "width", "height", "bytes"])
    _write_tsv(out / EXCLUDED, excluded, ["origin", "source", "package", "licence", "reason"])
    write_palette(out, palettes)
    return CollectionReport(kept, excluded, size)


def _write_tsv(path: Path, rows: list[dict], columns: list[str]) -> None:
    lines = ["\t".join(columns)] + ["\t".join(str(r[c]) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
