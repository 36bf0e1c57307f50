"""Font discovery (fontTools cmaps, checked glyphs, a disk cache) and per-face glyph bitmaps."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import logging
import os
import random
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from crnn.errors import NoFontsError
from crnn_synth_data.config import BUNDLED_FONTS, MATPLOTLIB_FONTS, SYSTEM_FONTS, SynthConfig

log = logging.getLogger(__name__)

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts")
# Set (to anything but "" or "0") to make ``@system`` and ``@matplotlib`` expand to nothing: the tests and CI
# render as a fresh machine would, whatever fonts this one has installed by hand.
HIDE_HOST_FONTS_ENV = "CRNN_SYNTH_HIDE_HOST_FONTS"
_CACHE_VERSION = 3
# Letters whose lower and upper case differ in shape: if most look alike, the font is all-caps.
_CASE_PROBES = "abdeghnqrt"


class FontWarning(UserWarning):
    """A font file was skipped (unreadable, broken or without usable glyphs)."""


@dataclass(frozen=True)
class FontFace:
    """One face of a font file and the charset characters it draws with a visible glyph."""

    path: str
    index: int
    family: str
    style: str
    chars: frozenset[str]


@dataclass
class FolderReport:
    """What scanning one font folder found."""

    folder: str
    files: int = 0
    faces: int = 0
    usable: int = 0
    broken: int = 0
    excluded: int = 0
    families: set[str] = field(default_factory=set)


def _matplotlib_font_root() -> Path | None:
    """matplotlib's mpl-data folder (its bundled fonts lie under fonts/ttf), or None without matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    return Path(spec.origin).parent / "mpl-data" if spec and spec.origin else None


def expand_font_dirs(dirs: Iterable[str]) -> list[Path]:
    """Real folders for ``font_dirs`` entries (``@bundled``, ``@system``, ``@matplotlib`` expanded), existing only."""
    from crnn_synth_data.font_library import FILES, bundled_font_dir

    mpl = _matplotlib_font_root()
    out: list[Path] = []
    for d in dirs:
        if d == BUNDLED_FONTS:
            bundled = bundled_font_dir()
            if bundled is not None:
                out.append(bundled / FILES)
        elif d == SYSTEM_FONTS:
            out.extend(Path(p).expanduser() for p in SYSTEM_FONT_DIRS)
        elif d == MATPLOTLIB_FONTS:
            if mpl is not None:
                out.append(mpl / "fonts" / "ttf")
        else:
            out.append(Path(d).expanduser())
    if os.environ.get(HIDE_HOST_FONTS_ENV, "") not in ("", "0"):  # the tokens and any host folder named by path
        host = [Path(p).expanduser().resolve() for p in SYSTEM_FONT_DIRS] + ([mpl.resolve()] if mpl else [])
        out = [p for p in out if not any(p.resolve().is_relative_to(h) for h in host)]
    seen: set[Path] = set()
    result = []
    for p in out:
        if p.is_dir() and p.resolve() not in seen:
            seen.add(p.resolve())
            result.append(p)
    return result


def font_files(folder: Path) -> list[Path]:
    """Font files under ``folder`` (recursive), sorted so that discovery order is reproducible."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())


def _visible_chars(font: ImageFont.FreeTypeFont, chars: Iterable[str]) -> set[str]:
    """The characters whose glyph has ink (a cmap entry can point at an empty glyph)."""
    out = set()
    for ch in chars:
        if ch == " ":
            out.add(ch)
            continue
        x0, y0, x1, y1 = font.getbbox(ch)
        if x1 > x0 and y1 > y0:
            out.add(ch)
    return out


def _glyph_signature(font: ImageFont.FreeTypeFont, ch: str) -> np.ndarray:
    """The glyph's ink scaled to 24x24, zero-mean and unit-norm: dot products compare shapes at any size."""
    x0, y0, x1, y1 = font.getbbox(ch)
    im = Image.new("L", (max(1, x1 - x0), max(1, y1 - y0)))
    ImageDraw.Draw(im).text((-x0, -y0), ch, font=font, fill=255)
    a = np.asarray(im.resize((24, 24), Image.BILINEAR), np.float32).ravel()
    a = a - a.mean()
    return a / (float(np.linalg.norm(a)) + 1e-6)


def _is_all_caps(font: ImageFont.FreeTypeFont, chars: set[str]) -> bool:
    """Whether lower-case letters are drawn as (small) capitals, which would mislabel their case."""
    probes = [c for c in _CASE_PROBES if c in chars and c.upper() in chars]
    if len(probes) < 5:
        return False
    # Measured on ~120 families: normal fonts stay below 0.58, all-caps ones (Humor Sans) above 0.65.
    similarity = [float(_glyph_signature(font, c) @ _glyph_signature(font, c.upper())) for c in probes]
    return float(np.median(similarity)) > 0.62


