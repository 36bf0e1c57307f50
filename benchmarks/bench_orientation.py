"""Issue 18's measurements: `crnn ocr --orientation none` vs `auto` on rendered layouts and on the benchmarks.

    python benchmarks/bench_orientation.py rendered [--words 200] [--seed 2]
    python benchmarks/bench_orientation.py benchmarks [--root ../shared/benchmarks]

``rendered``: renders ``--words`` words (seed 2: neither the classifier's training seed 0 nor its validation
seed 1) in each layout (upright, turned 90 / 180 / 270 degrees, stacked letters) into a temporary labeled folder,
then runs `crnn ocr` on it with each orientation mode, and reports per layout the classifier's accuracy and the
word accuracy (benchmark protocol). It also reads the stacked words in two other ways (read as they come; turned
90 degrees counter-clockwise), to compare with the re-layout of stacked letters that `auto` uses.

``benchmarks``: for each folder (IIIT5K, SVT) the crops taller than wide are selected at run time (from the
image headers; nothing is copied) and `crnn ocr` reads them, then the full folder, with each mode; word accuracy
(protocol) and images/s of the full folder (wall time of the command, start-up included; on a shared machine
the rates are "under load").
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from PIL import Image

from crnn.metrics import normalize_protocol

REPO = Path(__file__).resolve().parent.parent
MODES = ("none", "auto")


def crnn_ocr(paths: list[str], mode: str, extra: list[str] | None = None) -> tuple[list[dict[str, str]], float, str]:
    """Rows of `crnn ocr --orientation mode` over ``paths`` (given on stdin), its wall time, and the command line."""
    cmd = [sys.executable, "-m", "crnn.cli", "ocr", "-", "--precision", "fp32", "--orientation", mode, *(extra or [])]
    start = time.perf_counter()
    proc = subprocess.run(cmd, input="\n".join(paths) + "\n", capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"crnn ocr failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rows = list(csv.DictReader(io.StringIO(proc.stdout), delimiter="\t"))
    return rows, seconds, " ".join(["crnn", "ocr", "-", *cmd[5:]])


def read_labels(folder: Path) -> list[tuple[str, str]]:
    """(absolute image path, text) of each line of a labeled folder's labels.tsv."""
    out = []
    for line in (folder / "labels.tsv").read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            rel, text = line.split("\t", 1)
            out.append((str(folder / rel), text))
    return out


def accuracy(rows: list[dict[str, str]], truth: dict[str, str]) -> tuple[int, int]:
    """(correct under the protocol, total) of `crnn ocr` rows against their labels."""
    good = sum(normalize_protocol(r["text"]) == normalize_protocol(truth[r["path"]]) for r in rows)
    return good, len(rows)


