"""What `crnn ocr --detect` writes: one JSON line per photo (its words, with polygons, in reading order; ``"words": []``
for a photo without text) or one TSV/CSV row per word; and the same records as `crnn ocr --detect --ray` shards."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from crnn.commands.ocr_output import _escape_surrogates
from crnn.detection.photo_reader import PhotoReading

# TSV/CSV: the polygon's four corners flattened as ICDAR 2015's x1,y1,...,x4,y4 (clockwise from the top-left of the
# text as it reads), in photo pixels.
CORNERS = ["x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"]
COLUMNS = ["path", "line", "text", "confidence", *CORNERS, "error"]
# With a lexicon (`--lexicon`), as on crops: an in_lexicon column before error (true/false); without one, none.
LEXICON_COLUMNS = [*COLUMNS[:-1], "in_lexicon", "error"]


@dataclass
class PhotoRow:
    """One photo's result: its path and either its reading or an error message."""

    path: str
    reading: PhotoReading | None = None
    error: str | None = None


def photo_record(row: PhotoRow) -> dict[str, Any]:
    """The JSON line of one photo: ``path``, ``width``, ``height``, ``words`` (PhotoWord.to_dict each: text,
    confidence, polygon, line) and ``lines`` (PhotoLine.to_dict each); or ``path`` and ``error``."""
    if row.reading is None:
        return {"path": row.path, "error": row.error}
    r = row.reading
    return {"path": row.path, "width": r.width, "height": r.height, "words": [w.to_dict() for w in r.words],
            "lines": [x.to_dict() for x in r.lines]}


def photo_line(record: dict[str, Any]) -> str:
    """A photo record as its JSON line (a file name's bytes that are not UTF-8 as \\udcXX escapes), without newline."""
    return _escape_surrogates(json.dumps(record, ensure_ascii=False))


class PhotoWriter:
    """Writes photo rows as JSON lines (one per photo) or TSV/CSV (one row per word; none for a photo without text;
    one row with only ``path`` and ``error`` for a photo that could not be read); ``lexicon``: TSV/CSV get an
    ``in_lexicon`` column."""

    def __init__(self, out: IO[str], fmt: str = "tsv", lexicon: bool = False) -> None:
        self.out, self.fmt, self.lexicon = out, fmt, lexicon
        self.columns = LEXICON_COLUMNS if lexicon else COLUMNS
        if fmt in ("tsv", "csv"):
            self._csv = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
            self._csv.writerow(self.columns)

    def write(self, row: PhotoRow) -> None:
        """Write one photo's rows."""
        if self.fmt == "jsonl":
            self.out.write(photo_line(photo_record(row)) + "\n")
        elif row.reading is None:
            self._row([row.path] + [""] * (len(self.columns) - 2) + [row.error or ""])
        else:
            for w in row.reading.words:
                d = w.to_dict()
                corners = [f"{v:g}" for point in d["polygon"] for v in point]
                flag = [] if not self.lexicon else ["" if w.in_lexicon is None else str(w.in_lexicon).lower()]
                self._row([row.path, str(w.line), w.text, f"{w.confidence:.4f}", *corners, *flag, ""])

    def _row(self, fields: list[str]) -> None:
        try:
            self._csv.writerow(fields)
        except UnicodeEncodeError:  # as crnn.commands.ocr_output.Writer: no file name can stop the run
            self._csv.writerow([f.encode("utf-8", "backslashreplace").decode("utf-8") for f in fields])


def photo_shard_bytes(records: Sequence[dict[str, Any]], fmt: str) -> bytes:
    """A `crnn ocr --detect --ray` shard of photo records (photo_record's): `crnn ocr --detect --format jsonl`'s lines,
    or the same records as Parquet (``words`` and ``lines`` as lists of structs)."""
    text = "".join(photo_line(rec) + "\n" for rec in records)
    if fmt == "jsonl":
        return text.encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    polygon = pa.list_(pa.list_(pa.float64()))
    fields = [("text", pa.string()), ("confidence", pa.float64()), ("polygon", polygon), ("line", pa.int64())]
    if any("in_lexicon" in w for rec in records for w in rec.get("words") or ()):  # a run with a lexicon only
        fields.append(("in_lexicon", pa.bool_()))
    word = pa.struct(fields)
    line = pa.struct([("text", pa.string()), ("confidence", pa.float64()), ("polygon", polygon),
                      ("detector_score", pa.float64()), ("orientation", pa.string())])
    schema = pa.schema([("path", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
                        ("words", pa.list_(word)), ("lines", pa.list_(line)), ("error", pa.string())])
    recs = [dict(rec) for rec in records]
    for rec in recs:  # Parquet strings must be UTF-8: a name's bytes that are not are written as \xNN escapes
        for key in ("path", "error"):
            if rec.get(key) is not None:
                rec[key] = rec[key].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(recs, schema=schema), sink)
    return sink.getvalue().to_pybytes()
