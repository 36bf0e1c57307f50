"""A lexicon on whole photos (issue 35): end-to-end P/R/F and the reading time of `crnn ocr --detect` without a list
and with a large list that holds every true word of the folder plus random filler words (over 500 words, so a word
the list cannot place keeps its reading, as on crops). The list holds the truth: the gain is an upper bound of what
a list of a photo's words can add, not a figure for an arbitrary list. Each photo is detected once; both readers read
the same regions.

    python benchmarks/photo_lexicon.py /tmp/scenes100 --limit 30
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from crnn.charset import Charset
from crnn.decoding.lexicon import Lexicon


def folder_lexicon(truths: list[list[Any]], charset: Charset, fillers: int, seed: int) -> tuple[Lexicon, int]:
    """Every true word of the folder (not ``###``) and ``fillers`` random lower-case words (seeded); the true count."""
    words = sorted({t.text for truth in truths for t in truth if t.text != "###"})
    rng = random.Random(seed)
    fill = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 9))) for _ in range(fillers)]
    return Lexicon(words + fill, charset), len(words)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print (and return) the scores and times without and with the list."""
    from crnn.detection.end_to_end_metric import TextBox, end_to_end
    from crnn.detection.photo_folder import read_photo_folder
    from crnn.detection.photo_image import load_photo
    from crnn.detection.photo_reader import PhotoReader
    from crnn.detection.registry import load_detector
    from crnn.kinds.loading import load_recognizer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a photo folder with annotations.jsonl (crnn synth --scenes)")
    p.add_argument("--limit", type=int, help="the first N photos")
    p.add_argument("--fillers", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="the detector's threads (the recognizer: one)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    photos = read_photo_folder(args.folder)
    rec = load_recognizer(threads=1)
    lexicon, true_words = folder_lexicon([t for _, t in photos], rec.charset, args.fillers, args.seed)
    photos = photos[: args.limit]
    det = load_detector(threads=args.threads)
    readers = {"none": PhotoReader(det, rec), "list": PhotoReader(det, rec, lexicon=lexicon)}
    runs: dict[str, list] = {k: [] for k in readers}
    seconds = dict.fromkeys(readers, 0.0)
    flags: list[bool | None] = []
    for path, truth in photos:
        rgb = load_photo(path)
        regions = det.detect(rgb)
        for k, reader in readers.items():
            t = time.perf_counter()
            reading = reader.read_regions(rgb, regions)
            seconds[k] += time.perf_counter() - t
            runs[k].append((truth, [TextBox(w.polygon, w.text) for w in reading.words]))
            flags += [w.in_lexicon for w in reading.words] if reader.lexicon is not None else []
    out: dict[str, Any] = {"folder": args.folder, "photos": len(photos), "true_words": true_words,
                           "fillers": args.fillers, "words_in_list": sum(bool(f) for f in flags), "words": len(flags)}
    print(f"{len(photos)} photos of {args.folder}; list: {true_words} true words + {args.fillers} fillers")
    for k in readers:
        e = end_to_end(runs[k]).to_dict()
        out[k] = {"detection": e["detection"], "end_to_end": e["end_to_end"], "read_s": round(seconds[k], 2)}
        print(f"{k:5} e2e P/R/F {e['end_to_end']['precision']:.1f} / {e['end_to_end']['recall']:.1f} / "
              f"{e['end_to_end']['f']:.1f}; det F {e['detection']['f']:.1f}; reading (recognize + split) "
              f"{seconds[k]:.1f} s")
    print(f"words placed in the list: {out['words_in_list']} of {out['words']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
