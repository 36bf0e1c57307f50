"""What `crnn ocr` and `crnn ocr --ray` write, and the options they check alike: rows as TSV, CSV or JSON lines,
the output stream, ``-o`` and ``--lexicon``."""

from __future__ import annotations

import csv
import json
import re
import sys
from typing import IO, TYPE_CHECKING

from crnn.errors import OutputPathError
from crnn.output_files import check_output_file
from crnn.reading.batch_ocr import Row

if TYPE_CHECKING:
    from crnn.charset import Charset
    from crnn.decoding.lexicon import Lexicon

# Lone surrogates: the bytes of a file name that is not valid UTF-8, as os.fsdecode gives them (PEP 383).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogates(text: str) -> str:
    # Inside JSON text a raw surrogate can only sit in a string: written as \udcXX it is valid JSON (and
    # UTF-8), and os.fsencode(json.loads(line)["path"]) gives back the name's original bytes.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _printable(text: str) -> str:
    """``text`` for a terminal: a file name's bytes that are not UTF-8 shown as \\xNN escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Writer:
    """Writes rows as TSV (default), CSV or JSON lines; with ``lexicon``, TSV/CSV get an ``in_lexicon`` column,
    with ``orientation`` an ``orientation`` column (how each crop's text appeared, see crnn.reading.orientation)."""

    def __init__(self, out: IO[str], fmt: str = "tsv", lexicon: bool = False, orientation: bool = False) -> None:
        self.out, self.fmt, self.lexicon, self.orientation = out, fmt, lexicon, orientation
        if fmt in ("tsv", "csv"):
            self._csv = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
            # The columns only when a lexicon / the orientation step is used: the default output stays as it was.
            self._csv.writerow(["path", "text", "confidence", "error"] + (["in_lexicon"] if lexicon else [])
                               + (["orientation"] if orientation else []))

    def write(self, row: Row) -> None:
        """Write one row."""
        p = row.prediction
        if self.fmt == "jsonl":
            rec: dict[str, object] = {"path": row.path}
            if p is not None:
                rec.update(text=p.text, confidence=round(p.confidence, 6),
                           char_confidences=[round(c, 6) for c in p.char_confidences])
                if p.in_lexicon is not None:
                    rec["in_lexicon"] = p.in_lexicon
                if p.orientation is not None:
                    rec["orientation"] = p.orientation
            else:
                rec["error"] = row.error
            self.out.write(_escape_surrogates(json.dumps(rec, ensure_ascii=False)) + "\n")
        elif p is not None:
            flag = [] if not self.lexicon else ["" if p.in_lexicon is None else str(p.in_lexicon).lower()]
            turned = [] if not self.orientation else [p.orientation or ""]
            self._csv_row([row.path, p.text, f"{p.confidence:.4f}", ""] + flag + turned)
        else:
            self._csv_row([row.path, "", "", row.error] + ([""] if self.lexicon else []) + ([""] if self.orientation else []))

    def _csv_row(self, fields: list[str]) -> None:
        try:
            self._csv.writerow(fields)
        except UnicodeEncodeError:
            # Not on a stream that takes surrogateescape (see open_output): backslash escapes, so that
            # no file name can stop the run (csv writes a row in one call, so nothing was written).
            self._csv.writerow([f.encode("utf-8", "backslashreplace").decode("utf-8") for f in fields])


def open_output(path: str | None) -> IO[str]:
    """The output stream: the file ``path`` or stdout, both writing a file name that is not valid UTF-8
    back as its original bytes (surrogateescape), so that ``os.fsencode(row["path"])`` round-trips."""
    if path is not None:
        return open(path, "w", encoding="utf-8", errors="surrogateescape", newline="")
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")
    return sys.stdout


def check_output(path: str) -> str | None:
    """Why ``-o path`` cannot be written (see crnn.output_files.check_output_file), or None."""
    try:
        check_output_file(path, option="-o")
    except OutputPathError as e:
        return str(e)
    return None


def load_lexicon(path: str, charset: Charset, case: str, prog: str = "crnn ocr") -> Lexicon:
    """``--lexicon path`` for ``charset``, saying on stderr which words it dropped (raises LexiconFileError when
    it cannot be read or keeps no word)."""
    from crnn.decoding.lexicon import Lexicon, dropped_report

    lexicon = Lexicon.from_file(path, charset, case)
    note = dropped_report([lexicon])
    if note:
        print(f"{prog}: warning: --lexicon {path}: {note}", file=sys.stderr)
    return lexicon
