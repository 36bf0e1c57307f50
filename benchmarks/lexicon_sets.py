"""Issue 22's synthetic lexicon sets: what the lexicon rules were chosen on (never a benchmark).

    python benchmarks/lexicon_sets.py --out /tmp/lexsets [--backgrounds .backgrounds]

Writes, under ``--out``, labeled folders rendered by `crnn synth` (renderer v2 with ``--backgrounds``, else v1):

* ``in_list``: 1,000 words of the 50k-word English list (wordfreq `top_n_list('en', 50000)`, the renderer's own
  lexicon), drawn as the renderer draws words (seed 777001);
* ``out_of_list``: 1,000 words ranked 50,001-100,000 by wordfreq, none of them in that list: rare words and names,
  what a large list does not hold (seed 777002);
* ``mix_v1``, ``mix_v2``: 2,000 texts of the default text mix (words, numbers, codes, punctuation), presets v1 and
  v2 (seed 20261126, the test sets of docs/synth_data.md);

and for each folder ``<name>_lex50.tsv``, a per-image lexicon of 50 words in `crnn eval --lexicons` format: the
image's own text and 49 texts of other images of the same folder (so the true word is drawn like its distractors,
which is what a uniform prior over a small list assumes), each distractor in upper or lower case at random; texts
with a comma or other than letters and digits are not distractors, images whose own text has a comma get no line.
Also writes ``en50k.txt``, the list itself. Then, e.g.:

    crnn eval --precision fp32 --data OUT/in_list --data OUT/out_of_list --lexicon OUT/en50k.txt
    crnn eval --precision fp32 --data OUT/mix_v2 --lexicons OUT/mix_v2_lex50.tsv
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
from pathlib import Path

WORDS_ONLY = ["--set", "kind_word=1", "--set", "kind_number=0", "--set", "kind_alnum=0", "--set", "kind_punct_word=0",
              "--set", "kind_phrase=0", "--set", "kind_random_chars=0"]


def render(out: Path, count: int, seed: int, extra: list[str]) -> None:
    """`crnn synth` into the labeled folder ``out`` (kept when it is already there)."""
    if (out / "labels.tsv").is_file():
        print(f"[lexicon_sets] {out}: already rendered, kept", file=sys.stderr)
        return
    subprocess.run([sys.executable, "-m", "crnn.cli", "synth", "--out", str(out), "--format", "folder", "--count",
                    str(count), "--seed", str(seed), "--workers", "1", *extra], check=True)


def write_lexicons(folder: Path, path: Path, size: int = 50, seed: int = 5) -> int:
    """A per-image lexicon file for ``folder``: each image's text + ``size`` - 1 other texts of the folder."""
    rows = [line.rstrip("\n").split("\t") for line in (folder / "labels.tsv").open(encoding="utf-8")]
    rng = random.Random(seed)
    pool = [text for _, text in rows if re.fullmatch(r"[A-Za-z0-9]+", text)]
    written = 0
    with path.open("w", encoding="utf-8") as f:
        for rel, text in rows:
            if "," in text:
                continue
            seen, words = {text.lower()}, [text]
            while len(words) < size:
                word = rng.choice(pool)
                if word.lower() not in seen:
                    seen.add(word.lower())
                    words.append(word.upper() if rng.random() < 0.5 else word.lower())
            rng.shuffle(words)
            f.write(f"{rel}\t{','.join(words)}\n")
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--backgrounds", help="photographs for renderer v2 (crnn synth --collect-backgrounds)")
    args = p.parse_args(argv)
    from wordfreq import top_n_list

    args.out.mkdir(parents=True, exist_ok=True)
    words = top_n_list("en", 100_000)
    (args.out / "en50k.txt").write_text("\n".join(words[:50_000]) + "\n", encoding="utf-8")
    (args.out / "out_of_list_words.txt").write_text("\n".join(words[50_000:]) + "\n", encoding="utf-8")
    v2 = ["--set", "preset=v2", *(["--set", f"backgrounds_dir={args.backgrounds}"] if args.backgrounds else [])]
    render(args.out / "in_list", 1000, 777001, [*v2, *WORDS_ONLY])
    render(args.out / "out_of_list", 1000, 777002,
           [*v2, *WORDS_ONLY, "--set", f"words_file={args.out / 'out_of_list_words.txt'}"])
    render(args.out / "mix_v1", 2000, 20261126, ["--set", "preset=v1"])
    render(args.out / "mix_v2", 2000, 20261126, v2)
    for name in ("in_list", "out_of_list", "mix_v1", "mix_v2"):
        n = write_lexicons(args.out / name, args.out / f"{name}_lex50.tsv")
        print(f"[lexicon_sets] {name}: {n} per-image lexicons", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