def render_layouts(out: Path, words: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """``words`` rendered words (two letters or more) in each layout, as PNGs under ``out``: layout -> (path, text)."""
    import cv2

    from crnn.io.oriented_crops import ORIENTATIONS
    from crnn_synth_data.config import SynthConfig
    from crnn_synth_data.orientation import render_in_layout
    from crnn_synth_data.render import WordRenderer

    renderer = WordRenderer(SynthConfig(height=48))
    sets: dict[str, list[tuple[str, str]]] = {o: [] for o in ORIENTATIONS}
    index = 0
    while len(sets["0"]) < words:
        samples = {o: render_in_layout(renderer, seed, index, o) for o in ORIENTATIONS}
        index += 1
        if len(samples["0"].boxes) < 2:
            continue
        for o, s in samples.items():
            path = out / f"{o}_{index:05d}.png"
            cv2.imwrite(str(path), s.image)
            sets[o].append((str(path), s.text))
    return sets


def bench_rendered(args: argparse.Namespace) -> None:
    from crnn.io.oriented_crops import ORIENTATIONS

    with tempfile.TemporaryDirectory() as tmp:
        sets = render_layouts(Path(tmp), args.words, args.seed)
        truth = {p: t for items in sets.values() for p, t in items}
        paths = [p for items in sets.values() for p, _ in items]
        results = {}
        for mode in MODES:
            rows, _, cmd = crnn_ocr(paths, mode)
            results[mode] = {r["path"]: r for r in rows}
            print(f"# {cmd}  (on {len(paths)} rendered crops)")
        print(f"\nrendered words, seed {args.seed}, {args.words} per layout; word accuracy (protocol)")
        print("| layout | classified right (auto) | none | auto |")
        print("|---|---|---|---|")
        for o in ORIENTATIONS:
            ps = [p for p, _ in sets[o]]
            right = sum(results["auto"][p].get("orientation") == o for p in ps)
            cells = []
            for mode in MODES:
                good, n = accuracy([results[mode][p] for p in ps], truth)
                cells.append(f"{good}/{n} ({100 * good / n:.1f}%)")
            print(f"| {o} | {right}/{len(ps)} ({100 * right / len(ps):.1f}%) | {' | '.join(cells)} |")
        confusion = Counter(results["auto"][p].get("orientation") for p, _ in sets["0"])
        print(f"upright words turned by auto: {len(sets['0']) - confusion['0']} of {len(sets['0'])} ({dict(confusion)})")
        stacked_ways(sets["stacked"])


def stacked_ways(items: list[tuple[str, str]]) -> None:
    """Word accuracy of the stacked crops read three ways, through the library (Recognizer, fp32)."""
    from crnn.io.oriented_crops import turn_upright
    from crnn.io.preprocess import load_image, normalize
    from crnn.reading.recognizer import Recognizer

    rec = Recognizer(precision="fp32")
    grays = [load_image(p) for p, _ in items]
    print("\nstacked letters read three ways (Recognizer, fp32): word accuracy (protocol)")
    for name, label in (("as they come", "0"), ("turned 90 degrees counter-clockwise", "90"),
                        ("re-laid side by side (crnn.io.oriented_crops.unstack; what auto does)", "stacked")):
        preds = rec.recognize_prepared([normalize(turn_upright(g, label), rec.preprocess) for g in grays])
        good = sum(normalize_protocol(p.text) == normalize_protocol(t) for p, (_, t) in zip(preds, items))
        print(f"  {name}: {good}/{len(items)} ({100 * good / len(items):.1f}%)")


def bench_benchmarks(args: argparse.Namespace) -> None:
    root = Path(args.root)
    print(f"| folder | crops | {' | '.join(args.modes)} | {' | '.join('images/s ' + m for m in args.modes)} |")
    print("|---|---|" + "---|" * 2 * len(args.modes))
    for name in args.folders:
        items = read_labels(root / name)
        truth = dict(items)
        tall = []
        for path, _ in items:
            with Image.open(path) as im:  # the header only
                w, h = im.size
            if h > w:
                tall.append(path)
        for label, paths in ((f"{name}, taller than wide", tall), (f"{name}, all", [p for p, _ in items])):
            cells, rates, turned = [], [], ""
            for mode in args.modes:
                rows, seconds, cmd = crnn_ocr(paths, mode)
                good, n = accuracy(rows, truth)
                cells.append(f"{good}/{n} ({100 * good / n:.2f}%)")
                rates.append(f"{n / seconds:.0f}")
                if mode == "auto":
                    turned = str(dict(Counter(r.get("orientation") for r in rows)))
            print(f"| {label} | {len(paths)} | {' | '.join(cells)} | {' | '.join(rates)} |  orientations: {turned}")
    print(f"# each: {cmd.replace('--orientation auto', '--orientation MODE')}, image paths on stdin")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("rendered")
    r.add_argument("--words", type=int, default=200)
    r.add_argument("--seed", type=int, default=2)
    b = sub.add_parser("benchmarks")
    b.add_argument("--root", default=str(REPO.parent / "shared" / "benchmarks"))
    b.add_argument("--folders", nargs="+", default=["IIIT5K", "SVT"])
    b.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = p.parse_args(argv)
    (bench_rendered if args.what == "rendered" else bench_benchmarks)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
