import csv
import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from crnn import Charset, Recognizer, build_model, save_checkpoint
from crnn.metrics import normalize_protocol
from crnn.io.image_loader import ChunkLoader, make_pool
from crnn.commands.ocr import main
from crnn.io.inputs import expand_inputs
from crnn.reading.batch_ocr import run_ocr
from tests.test_image_loader import crashing_decoder
from tests.word_images import render_word

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SHIPPED = REPO / "weights" / "crnn.safetensors"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    return save_checkpoint(path, build_model("small", hidden_size=16), Charset())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for i, w in enumerate(["alpha", "be", "gamma"]):
        Image.fromarray(render_word(w)).save(d / f"{i}.png")
    Image.fromarray(render_word("deep")).save(d / "sub" / "3.jpg")
    (d / "notes.txt").write_text("not an image, and not listed since it is no image file")
    return d


def _run(argv: list[str], capsys: pytest.CaptureFixture, stdin: str | None = None,
         monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _tsv(out: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out), delimiter="\t"))


def test_folder_recursive_images_only_in_order(folder: Path, tiny_weights: Path, capsys) -> None:
    code, out, _ = _run([str(folder), "--weights", str(tiny_weights)], capsys)
    rows = _tsv(out)
    assert code == 0
    assert [Path(r["path"]).name for r in rows] == ["0.png", "1.png", "2.png", "3.jpg"]
    assert list(rows[0]) == ["path", "text", "confidence", "error"]
    assert all(0.0 <= float(r["confidence"]) <= 1.0 for r in rows)


def test_files_globs_and_stdin_keep_input_order(folder: Path, tiny_weights: Path, capsys, monkeypatch) -> None:
    files = [str(folder / "2.png"), str(folder / "0.png")]
    code, out, _ = _run([*files, str(folder / "*.png"), "-", "--weights", str(tiny_weights)], capsys,
                        stdin=f"{folder / 'sub' / '3.jpg'}\n\n{folder / '1.png'}\n", monkeypatch=monkeypatch)
    names = [Path(r["path"]).name for r in _tsv(out)]
    assert code == 0
    assert names == ["2.png", "0.png", "0.png", "1.png", "2.png", "3.jpg", "1.png"]


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_output_formats_and_output_file(fmt: str, folder: Path, tiny_weights: Path, tmp_path: Path, capsys) -> None:
    out_file = tmp_path / f"out.{fmt}"
    code, out, _ = _run([str(folder), "--weights", str(tiny_weights), "--format", fmt, "-o", str(out_file)], capsys)
    assert code == 0 and out == ""
    text = out_file.read_text()
    if fmt == "jsonl":
        recs = [json.loads(line) for line in text.splitlines()]
        assert len(recs) == 4 and {"path", "text", "confidence", "char_confidences"} <= set(recs[0])
        assert len(recs[0]["char_confidences"]) == len(recs[0]["text"])
    else:
        rows = list(csv.reader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ","))
        assert rows[0] == ["path", "text", "confidence", "error"] and len(rows) == 5


