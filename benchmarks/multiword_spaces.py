"""Dropped spaces on multi-word lines (issue 35): how often a recognizer's reading of a rendered line has fewer spaces
than its label, line accuracy with and without the spaces, and the share of the label's words a split at spaces finds.

    crnn synth --count 500 --out /tmp/mw500 --format folder --seed 20261135 --set p_multiword=1
    crnn eval --data /tmp/mw500 --decoder greedy --errors /tmp/mw500_greedy.tsv
    crnn eval --data /tmp/mw500 --errors /tmp/mw500_lm.tsv
    python benchmarks/multiword_spaces.py /tmp/mw500 greedy=/tmp/mw500_greedy.tsv lm=/tmp/mw500_lm.tsv \\
        --seed 20261135 --set p_multiword=1 [--json OUT]

With ``--read MODEL`` (a shipped model's name or a checkpoint) the lines are read here instead of from ``--errors``
files, with each ``--decoder``, and the readings are scored as decoded and with the spaces the CTC alignment infers
(crnn.detection.word_split.infer_spaces, as the photo reader does): at each ``--space-prob`` and ``--gap-pitches``
("none" turns a rule off; by default the photo reader's setting):

    python benchmarks/multiword_spaces.py /tmp/mw500 --read default --decoder lm --decoder greedy --seed 20261135 \
        --set p_multiword=1 [--space-prob 0.005 0.01 none] [--gap-pitches 2 2.5 none]

A line's reading is its row in the ``--errors`` file, or its label where it has none (``crnn eval --errors`` writes
every reading that differs from the label). With ``--seed`` (and the ``--set`` overrides the folder was rendered with)
each line is rendered again to measure its word gaps from the character boxes, and the share of spaces kept is also
given per gap, in character heights. No timing: nothing here depends on the machine.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

GAP_BINS = (-1.0, 0.2, 0.35, 0.5, 0.75, float("inf"))  # a space's ink gap / the line's median character height


def space_stats(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Shares over (label, reading) pairs: readings with fewer / more spaces than the label, line accuracy exact and
    case-insensitive, with and without spaces, and the label's words found by a split of the reading at spaces."""
    n = max(len(pairs), 1)
    fewer = sum(r.count(" ") < t.count(" ") for t, r in pairs)
    more = sum(r.count(" ") > t.count(" ") for t, r in pairs)
    found = total = 0
    for t, r in pairs:
        want, got = Counter(t.lower().split()), Counter(r.lower().split())
        found += sum((want & got).values())
        total += sum(want.values())
    right = [(t, r) for t, r in pairs if _same_letters(t, r)]
    kept = [k for t, r in pairs for k in kept_spaces(t, r)]
    return {
        "lines": len(pairs),
        "spaces_kept": sum(kept) / max(len(kept), 1),
        "letters_right": len(right) / n,
        "fewer_spaces_letters_right": sum(r.count(" ") < t.count(" ") for t, r in right) / max(len(right), 1),
        "fewer_spaces": fewer / n,
        "more_spaces": more / n,
        "line_acc_case": sum(t == r for t, r in pairs) / n,
        "line_acc_nocase": sum(t.lower() == r.lower() for t, r in pairs) / n,
        "line_acc_case_nospace": sum(t.replace(" ", "") == r.replace(" ", "") for t, r in pairs) / n,
        "line_acc_nocase_nospace": sum(t.replace(" ", "").lower() == r.replace(" ", "").lower() for t, r in pairs) / n,
        "words_found": found / max(total, 1),
    }


def _same_letters(label: str, reading: str) -> bool:
    """Whether the reading has the label's characters, spaces and case aside."""
    return label.replace(" ", "").lower() == reading.replace(" ", "").lower()


