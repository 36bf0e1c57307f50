"""`crnn synth`: write a synthetic dataset to disk, preview samples, list fonts, export the lexicon."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
import warnings
from pathlib import Path

from crnn.machine import cpu_cores
from crnn_synth_data.config import SynthConfig

_renderer = None  # the worker process's WordRenderer (inherited through fork when possible)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``crnn synth``."""
    p = argparse.ArgumentParser(
        prog="crnn synth",
        description="Render synthetic word images: write a dataset (--out), a preview grid (--preview), "
        "list usable fonts (--list-fonts) or export the lexicon (--export-words).",
    )
    p.add_argument("--count", type=int, help="samples to write (default: 64 for --preview, 50000 words for --export-words)")
    p.add_argument("--out", type=Path, help="output LMDB folder or image folder")
    p.add_argument("--format", choices=["lmdb", "folder"], default="lmdb", help="LMDB (default) or PNGs + labels.tsv")
    p.add_argument("--workers", type=int, default=cpu_cores(), help="rendering processes (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="stream seed: the same seed writes the same dataset")
    p.add_argument("--start", type=int, default=0, help="first stream index (to extend a dataset)")
    p.add_argument("--scenes", type=Path, metavar="DIR",
                   help="write --count whole rendered photos (signs of words on backgrounds, with occluders) with every "
                   "word's polygon and text: DIR/img/*.jpg and DIR/annotations.jsonl (full-photo OCR's test set)")
    p.add_argument("--preview", type=Path, metavar="PNG", help="write a grid of --count samples with their labels")
    p.add_argument("--boxes", action="store_true", help="draw character boxes on the preview")
    p.add_argument("--columns", type=int, default=4, help="preview grid columns")
    p.add_argument("--list-fonts", action="store_true",
                   help="count the fonts usable for the charset, per folder, and list each family with its source")
    p.add_argument("--export-words", type=Path, metavar="FILE", help="write the lexicon, one word per line")
    p.add_argument("--collect-fonts", type=Path, metavar="DIR",
                   help="copy every usable font, subset to the charset, into DIR (to carry to a machine without fonts)")
    p.add_argument("--build-font-library", type=Path, metavar="DIR",
                   help="maintainers: rebuild the bundled font library (fonts/crnn_ocr_fonts) from this machine's "
                   "Debian font packages, keeping only licences that allow redistribution (give --set "
                   "font_dirs=@system,@matplotlib; docs/fonts.md)")
    p.add_argument("--collect-backgrounds", type=Path, metavar="DIR",
                   help="gather photographs and textures that may be redistributed and trained on (scikit-image, "
                   "Debian wallpaper packages, procedural) into DIR with a manifest; then --set backgrounds_dir=DIR")
    p.add_argument("--background-source", type=Path, action="append", default=[], metavar="FOLDER",
                   help="with --collect-backgrounds: also a folder of your own images (its LICENSE file names the licence)")
    p.add_argument("--procedural", type=int, default=60, metavar="N",
                   help="with --collect-backgrounds: dead-leaves and 1/f-noise images to generate (default 60)")
    p.add_argument("--config", type=Path, metavar="YAML", help="SynthConfig settings (a mapping of field: value)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one SynthConfig field")
    return p


def load_config(path: Path | None, overrides: list[str]) -> SynthConfig:
    """The default config, updated from a YAML file and then ``key=value`` overrides (ConfigError if bad)."""
    return SynthConfig.from_yaml(path, overrides)


def _init_worker(config: SynthConfig) -> None:
    global _renderer
    if _renderer is None:
        from crnn_synth_data.render import WordRenderer

        _renderer = WordRenderer(config)


def _render_chunk(job: tuple[int, int, int]) -> list[tuple[bytes, str]]:
    """PNG bytes and text of stream indices ``start..stop-1``."""
    from crnn_synth_data.storage import encode_png

    seed, start, stop = job
    out = []
    for i in range(start, stop):
        s = _renderer.render(seed, i)
        out.append((encode_png(s.image), s.text))
    return out


def write_dataset(config: SynthConfig, out: Path, fmt: str, count: int, workers: int, seed: int, start: int = 0) -> int:
    """Render stream indices ``start..start+count-1`` of ``seed`` into ``out``; returns the number written."""
    from tqdm import tqdm

    from crnn_synth_data.storage import FolderWriter, LmdbWriter

    import cv2

    global _renderer
    from crnn_synth_data.render import WordRenderer

    if workers > 1:
        # Processes are the parallelism. Set before any OpenCV call: changing it inside a
        # forked child can deadlock on the parent's thread pool.
        cv2.setNumThreads(1)
    _renderer = WordRenderer(config)  # also fills the font cache before workers start
    chunk = 256
    jobs = [(seed, i, min(i + chunk, start + count)) for i in range(start, start + count, chunk)]
    # PNGs of 32-pixel words are a few KB: start the map there and let the writer grow it.
    writer = LmdbWriter(out, map_size=max(1 << 26, count * 8192)) if fmt == "lmdb" else FolderWriter(out)
    bar = tqdm(total=count, unit="img", file=sys.stderr, desc=f"synth -> {out}")
    try:
        if workers <= 1:
            results = map(_render_chunk, jobs)
            pool = None
        else:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            pool = mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(config,))
            results = pool.imap(_render_chunk, jobs)
        for batch in results:
            for data, text in batch:
                writer.add(data, text)
            bar.update(len(batch))
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        bar.close()
        writer.close()
    return writer.count