def test_corrupt_file_in_the_middle_is_reported_and_the_rest_read(folder: Path, tiny_weights: Path, capsys) -> None:
    (folder / "1.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    (folder / "1b.png").write_bytes(b"")
    code, out, err = _run([str(folder), "--weights", str(tiny_weights)], capsys)
    rows = _tsv(out)
    assert code == 1
    assert [Path(r["path"]).name for r in rows] == ["0.png", "1.png", "1b.png", "2.png", "3.jpg"]
    assert rows[1]["error"] and rows[2]["error"] and not rows[0]["error"] and rows[3]["text"] is not None
    assert "1.png" in err and "1b.png" in err and err.count("error") == 2


def test_missing_input_and_exit_codes(folder: Path, tiny_weights: Path, tmp_path: Path, capsys) -> None:
    code, out, err = _run([str(folder / "nope.png"), "--weights", str(tiny_weights)], capsys)
    assert code == 1 and "nope.png" in err
    code, _, err = _run([str(folder), "--weights", str(tmp_path / "missing.safetensors")], capsys)
    assert code == 2 and "weights file not found" in err and len(err.strip().splitlines()) == 1
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_text("hello")
    code, _, err = _run([str(folder), "--weights", str(bogus)], capsys)
    assert code == 2 and "not a crnn-ocr checkpoint" in err
    with pytest.raises(SystemExit) as e:
        main(["--format", "xml", str(folder)])
    assert e.value.code == 2
    for bad in (["--threads", "-1"], ["--batch-size", "0"]):
        code, _, err = _run([str(folder), "--weights", str(tiny_weights), *bad], capsys)
        assert code == 2 and "must be >= 1" in err


def test_beam_and_lexicon_options(folder: Path, tiny_weights: Path, tmp_path: Path, capsys) -> None:
    lex = tmp_path / "lex.txt"
    lex.write_text("alpha\nbe\ngamma\ndeep\n")
    code, out, _ = _run([str(folder), "--weights", str(tiny_weights), "--decoder", "beam", "--beam-width", "4",
                         "--lexicon", str(lex)], capsys)
    assert code == 0
    rows = _tsv(out)
    assert {r["text"] for r in rows} <= {"alpha", "be", "gamma", "deep"}
    assert all(r["in_lexicon"] == "true" for r in rows)  # a small lexicon: always one of its words


def test_lexicon_words_it_drops_are_reported_once_on_stderr(folder: Path, tiny_weights: Path, tmp_path: Path,
                                                            capsys) -> None:
    lex = tmp_path / "lex.txt"
    lex.write_text("alpha\nbe\tx\ngamma\ncafé\n\ndeep\n", encoding="utf-8")
    code, out, err = _run([str(folder), "--weights", str(tiny_weights), "--lexicon", str(lex)], capsys)
    assert code == 0 and len(_tsv(out)) == 4
    assert err.count("\n") == 1 and err.startswith(f"crnn ocr: warning: --lexicon {lex}: 2 words dropped, 3 kept: ")
    assert "'be\\tx'" in err and "'café'" in err


@pytest.mark.parametrize("content,why", [
    (b"the\t100\nof\t90\n", "has no usable words: 2 with a tab"),
    (b"alpha\n\xff\xfebe\n", "is not UTF-8 text (byte 0xff on line 2)"),
])
def test_lexicon_that_keeps_no_word_or_is_not_utf8_is_one_line_naming_it(
        folder: Path, tiny_weights: Path, tmp_path: Path, capsys, content: bytes, why: str) -> None:
    lex = tmp_path / "lex.txt"
    lex.write_bytes(content)
    code, out, err = _run([str(folder), "--weights", str(tiny_weights), "--lexicon", str(lex)], capsys)
    assert code == 2 and out == "" and err.startswith(f"crnn ocr: lexicon {lex} {why}") and err.count("\n") == 1


def test_language_model_decoder_options(folder: Path, tiny_weights: Path, capsys) -> None:
    code, out, _ = _run([str(folder), "--weights", str(tiny_weights), "--decoder", "lm", "--lm-weight", "0.3",
                         "--beam-width", "4"], capsys)
    assert code == 0 and len(_tsv(out)) == 4  # every image of the folder, sub-folder included
    for bad in (["--decoder", "greedy", "--lm-weight", "0.3"], ["--decoder", "lm", "--lm-weight", "-1"]):
        code, _, err = _run([str(folder), "--weights", str(tiny_weights), *bad], capsys)
        assert code == 2 and "--lm-weight needs --decoder lm" in err


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_in_lexicon_column_only_with_a_lexicon(folder: Path, tiny_weights: Path, tmp_path: Path, capsys,
                                               fmt: str) -> None:
    lex = tmp_path / "lex.txt"
    lex.write_text("ALPHA\nBe\n")
    _, plain, _ = _run([str(folder), "--weights", str(tiny_weights), "--format", fmt], capsys)
    _, with_lex, _ = _run([str(folder), "--weights", str(tiny_weights), "--format", fmt, "--lexicon", str(lex),
                           "--lexicon-case", "keep"], capsys)
    if fmt == "jsonl":
        assert all("in_lexicon" not in json.loads(line) for line in plain.splitlines())
        recs = [json.loads(line) for line in with_lex.splitlines()]
        assert all(r.get("in_lexicon") is True and r["text"] in {"ALPHA", "Be"} for r in recs if "text" in r)
    else:
        assert "in_lexicon" not in plain.splitlines()[0]
        header = with_lex.splitlines()[0]
        assert header == ("path\ttext\tconfidence\terror\tin_lexicon" if fmt == "tsv" else
                          "path,text,confidence,error,in_lexicon")


def test_memory_stays_flat_over_many_paths(tmp_path: Path, tiny_weights: Path) -> None:
    img = tmp_path / "w.png"
    Image.fromarray(render_word("x")).save(img)
    rec = Recognizer(tiny_weights, threads=1)

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def items(n: int):
        for _ in range(n):
            yield str(img), None

    def rows(n: int):
        with make_pool(2, processes=False) as pool:
            yield from run_ocr(rec, ChunkLoader(items(n), rec.preprocess, pool, chunk_size=2048), batch_size=64)

    for _ in rows(2_000):
        pass
    before = rss_mb()
    count = sum(1 for _ in rows(20_000))
    assert count == 20_000
    assert rss_mb() - before < 50  # peak RSS grows by less than 50 MB for 10x more paths


def test_expand_inputs_is_lazy(tmp_path: Path) -> None:
    it = expand_inputs([str(tmp_path / "*.png")])
    assert next(it, None)[1] is not None  # no match: reported, not raised


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped weights")
def test_shipped_weights_read_the_examples() -> None:
    labels = dict(line.split("\t") for line in (EXAMPLES / "labels.tsv").read_text().splitlines())
    names = sorted(labels)
    preds = Recognizer().recognize([str(EXAMPLES / n) for n in names])
    exact = [p.text == labels[n] for n, p in zip(names, preds)]
    # 9 of 12 exact in fp32 (10 in bf16): the shipped model (renderer v2, issue 14) reads the one-letter `w` as `u`,
    # `P` as `p` and, in fp32, `serviced` as `seRviced` (confidence 0.19); all three below the 0.5 checked next.
    assert sum(exact) >= 9, [(n, p.text) for n, p in zip(names, preds)]
    for n, p in zip(names, preds):
        if p.confidence >= 0.5:  # confident predictions are right (up to case for one-letter words)
            assert normalize_protocol(p.text) == normalize_protocol(labels[n])


def test_decoding_processes_in_a_fresh_command(folder: Path, tiny_weights: Path) -> None:
    # In a new process torch is not imported yet, so the images are decoded in forked processes
    # (in-process calls above use threads): same rows, a corrupt file still reported, exit status 1.
    (folder / "1.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    res = subprocess.run([sys.executable, "-m", "crnn.cli", "ocr", str(folder), "--weights", str(tiny_weights),
                          "--batch-size", "1"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    rows = _tsv(res.stdout)
    assert res.returncode == 1
    assert [Path(r["path"]).name for r in rows] == ["0.png", "1.png", "2.png", "3.jpg"]
    assert rows[1]["error"] and not rows[0]["error"] and not rows[3]["error"]
    assert res.stderr.count("crnn ocr: error:") == 1 and "1.png" in res.stderr


def test_a_crashed_decoder_ends_the_run_with_one_line_and_status_1(
    folder: Path, tiny_weights: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crnn.io import image_loader

    monkeypatch.setattr(image_loader, "load_paths", crashing_decoder)
    monkeypatch.setattr(image_loader, "fork_is_safe", lambda: True)  # in-process callers get threads otherwise
    code, out, err = _run([str(folder), "--weights", str(tiny_weights)], capsys)
    assert code == 1 and out.strip() == "path\ttext\tconfidence\terror"
    assert err.count("\n") == 1 and "decoding process died" in err


def test_ocr_command_imports_torch_only_after_starting_its_decoders() -> None:
    code = ("import sys, crnn, crnn.commands.ocr, crnn.io.image_loader, crnn.checkpoints.header, crnn.checkpoints.shipped, "
            "crnn.machine, crnn.reading.backend; crnn.commands.ocr.build_parser(); "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.stdout.strip() == "False", res.stderr


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped weights")
def test_console_command_on_examples() -> None:
    exe = Path(sys.executable).parent / "crnn"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "crnn.cli"]
    res = subprocess.run([*cmd, "ocr", str(EXAMPLES)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    rows = _tsv(res.stdout)
    assert len(rows) == 12 and rows[3]["text"] == "INTERNATIONALIZATION"
    assert res.stderr == ""  # nothing but results on stdout, and no progress bar when not a terminal


NON_UTF8 = os.fsdecode(b"caf\xe9-\xff.png")  # Latin-1 bytes: not UTF-8, decoded with surrogateescape


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
@pytest.mark.parametrize("to_file", [True, False], ids=["file", "stdout"])
def test_non_utf8_file_names_round_trip_and_do_not_stop_the_run(
    fmt: str, to_file: bool, folder: Path, tiny_weights: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = folder / NON_UTF8
    Image.fromarray(render_word("odd")).save(bad)
    (folder / (NON_UTF8 + ".txt.png")).write_bytes(b"")  # an unreadable one too: its error names it
    out_file = tmp_path / f"out.{fmt}"
    argv = [str(folder), "--weights", str(tiny_weights), "--format", fmt] + (["-o", str(out_file)] if to_file else [])
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")  # strict, as a UTF-8 terminal's
    monkeypatch.setattr(sys, "stdout", stdout)
    code, _, err = _run(argv, capsys)
    stdout.flush()
    raw = out_file.read_bytes() if to_file else stdout.buffer.getvalue()
    text = raw.decode("utf-8", "surrogateescape")
    if fmt == "jsonl":
        raw.decode("utf-8")  # valid UTF-8: the name's bytes are escaped, not written raw
        paths = [json.loads(line)["path"] for line in text.splitlines()]
    else:
        paths = [r[0] for r in csv.reader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ",")][1:]
    names = [os.fsencode(Path(p).name) for p in paths]
    assert names == [b"0.png", b"1.png", b"2.png", b"caf\xe9-\xff.png", b"caf\xe9-\xff.png.txt.png", b"3.jpg"]
    assert code == 1 and err.count("crnn ocr: error:") == 1


def test_an_unreadable_folder_is_an_error_row_and_exit_1(
    folder: Path, tiny_weights: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_scandir = os.scandir
    locked = str(folder / "sub")

    def scandir(path: object = "."):  # what a non-root user meets on a folder without read permission
        if os.fspath(path) == locked:  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    code, out, err = _run([str(folder), "--weights", str(tiny_weights)], capsys)
    rows = _tsv(out)
    assert code == 1
    assert [r["path"] for r in rows][-1] == locked and "Permission denied" in rows[-1]["error"]
    assert [Path(r["path"]).name for r in rows[:-1]] == ["0.png", "1.png", "2.png"]
    assert err.count("crnn ocr: error:") == 1 and locked in err


@pytest.mark.parametrize("target", ["missing/out.tsv", "."], ids=["missing-folder", "a-folder"])
def test_output_into_a_missing_folder_or_onto_a_folder_is_a_usage_error(
    target: str, folder: Path, tiny_weights: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crnn.kinds.loading

    def no_model(*args: object, **kw: object) -> None:
        raise AssertionError("the model was loaded before -o was checked")

    monkeypatch.setattr(crnn.kinds.loading, "load_recognizer", no_model)
    code, out, err = _run([str(folder), "--weights", str(tiny_weights), "-o", str(tmp_path / target)], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and err.startswith("crnn ocr: -o ")


@pytest.mark.parametrize("blank", [" ", "\t", "   \t  ", "\r"], ids=["space", "tab", "mixed", "cr"])
def test_whitespace_only_stdin_lines_are_skipped(blank: str, folder: Path, tiny_weights: Path, capsys, monkeypatch) -> None:
    code, out, err = _run(["-", "--weights", str(tiny_weights)], capsys,
                          stdin=f"{folder / '0.png'}\n{blank}\n{folder / '1.png'}\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert [Path(r["path"]).name for r in _tsv(out)] == ["0.png", "1.png"]



@pytest.mark.parametrize("as_program", [True, False], ids=["argv-from-the-command-line", "argv-passed-in"])
def test_the_program_freezes_the_collector_before_it_exits(as_program: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as the program (argv None), `crnn` freezes the cycle collector's objects once its command returns, so
    that the exit does not walk them; a caller passing its argv (a test, a notebook) keeps its collector as it is."""
    import gc
    import types

    from crnn import cli

    frozen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: types.SimpleNamespace(main=lambda argv: 0))
    monkeypatch.setattr(sys, "argv", ["crnn", "ocr", "x.png"])
    assert (cli.main() if as_program else cli.main(["ocr", "x.png"])) == 0
    assert frozen == ([True] if as_program else [])