def kept_spaces(label: str, reading: str) -> list[bool]:
    """For each space of ``label``, whether the reading has it: a space of a block both share when aligned
    (difflib, case-insensitive), so a space lost with its neighbouring letters counts as lost too."""
    sm = difflib.SequenceMatcher(None, label.lower(), reading.lower(), autojunk=False)
    matched = {i for a, _, size in sm.get_matching_blocks() for i in range(a, a + size)}
    return [i in matched for i, ch in enumerate(label) if ch == " "]


def read_pairs(folder: Path, errors: Path) -> list[tuple[str, str, str]]:
    """(relative path, label, reading) of every line of ``folder``'s labels.tsv, readings from a --errors file."""
    labels = [line.split("\t", 1) for line in (folder / "labels.tsv").read_text(encoding="utf-8").splitlines() if "\t" in line]
    wrong: dict[str, str] = {}
    with open(errors, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            wrong[str(Path(row["path"]).resolve())] = row["prediction"] or ""
    return [(rel, text, wrong.get(str((folder / rel).resolve()), text)) for rel, text in labels]


def word_gaps(text: str, boxes: np.ndarray) -> list[float] | None:
    """The ink gap at each space of ``text`` (next word's left edge minus the previous words' right edge) over the
    line's median character height; boxes (N, 4), one per non-space character. None when they do not match."""
    words = [len(w) for w in text.split(" ")]
    if len(boxes) != sum(words) or not all(words):
        return None
    height = float(np.median(boxes[:, 3] - boxes[:, 1])) or 1.0
    ends = np.cumsum(words)
    return [float(boxes[e, 0] - boxes[:e, 2].max()) / height for e in ends[:-1]]


def gaps_of(pairs: list[tuple[str, str, str]], seed: int, overrides: list[str]) -> list[list[float] | None]:
    """Each line's word gaps, from rendering its sample again (index from the image's file name)."""
    from crnn_synth_data import SynthConfig, WordRenderer

    renderer = WordRenderer(SynthConfig().with_overrides(overrides))
    out = []
    for rel, text, _ in pairs:
        s = renderer.render(seed, int(Path(rel).stem))
        if s.text != text:
            raise SystemExit(f"{rel}: rendered {s.text!r}, labelled {text!r}: not the seed/--set it was written with")
        out.append(word_gaps(s.text, s.boxes))
    return out


def _threshold(value: str) -> float | None:
    return None if value.lower() == "none" else float(value)


def read_with_inferred_spaces(folder: Path, model: str, decoders: list[str], space_probs: list[float | None],
                              gap_pitches: list[float | None]) -> dict[str, list[tuple[str, str, str]]]:
    """(relative path, label, reading) per line of ``folder`` for each decoder as decoded (named by the decoder) and
    with inferred spaces at each (space probability, gap in pitches) but (None, None) (named ``DECODER P=.. G=..``)."""
    from crnn.decoding.ctc_decode import decode
    from crnn.detection.word_split import align, infer_spaces
    from crnn.kinds.loading import load_recognizer

    shipped = model in ("default", "real")
    rec = load_recognizer(None if shipped else model, threads=1, model=model if shipped else None)
    rows = (folder / "labels.tsv").read_text(encoding="utf-8").splitlines()
    labels = [line.split("\t", 1) for line in rows if "\t" in line]
    arrays = [rec.prepare(str(folder / rel)) for rel, _ in labels]
    space = rec.charset.encode(" ")[0]
    out: dict[str, list[tuple[str, str, str] | None]] = {}
    combos = [(p, g) for p in space_probs for g in gap_pitches if (p, g) != (None, None)]
    for idx in rec.batches(arrays, 64):  # type: ignore[attr-defined]
        lp, lengths = rec.batch_log_probs([arrays[i] for i in idx])  # type: ignore[attr-defined]
        for decoder in decoders:
            for j, (i, pred) in enumerate(zip(idx, decode(lp, lengths, rec.charset, decoder, 10))):
                rel, label = labels[i]
                out.setdefault(decoder, [None] * len(labels))[i] = (rel, label, pred.text)
                frames = lp[j, : int(lengths[j])]
                peaks = align(frames, rec.charset.encode(pred.text)) if pred.text else None
                for prob, gap in combos:
                    text = pred.text if peaks is None else infer_spaces(pred.text, peaks, frames, space, prob, gap)[0]
                    out.setdefault(f"{decoder} P={prob} G={gap}", [None] * len(labels))[i] = (rel, label, text)
    return out  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("readings", nargs="*", metavar="NAME=ERRORS.tsv", help="a crnn eval --errors file per decoder")
    p.add_argument("--read", metavar="MODEL", help="read the lines here with this model (default, real, a checkpoint)")
    p.add_argument("--decoder", dest="decoders", action="append", metavar="NAME", help="with --read (default: lm)")
    p.add_argument("--space-prob", nargs="+", type=_threshold, metavar="P", help="with --read: inferred spaces at P")
    p.add_argument("--gap-pitches", nargs="+", type=_threshold, metavar="G", help="with --read: inferred spaces at G")
    p.add_argument("--seed", type=int, help="the stream the folder was rendered from: adds the drop rate per word gap")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if not args.readings and not args.read:
        p.error("give NAME=ERRORS.tsv readings or --read MODEL")
    from crnn.detection.word_split import GAP_PITCHES, SPACE_PROB

    read = read_with_inferred_spaces(args.folder, args.read, args.decoders or ["lm"], args.space_prob or [SPACE_PROB],
                                     args.gap_pitches or [GAP_PITCHES]) if args.read else {}
    sources = [(item.partition("=")[0], item.partition("=")[2]) for item in args.readings] + [(k, "") for k in read]
    results: dict[str, object] = {}
    gaps = None
    for name, path in sources:
        pairs = read[name] if not path else read_pairs(args.folder, Path(path))
        if gaps is None and args.seed is not None:
            gaps = gaps_of(pairs, args.seed, args.overrides)
        stats: dict[str, object] = dict(space_stats([(t, r) for _, t, r in pairs]))
        if gaps is not None:
            by_gap = {}
            for lo, hi in zip(GAP_BINS, GAP_BINS[1:]):
                rows = [(k, _same_letters(t, r)) for (_, t, r), g in zip(pairs, gaps) if g is not None
                        for k, x in zip(kept_spaces(t, r), g) if lo <= x < hi]
                right = [k for k, same in rows if same]
                by_gap[f"{lo:g}-{hi:g}"] = {"spaces": len(rows), "kept": sum(k for k, _ in rows) / max(len(rows), 1),
                                            "spaces_letters_right": len(right),
                                            "kept_letters_right": sum(right) / max(len(right), 1)}
            stats["by_gap"] = by_gap
        results[name] = stats
        print(f"{name}: {stats['lines']} lines; spaces kept {100 * stats['spaces_kept']:.1f}%; readings with fewer "
              f"spaces {100 * stats['fewer_spaces']:.1f}%, more {100 * stats['more_spaces']:.1f}%; letters right (spaces "
              f"and case ignored) {100 * stats['letters_right']:.1f}%, of which with fewer spaces "
              f"{100 * stats['fewer_spaces_letters_right']:.1f}%; line accuracy case {100 * stats['line_acc_case']:.1f}% "
              f"(spaces ignored {100 * stats['line_acc_case_nospace']:.1f}%), case-insensitive "
              f"{100 * stats['line_acc_nocase']:.1f}% ({100 * stats['line_acc_nocase_nospace']:.1f}%); "
              f"label words found by a split at spaces {100 * stats['words_found']:.1f}%")
        for k, v in stats.get("by_gap", {}).items():  # type: ignore[union-attr]
            print(f"    word gap {k:>8} character heights: {v['spaces']:4d} spaces, kept {100 * v['kept']:5.1f}%; in lines "
                  f"with the letters right {v['spaces_letters_right']:4d}, kept {100 * v['kept_letters_right']:5.1f}%")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
