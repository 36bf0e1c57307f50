"""`crnn ocr --detect` (crnn.commands.photo_ocr, photo_output): rows per word in reading order (TSV/CSV) or one JSON
line per photo, photos without text, hostile photos (one error line each, the run goes on, exit 1), --draw, usage
errors, the missing extra, and --ray (the real detector, where the detect and ray extras are installed)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crnn.commands.ocr import main
from crnn.commands.photo_output import COLUMNS, PhotoRow, PhotoWriter
from crnn.detection.photo_reader import PhotoReading, PhotoWord
from tests.photo_fakes import FAKE, line_photo
from tests.word_images import render_word

HAVE_DETECT = importlib.util.find_spec("rapidocr") is not None and importlib.util.find_spec("onnxruntime") is not None


def bomb_png(side: int = 20000) -> bytes:
    """A valid PNG header of a side x side image whose pixels are never decoded (over the 40 M pixel limit)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
            + chunk(b"IEND", b""))


GOOD = ("a_line.png", "b_blank.png", "c_1px.png")
BAD = {"d_huge.png": "over the limit", "e_truncated.jpg": "truncated", "f_text.jpg": "not an image"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(line_photo(["OPEN", "DAILY"])).save(d / "a_line.png")
    Image.new("RGB", (300, 200), "white").save(d / "b_blank.png")
    Image.new("RGB", (1, 1), "black").save(d / "c_1px.png")
    (d / "d_huge.png").write_bytes(bomb_png())
    buf = io.BytesIO()
    Image.fromarray(line_photo(["SALE"])).save(buf, "JPEG")
    (d / "e_truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (d / "f_text.jpg").write_text("no photo at all")
    return d


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--detector", FAKE, "--decoder", "greedy"])
    out, err = capsys.readouterr()
    return code, out, err


def _errors_said(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("crnn ocr: error: ")]


@pytest.mark.parametrize("fmt", ["tsv", "csv"])
def test_a_row_per_word_in_reading_order_and_an_error_row_per_bad_photo(photos: Path, capsys, fmt: str) -> None:
    code, out, err = run(capsys, str(photos), "--detect", "--format", fmt)
    rows = list(csv.DictReader(io.StringIO(out), delimiter="\t" if fmt == "tsv" else ","))
    assert code == 1  # as `crnn ocr`: some inputs could not be read, the others were
    assert list(rows[0]) == COLUMNS
    words = [r for r in rows if not r["error"]]
    assert [Path(r["path"]).name for r in words] == ["a_line.png"] * 2  # the blank and 1 px photos: no rows
    assert [r["text"].upper() for r in words] == ["OPEN", "DAILY"]
    assert [r["line"] for r in words] == ["0", "0"]
    x1 = [float(r["x1"]) for r in words]
    assert x1[0] < x1[1]  # left to right
    for r in words:
        xs, ys = [float(r[f"x{i}"]) for i in range(1, 5)], [float(r[f"y{i}"]) for i in range(1, 5)]
        assert 0 <= min(xs) < max(xs) <= 400 and 0 <= min(ys) < max(ys) <= 120
    bad = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert set(bad) == set(BAD) and all(BAD[k] in v for k, v in bad.items())
    assert len(_errors_said(err)) == len(BAD)  # one line per bad photo


def test_jsonl_has_one_record_per_photo_with_empty_words_for_no_text(photos: Path, capsys) -> None:
    code, out, err = run(capsys, str(photos), "--detect", "--format", "jsonl")
    recs = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert code == 1 and set(recs) == set(GOOD) | set(BAD)
    line = recs["a_line.png"]
    assert (line["width"], line["height"]) == line_photo(["OPEN", "DAILY"]).shape[1::-1]
    assert [w["text"].upper() for w in line["words"]] == ["OPEN", "DAILY"]
    assert set(line["words"][0]) == {"text", "confidence", "polygon", "line"}
    assert np.asarray(line["words"][0]["polygon"]).shape == (4, 2)
    assert [x["text"].upper() for x in line["lines"]] == ["OPEN DAILY"]
    for name in ("b_blank.png", "c_1px.png"):
        assert recs[name]["words"] == [] and "error" not in recs[name]
    for name, why in BAD.items():
        assert set(recs[name]) == {"path", "error"} and why in recs[name]["error"]


def test_draw_writes_each_read_photo_with_its_boxes(photos: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "again").mkdir()
    Image.fromarray(line_photo(["OPEN", "DAILY"])).save(tmp_path / "again" / "a_line.png")  # a second a_line
    draw = tmp_path / "drawn"
    code, _, _ = run(capsys, str(photos), str(tmp_path / "again"), "--detect", "--draw", str(draw), "-o",
                     str(tmp_path / "out.tsv"))
    assert code == 1
    assert sorted(p.name for p in draw.iterdir()) == ["a_line-2.jpg", "a_line.jpg", "b_blank.jpg", "c_1px.jpg"]
    drawn = np.asarray(Image.open(draw / "a_line.jpg").convert("RGB")).astype(int)
    green = (drawn[:, :, 1] > 150) & (drawn[:, :, 0] < 100) & (drawn[:, :, 2] < 100)
    assert green.sum() > 100  # boxes and labels drawn
    assert drawn.shape[:2] == line_photo(["OPEN", "DAILY"]).shape[:2]


@pytest.mark.parametrize("argv, message", [
    (["--draw", "d"], "options of --detect"),
    (["--min-confidence", "0.3"], "options of --detect"),
    (["--detect", "--min-confidence", "1.5"], "must be in [0, 1]"),
    (["--detect", "--decoder", "greedy", "--lm-weight", "0.2"], "--lm-weight needs --decoder lm"),
    (["--detect", "--detector", "no-such-detector"], "unknown text detector"),
])
def test_usage_errors_exit_2_with_one_line(photos: Path, capsys, argv: list[str], message: str) -> None:
    code = main([str(photos), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
def test_lexicon_constrains_each_word_and_flags_it(photos: Path, tmp_path: Path, capsys, fmt: str) -> None:
    words = tmp_path / "words.txt"
    words.write_text("daily\nopen\ncafé\n" + "".join(f"filler{i}\n" for i in range(600)))
    code, out, err = run(capsys, str(photos / "a_line.png"), "--detect", "--format", fmt, "--lexicon", str(words))
    assert code == 0 and "1 word dropped" in err and "café" in err  # said once, as on crops
    if fmt == "tsv":
        rows = list(csv.DictReader(io.StringIO(out), delimiter="\t"))
        assert list(rows[0]) == [*COLUMNS[:-1], "in_lexicon", "error"]
        assert [(r["text"].upper(), r["in_lexicon"]) for r in rows] == [("OPEN", "true"), ("DAILY", "true")]
    else:
        (rec,) = [json.loads(x) for x in out.splitlines()]
        assert [(w["text"].upper(), w["in_lexicon"]) for w in rec["words"]] == [("OPEN", True), ("DAILY", True)]


def test_lm_weight_reaches_the_photo_reader(photos: Path, capsys, monkeypatch) -> None:
    import crnn.detection.photo_reader as photo_reader

    weights: list[float | None] = []
    init = photo_reader.PhotoReader.__init__

    def spy(self, *args, **kwargs):
        weights.append(kwargs.get("lm_weight"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(photo_reader.PhotoReader, "__init__", spy)
    code = main([str(photos / "a_line.png"), "--detect", "--detector", FAKE, "--decoder", "lm", "--lm-weight", "0.2"])
    out = capsys.readouterr().out
    assert code == 0 and weights == [0.2] and "OPEN" in out.upper()


def test_missing_detect_extra_is_one_line_naming_it(photos: Path, capsys, monkeypatch) -> None:
    for name in ("rapidocr", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    code = main([str(photos / "a_line.png"), "--detect"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'crnn-ocr[detect]'" in err


def test_crop_reading_never_loads_the_photo_pipeline(tmp_path: Path) -> None:
    Image.fromarray(render_word("word")).save(tmp_path / "w.png")
    code = (f"import sys; from crnn.commands.ocr import main; main([{str(tmp_path / 'w.png')!r}]); "
            "print(sorted(m for m in sys.modules if m.startswith(('crnn.detection', 'crnn.commands.photo'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
def test_writer_rows(fmt: str) -> None:
    poly = np.array([[1, 2], [11, 2], [11, 8], [1, 8]], np.float32)
    reading = PhotoReading([PhotoWord("A", 0.9, poly, 0), PhotoWord("B", 0.8, poly + 20, 1)], [], 40, 30)
    buf = io.StringIO()
    writer = PhotoWriter(buf, fmt)
    for row in (PhotoRow("p.jpg", reading), PhotoRow("q.jpg", PhotoReading([], [], 5, 5)), PhotoRow("r.jpg", None, "bad")):
        writer.write(row)
    lines = buf.getvalue().splitlines()
    if fmt == "tsv":
        assert lines[1:] == ["p.jpg\t0\tA\t0.9000\t1\t2\t11\t2\t11\t8\t1\t8\t",
                             "p.jpg\t1\tB\t0.8000\t21\t22\t31\t22\t31\t28\t21\t28\t",
                             "r.jpg" + "\t" * (len(COLUMNS) - 1) + "bad"]
    else:
        recs = [json.loads(x) for x in lines]
        assert [r["path"] for r in recs] == ["p.jpg", "q.jpg", "r.jpg"]
        assert recs[0]["words"][1] == {"text": "B", "confidence": 0.8, "polygon": (poly + 20).tolist(), "line": 1}
        assert recs[1]["words"] == [] and recs[2] == {"path": "r.jpg", "error": "bad"}


def test_a_resume_refuses_photos_over_crops_and_the_reverse() -> None:
    from crnn.commands.ray_ocr import HashedFile, RunRecord, run_changes

    weights = HashedFile(path="/w", sha256="0" * 64)
    crops = RunRecord(options={"--decoder": "greedy"}, weights=weights)
    photos = RunRecord(options={"--decoder": "greedy", "--detect": "ppocr-v6-small"}, weights=weights)
    assert run_changes(crops, photos) == ["word crops (no --detect) then, --detect ppocr-v6-small now"]
    assert run_changes(photos, crops) == ["--detect ppocr-v6-small then, word crops (no --detect) now"]
    assert run_changes(photos, photos) == []


def test_ray_driver_draws_each_photo_from_its_record(photos: Path, tmp_path: Path, capsys) -> None:
    from crnn.commands.photo_ocr import DrawFolder
    from crnn.commands.ray_ocr import Drawer

    code, out, _ = run(capsys, str(photos / "a_line.png"), "--detect", "--format", "jsonl")
    (record,) = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and record["words"]
    gone = {**record, "path": str(tmp_path / "moved.png")}  # a path the driver cannot read (e.g. on another machine)
    failed = Drawer(DrawFolder(tmp_path / "drawn"), 40_000_000)([record, {"path": "x.jpg", "error": "bad"}, gone])
    err = capsys.readouterr().err
    assert failed == 1 and "moved.png: --draw: " in err and len(_errors_said(err)) == 1
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["a_line.jpg"]
    # The same drawing as without --ray (drawn from the reading itself).
    run(capsys, str(photos / "a_line.png"), "--detect", "--draw", str(tmp_path / "plain"), "-o", str(tmp_path / "o.tsv"))
    ray_drawn = np.asarray(Image.open(tmp_path / "drawn" / "a_line.jpg")).astype(int)
    plain = np.asarray(Image.open(tmp_path / "plain" / "a_line.jpg")).astype(int)
    assert ray_drawn.shape == plain.shape and np.abs(ray_drawn - plain).mean() < 1.0  # polygons rounded to 0.1 px


@pytest.mark.parametrize(("then", "now", "expected"), [
    ({}, {"space_prob": 0.01}, ["the photo reader's inferred spaces (space_prob none then, 0.01 now)"]),
    ({"space_prob": 0.01}, {"space_prob": 0.02}, ["the photo reader's inferred spaces (space_prob 0.01 then, 0.02 now)"]),
    ({"space_prob": 0.01}, {"space_prob": 0.01}, []),
])
def test_a_resume_refuses_another_space_rule(then: dict, now: dict, expected: list[str]) -> None:
    from crnn.commands.ray_ocr import HashedFile, RunRecord, run_changes

    weights = HashedFile(path="/w", sha256="0" * 64)
    base = {"--decoder": "greedy", "--detect": "ppocr-v6-small"}
    assert run_changes(RunRecord(options={**base, **then}, weights=weights),
                       RunRecord(options={**base, **now}, weights=weights)) == expected


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_DETECT, reason="needs the detect extra (rapidocr, onnxruntime)")
def test_ray_reads_photos_as_crnn_ocr_detect_does(tmp_path: Path, capsys) -> None:
    ray = pytest.importorskip("ray")
    from crnn.commands.ray_ocr import read_results

    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(line_photo(["OPEN", "DAILY"], gap=20, scale=2)).save(d / "a.png")
    Image.new("RGB", (200, 100), "white").save(d / "b.png")
    (d / "c.jpg").write_text("no photo")
    assert main([str(d), "--detect", "--format", "jsonl", "--decoder", "greedy"]) == 1
    plain = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for fmt in ("jsonl", "parquet"):  # one Ray start for both (seconds each)
            code = main([str(d), "--detect", "--ray", "--output", str(tmp_path / fmt), "--ray-actors", "1",
                         "--ray-format", fmt, "--decoder", "greedy", "--draw", str(tmp_path / f"drawn-{fmt}")])
            assert code == 1
            assert sorted(p.name for p in (tmp_path / f"drawn-{fmt}").iterdir()) == ["a.jpg", "b.jpg"]  # c: no photo
            shards = read_results(tmp_path / fmt, fmt)
            assert [r["path"] for r in shards] == [r["path"] for r in plain]
            for a, b in zip(shards, plain):
                assert [w["text"] for w in a["words"] or []] == [w["text"] for w in b.get("words", [])]
                for wa, wb in zip(a["words"] or [], b.get("words", [])):
                    assert np.allclose(wa["polygon"], wb["polygon"], atol=1.0)
                assert (a["error"] is None) == ("error" not in b)
            assert [w["text"].upper() for w in shards[0]["words"]] == ["OPEN", "DAILY"]
        # A resume of the same run finds every shard done; reading crops into the photos' folder is refused.
        assert main([str(d), "--detect", "--ray", "--output", str(tmp_path / "jsonl"), "--ray-format", "jsonl",
                     "--decoder", "greedy"]) == 1
        assert main([str(d), "--ray", "--output", str(tmp_path / "jsonl"), "--ray-format", "jsonl",
                     "--decoder", "greedy"]) == 2
        assert "word crops (no --detect) now" in capsys.readouterr().err
    finally:
        ray.shutdown()


@pytest.mark.parametrize("name, stem", [("default", "crnn"), ("real", "crnn-real")])
def test_model_reads_photos_with_the_named_shipped_model(photos: Path, capsys, monkeypatch, name: str,
                                                         stem: str) -> None:
    import crnn.kinds.loading as loading

    loaded: list[str] = []
    load = loading.load_recognizer

    def spy(*args, **kwargs):
        loaded.append(Path(kwargs["weights"]).name)
        return load(*args, **kwargs)

    monkeypatch.setattr(loading, "load_recognizer", spy)
    code, out, _ = run(capsys, str(photos / "a_line.png"), "--detect", "--model", name, "--backend", "torch")
    assert code == 0 and loaded == [f"{stem}.safetensors"]
    assert [r[2] for r in csv.reader(io.StringIO(out), delimiter="\t")][1:]  # words were read


@pytest.mark.parametrize("lexicon", [False, True])
def test_parquet_shards_carry_in_lexicon_only_with_a_lexicon(lexicon: bool) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from crnn.commands.photo_output import photo_record, photo_shard_bytes

    poly = np.array([[1, 2], [11, 2], [11, 8], [1, 8]], np.float32)
    word = PhotoWord("A", 0.9, poly, 0, in_lexicon=True if lexicon else None)
    rec = photo_record(PhotoRow("p.jpg", PhotoReading([word], [], 40, 30)))
    table = pq.read_table(io.BytesIO(photo_shard_bytes([rec], "parquet")))
    (got,) = table.column("words").to_pylist()[0]
    assert ("in_lexicon" in got) == lexicon and got.get("in_lexicon", True) is True