def _has_distinct_glyphs(font: ImageFont.FreeTypeFont, chars: set[str]) -> bool:
    """False for fonts that draw most letters with one shape (tofu boxes, placeholder glyphs)."""
    letters = [c for c in "AEHMORSaeghnrs" if c in chars]
    if len(letters) < 4:
        return True
    shapes = {(_glyph_signature(font, c) > 0).tobytes() for c in letters}
    return len(shapes) > len(letters) // 2


def scan_font_file(path: Path, charset: str) -> list[FontFace]:
    """Every face of ``path`` with the charset characters it can draw; raises on a broken file."""
    from fontTools.ttLib import TTCollection, TTFont

    wanted = set(charset)
    if path.suffix.lower() in (".ttc", ".otc"):
        with TTCollection(str(path), lazy=True) as coll:
            count = len(coll.fonts)
    else:
        count = 1
    faces = []
    for index in range(count):
        with TTFont(str(path), lazy=True, fontNumber=index) as tt:
            cmap = tt.getBestCmap() or {}
            names = tt["name"]
            family = names.getBestFamilyName() or path.stem
            style = names.getBestSubFamilyName() or ""
        mapped = {chr(c) for c in cmap if c < 0x110000} & wanted
        if not mapped:
            faces.append(FontFace(str(path), index, family, style, frozenset()))
            continue
        font = ImageFont.truetype(str(path), 32, index=index, layout_engine=ImageFont.Layout.BASIC)
        chars = _visible_chars(font, mapped)
        if not _has_distinct_glyphs(font, chars):
            chars = set()
        elif _is_all_caps(font, chars):
            chars = {c for c in chars if not c.islower()}
        faces.append(FontFace(str(path), index, family, style, frozenset(chars)))
    return faces


def _usable(face: FontFace, config: SynthConfig) -> bool:
    """Whether a face covers enough of the charset's letters and digits to be worth drawing from."""
    core = [c for c in config.charset if c.isalnum()]
    if not core:
        return bool(face.chars)
    return sum(c in face.chars for c in core) >= config.min_font_coverage * len(core)


def _excluded(path: Path, patterns: list[str]) -> bool:
    name = path.name.lower()
    return any(fnmatch.fnmatch(name, p.lower()) for p in patterns)


def _load_cache(path: Path | None, charset: str) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if data.get("version") != _CACHE_VERSION or data.get("charset") != _charset_key(charset):
        return {}
    return data.get("files", {})