def list_fonts(config: SynthConfig) -> None:
    """Print, per font folder, how many files and faces were found and how many are usable; then each family
    with where it came from (the bundled library's licence and Debian package, or the folder)."""
    from crnn_synth_data.font_library import FILES, bundled_font_dir, read_manifest
    from crnn_synth_data.fonts import scan_fonts

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        faces, reports = scan_fonts(config)
    print(f"{'folder':<55} {'files':>6} {'faces':>6} {'usable':>6} {'families':>8} {'broken':>6} {'excluded':>8}")
    for r in reports:
        print(f"{r.folder:<55} {r.files:>6} {r.faces:>6} {r.usable:>6} {len(r.families):>8} {r.broken:>6} {r.excluded:>8}")
    families = {f.family for f in faces}
    print(f"total: {len(faces)} usable faces in {len(families)} families (charset of {len(config.charset)} characters)")
    bundled = bundled_font_dir()
    manifest = read_manifest(bundled) if bundled else {}
    by_family: dict[str, list[str]] = {}
    faces_of: dict[str, int] = {}
    for face in faces:
        path = Path(face.path)
        in_library = bundled is not None and path.parent == bundled / FILES
        row = manifest.get(f"{FILES}/{path.name}") if in_library else None
        source = (f"bundled: {row['family']}, {row['licence']}, Debian {row['package']}" if row
                  else f"bundled ({path.name} not in the manifest)" if in_library
                  else f"folder {path.parent}")
        faces_of[face.family] = faces_of.get(face.family, 0) + 1
        if source not in by_family.setdefault(face.family, []):
            by_family[face.family].append(source)
    print(f"\n{'family':<34} {'faces':>5}  source")
    for family in sorted(by_family, key=str.lower):
        print(f"{family:<34} {faces_of[family]:>5}  {'; '.join(by_family[family])}")
    for w in caught[:10]:
        print(f"warning: {w.message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``crnn synth``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.set)
    except (ValueError, OSError) as e:
        print(f"crnn synth: {e}", file=sys.stderr)
        return 2
    from crnn.errors import CRNNError

    try:
        return _run(args, config)
    except CRNNError as e:  # no fonts, a bad backgrounds folder, ...: one line, not a traceback
        print(f"crnn synth: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, config: SynthConfig) -> int:
    did = False
    if args.list_fonts:
        list_fonts(config)
        did = True
    if args.export_words:
        from crnn_synth_data.text import export_words

        n = export_words(args.export_words, args.count or config.lexicon_size, config)
        print(f"wrote {n} words to {args.export_words}")
        did = True
    if args.collect_fonts:
        from crnn_synth_data.fonts import collect_fonts

        n, size = collect_fonts(config, args.collect_fonts)
        print(f"wrote {n} fonts ({size / 1e6:.1f} MB) to {args.collect_fonts}; use --set font_dirs={args.collect_fonts}")
        did = True
    if args.build_font_library:
        from crnn_synth_data.font_library import EXCLUDED as FONTS_EXCLUDED, MANIFEST as FONTS_MANIFEST
        from crnn_synth_data.font_library import build_font_library
        from crnn_synth_data.fonts import scan_fonts
        from tqdm import tqdm

        with tqdm(unit="face", file=sys.stderr, desc=f"fonts -> {args.build_font_library}") as bar:
            def step(i: int, total: int) -> None:
                bar.total = total
                bar.update(1)

            try:
                rep = build_font_library(config, scan_fonts(config)[0], args.build_font_library, progress=step)
            except FileExistsError as e:
                print(f"crnn synth: --build-font-library {e}", file=sys.stderr)
                return 2
        families = {row["family"] for row in rep.kept}
        print(f"wrote {len(rep.kept)} faces of {len(families)} families ({rep.size / 1e6:.1f} MB) to "
              f"{args.build_font_library}; left out {len({r['family'] for r in rep.excluded} - families)} families "
              f"(see {FONTS_EXCLUDED}); manifest: {FONTS_MANIFEST}")
        did = True
    if args.collect_backgrounds:
        from crnn.errors import CRNNError
        from crnn_synth_data.background_collection import (
            EXCLUDED, MANIFEST, collect_backgrounds, debian_candidates, folder_candidates, skimage_candidates)

        try:
            cands = skimage_candidates() + debian_candidates()
            for folder in args.background_source:
                cands += folder_candidates(folder)
            from tqdm import tqdm

            with tqdm(total=len(cands) + args.procedural, unit="img", file=sys.stderr,
                      desc=f"backgrounds -> {args.collect_backgrounds}") as bar:
                rep = collect_backgrounds(args.collect_backgrounds, cands, procedural=args.procedural,
                                          progress=lambda _: bar.update())
        except CRNNError as e:
            print(f"crnn synth: {e}", file=sys.stderr)
            return 2
        by_source: dict[str, int] = {}
        for row in rep.kept:
            by_source[row["source"]] = by_source.get(row["source"], 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(by_source.items()))
        print(f"wrote {len(rep.kept)} images ({counts}; {rep.size / 1e6:.1f} MB) to {args.collect_backgrounds}, "
              f"left out {len(rep.excluded)} (see {EXCLUDED}); manifest: {MANIFEST}; "
              f"use --set backgrounds_dir={args.collect_backgrounds}")
        did = True
    if args.scenes:
        from crnn_synth_data.scene import write_scenes

        t0 = time.perf_counter()
        n = write_scenes(config, args.scenes, args.count or 100, args.seed, args.start)
        print(f"wrote {n} scenes to {args.scenes} in {time.perf_counter() - t0:.1f} s")
        did = True
    if args.preview:
        from crnn_synth_data.preview import write_preview
        from crnn_synth_data.render import WordRenderer

        renderer = WordRenderer(config)
        samples = [renderer.render(args.seed, args.start + i) for i in range(args.count or 64)]
        write_preview(samples, args.preview, columns=args.columns, boxes=args.boxes)
        print(f"wrote a preview of {len(samples)} samples to {args.preview}")
        did = True
    if args.out:
        if not args.count or args.count < 1:
            print("crnn synth: --out needs --count N (N >= 1)", file=sys.stderr)
            return 2
        fmt = args.format
        t0 = time.perf_counter()
        n = write_dataset(config, args.out, fmt, args.count, args.workers, args.seed, args.start)
        dt = time.perf_counter() - t0
        print(f"wrote {n} samples ({fmt}) to {args.out} in {dt:.1f} s ({n / dt:.0f} images/s)")
        did = True
    if not did:
        build_parser().print_usage(sys.stderr)
        print("crnn synth: give --out, --scenes, --preview, --list-fonts, --export-words, --collect-fonts, --build-font-library "
              "or --collect-backgrounds", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