def _save_cache(path: Path | None, charset: str, files: dict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": _CACHE_VERSION, "charset": _charset_key(charset), "files": files}))
        os.replace(tmp, path)
    except OSError as e:  # a read-only home must not stop rendering
        log.debug("cannot write font cache %s: %s", path, e)


def _charset_key(charset: str) -> str:
    return hashlib.sha1(charset.encode("utf-8")).hexdigest()


def scan_fonts(config: SynthConfig) -> tuple[list[FontFace], list[FolderReport]]:
    """Usable faces from ``config.font_dirs`` (broken files skipped with a FontWarning) and a report per folder."""
    cache_path = Path(config.font_cache).expanduser() if config.font_cache else None
    cache = _load_cache(cache_path, config.charset)
    new_cache: dict = {}
    faces: list[FontFace] = []
    reports = []
    seen_files: set[str] = set()
    for folder in expand_font_dirs(config.font_dirs):
        report = FolderReport(str(folder))
        reports.append(report)
        for path in font_files(folder):
            real = str(path.resolve())
            if real in seen_files:  # symlinked duplicates (common in /usr/share/fonts)
                continue
            seen_files.add(real)
            report.files += 1
            if _excluded(path, config.exclude_fonts):
                report.excluded += 1
                continue
            stat = path.stat()
            key = f"{path}|{stat.st_mtime_ns}|{stat.st_size}"
            entry = cache.get(key)
            if entry is None:
                try:
                    entry = [
                        {"index": f.index, "family": f.family, "style": f.style, "chars": "".join(sorted(f.chars))}
                        for f in scan_font_file(path, config.charset)
                    ]
                except Exception as e:  # fontTools and FreeType raise many types on corrupt files
                    entry = {"error": f"{type(e).__name__}: {e}"}
            new_cache[key] = entry
            if isinstance(entry, dict):
                report.broken += 1
                warnings.warn(f"skipping font {path}: {entry['error']}", FontWarning, stacklevel=2)
                continue
            for f in entry:
                face = FontFace(str(path), f["index"], f["family"], f["style"], frozenset(f["chars"]))
                report.faces += 1
                if _usable(face, config):
                    report.usable += 1
                    report.families.add(face.family)
                    faces.append(face)
    if new_cache != cache:
        _save_cache(cache_path, config.charset, new_cache)
    return faces, reports


@dataclass
class Glyph:
    """A rasterised glyph: ink (h, w) uint8, its offset from the pen position on the baseline, and the advance."""

    ink: np.ndarray
    dx: int
    dy: int
    advance: float


class GlyphSet:
    """One face at one size, with glyphs rasterised once and cached."""

    def __init__(self, face: FontFace, size: int) -> None:
        self.face = face
        self.font = ImageFont.truetype(face.path, size, index=face.index, layout_engine=ImageFont.Layout.BASIC)
        self.ascent, self.descent = self.font.getmetrics()
        self.size = size
        self._glyphs: dict[str, Glyph] = {}

    def glyph(self, ch: str) -> Glyph:
        """The cached glyph of ``ch``."""
        g = self._glyphs.get(ch)
        if g is None:
            g = self._glyphs[ch] = self._render(ch)
        return g

    def _render(self, ch: str) -> Glyph:
        advance = self.font.getlength(ch)
        x0, y0, x1, y1 = self.font.getbbox(ch, anchor="ls")
        if x1 <= x0 or y1 <= y0:
            return Glyph(np.zeros((0, 0), np.uint8), 0, 0, advance)
        im = Image.new("L", (x1 - x0, y1 - y0))
        ImageDraw.Draw(im).text((-x0, -y0), ch, font=self.font, fill=255, anchor="ls")
        return Glyph(np.asarray(im).copy(), x0, y0, advance)


def no_fonts_message(config: SynthConfig) -> str:
    """Why no font was found, and how to get the bundled library or use this machine's fonts."""
    from crnn_synth_data.font_library import bundled_font_dir

    msg = f"no usable fonts found in font_dirs={config.font_dirs}"
    if BUNDLED_FONTS in config.font_dirs and bundled_font_dir() is None:
        msg += ("; the bundled font library is not installed: from a clone of crnn-ocr, `pip install ./fonts` "
                "(the crnn-ocr-fonts package), or render with this machine's fonts: --set font_dirs=@system,@matplotlib")
    else:
        msg += "; point font_dirs at a folder of .ttf/.otf files, or use @bundled (the project's fonts)"
    return msg


class FontPool:
    """Usable faces grouped by family; picks a face able to draw a text, family first for variety."""

    def __init__(self, config: SynthConfig, faces: list[FontFace] | None = None) -> None:
        self.config = config
        if faces is None:
            faces, _ = scan_fonts(config)
        if not faces:
            raise NoFontsError(no_fonts_message(config))
        self.faces = faces
        by_family: dict[str, list[FontFace]] = {}
        for f in faces:
            by_family.setdefault(f.family, []).append(f)
        self.families = [by_family[k] for k in sorted(by_family)]
        self._glyph_sets: dict[tuple[str, int], GlyphSet] = {}

    def pick(self, text: str, r: random.Random) -> FontFace | None:
        """A random face drawing every non-space character of ``text``, or None when no face can."""
        needed = set(text)
        needed.discard(" ")
        for _ in range(12):
            face = r.choice(r.choice(self.families))
            if needed <= face.chars:
                return face
        able = [f for f in self.faces if needed <= f.chars]
        return r.choice(able) if able else None

    def glyphs(self, face: FontFace) -> GlyphSet:
        """The cached GlyphSet of ``face`` at the configured size."""
        key = (face.path, face.index)
        gs = self._glyph_sets.get(key)
        if gs is None:
            gs = self._glyph_sets[key] = GlyphSet(face, self.config.font_size)
        return gs


def collect_fonts(config: SynthConfig, out_dir: str | Path) -> tuple[int, int]:
    """Copy every usable face into ``out_dir``, subset to the charset (a few KB each, easy to carry).

    Returns (faces written, bytes written). Use the folder as ``font_dirs`` on a machine without fonts.
    """
    from crnn_synth_data.font_library import font_file_name, subset_face

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    faces, _ = scan_fonts(config)
    written, size = 0, 0
    used: set[str] = set()
    # fontTools logs a line per odd header timestamp and dropped table: noise for hundreds of fonts.
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    for face in faces:
        try:
            font = subset_face(face.path, face.index, config.charset)
        except Exception as e:  # one unsubsettable face must not stop the collection
            log.warning("cannot subset %s (%s); skipping it", face.path, e)
            continue
        path = out / font_file_name(font, face.family, face.style, used)
        font.save(str(path))
        font.close()
        written += 1
        size += path.stat().st_size
    return written, size
