"""`crnn ocr --ray` (crnn/commands/ray_ocr.py) on a local Ray instance of 2 CPUs, started once for the module."""

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from crnn import Charset, build_model, save_checkpoint
from crnn.commands.ocr import main
from tests.word_images import render_word

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs) for every test of this module: starting Ray takes seconds."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("w") / "tiny.safetensors", build_model("small", hidden_size=16),
                           Charset())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven word images in two folders, one of them corrupt."""
    d = tmp_path_factory.mktemp("imgs")
    (d / "sub").mkdir()
    for i, w in enumerate(["alpha", "be", "gamma", "delta", "Epsilon"]):
        Image.fromarray(render_word(w)).save(d / f"{i}.png")
    Image.fromarray(render_word("zeta")).save(d / "sub" / "5.jpg")
    (d / "2b.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    return d


def plain_records(paths: list[str], weights: Path, capsys: pytest.CaptureFixture, *extra: str) -> list[dict]:
    """`crnn ocr --format jsonl`'s records, with every key the shards have (None where absent)."""
    main([*paths, "--weights", str(weights), "--format", "jsonl", *extra])
    out = capsys.readouterr().out
    keys = ("path", "text", "confidence", "char_confidences", "error")
    return [{k: rec.get(k) for k in keys} | ({"in_lexicon": rec.get("in_lexicon")} if "in_lexicon" in rec else {})
            for rec in map(json.loads, out.splitlines())]


def ray_run(paths: list[str], out: Path, weights: Path, *extra: str) -> int:
    return main([*paths, "--ray", "--output", str(out), "--weights", str(weights), "--ray-actors", "2",
                 "--batch-size", "2", *extra])


@pytest.mark.ray
def test_results_equal_crnn_ocr_with_a_corrupt_file(ray_local, folder: Path, tiny_weights: Path, tmp_path: Path,
                                                    capsys) -> None:
    from crnn.commands.ray_ocr import read_results

    code = ray_run([str(folder)], tmp_path / "out", tiny_weights, "--ray-shard-size", "3")
    err = capsys.readouterr().err
    assert code == 1 and err.count("crnn ocr: error:") == 1 and "2b.png" in err  # an error row, not a failed job
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == [f"part-00000{i}.parquet" for i in range(3)]
    got = read_results(tmp_path / "out")
    assert got == plain_records([str(folder)], tiny_weights, capsys)
    assert [Path(r["path"]).name for r in got] == ["0.png", "1.png", "2.png", "2b.png", "3.png", "4.png", "5.jpg"]
    assert got[3]["error"] and got[3]["text"] is None and all(r["error"] is None for i, r in enumerate(got) if i != 3)


@pytest.mark.ray
def test_a_killed_run_resumes_writing_each_path_once(ray_local, folder: Path, tiny_weights: Path, tmp_path: Path,
                                                     capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from crnn.commands import ray_ocr

    out = tmp_path / "out"
    real_write = ray_ocr.write_atomically
    written: list[str] = []

    def killed_after_two_shards(path: Path, data: bytes) -> None:
        if path.name.startswith("part-") and len(written) == 2:
            path.with_name(f".{path.name}.tmp-999").write_bytes(data[: len(data) // 2])  # half a temporary file
            raise KeyboardInterrupt  # what Ctrl-C (or a kill) does to the driver mid-run
        real_write(path, data)
        if path.name.startswith("part-"):
            written.append(path.name)

    monkeypatch.setattr(ray_ocr, "write_atomically", killed_after_two_shards)
    weights = shutil.copy(tiny_weights, tmp_path / "w.safetensors")
    assert ray_run([str(folder)], out, weights, "--ray-shard-size", "2") == 130
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    assert len(first) == 2 and "rerun" in capsys.readouterr().err
    monkeypatch.setattr(ray_ocr, "write_atomically", real_write)

    # Other weights copied over the same path: the resume is refused, nothing is written.
    torch.manual_seed(1)
    save_checkpoint(weights, build_model("small", hidden_size=16), Charset())
    assert ray_run([str(folder)], out, weights, "--ray-shard-size", "2") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"weights {weights} has changed since (sha256 " in err and "new --output" in err
    assert {p.name for p in out.glob("part-*")} == set(first)

    # The same weights again, with another batch size (it cannot change what is read): resumed.
    shutil.copy(tiny_weights, weights)
    assert ray_run([str(folder)], out, weights, "--ray-shard-size", "2", "--batch-size", "3") == 1
    assert "2 of 4 shards already" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*") if p.name in first} == first  # not redone
    assert not list(out.glob(".part-*")), "the killed run's temporary file is left"
    paths = [r["path"] for r in ray_ocr.read_results(out)]
    assert sorted(paths) == sorted(set(paths)) and len(paths) == 7  # each path exactly once
    assert ray_ocr.read_results(out) == plain_records([str(folder)], tiny_weights, capsys)

    assert ray_run([str(folder)], out, weights, "--ray-shard-size", "2") == 1
    assert "4 of 4 shards already" in capsys.readouterr().err  # a finished run exits at once


@pytest.mark.ray
def test_csv_and_parquet_manifests_into_jsonl_shards(ray_local, folder: Path, tiny_weights: Path, tmp_path: Path,
                                                      capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.chdir(folder)  # relative paths in a manifest mean what they mean to the driver
    in_csv = ["sub/5.jpg", "0.png", "2b.png", "missing.png"]
    in_parquet = [str(folder / "1.png"), "3.png"]
    (tmp_path / "m.csv").write_text("id,path\n" + "".join(f"{i},{p}\n" for i, p in enumerate(in_csv)))
    pq.write_table(pa.table({"path": in_parquet, "id": [0, 1]}), tmp_path / "m.parquet")
    out = tmp_path / "out"
    code = ray_run([str(tmp_path / "m.csv"), str(folder / "4.png"), str(tmp_path / "m.parquet")], out, tiny_weights,
                   "--ray-format", "jsonl", "--ray-shard-size", "4")
    paths = [*in_csv, str(folder / "4.png"), *in_parquet]
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(paths) + "\n"))
    main(["-", "--weights", str(tiny_weights), "--format", "jsonl"])  # the same list given to `crnn ocr` on stdin
    plain = capsys.readouterr().out
    assert code == 1
    assert "".join(f.read_text() for f in sorted(out.glob("part-*.jsonl"))) == plain  # the very same lines
    assert [json.loads(line).get("error") is not None for line in plain.splitlines()] == [
        False, False, True, True, False, False, False]


@pytest.mark.ray
def test_usage_errors(ray_local, folder: Path, tiny_weights: Path, tmp_path: Path, capsys) -> None:
    assert main([str(folder), "--ray", "--weights", str(tiny_weights)]) == 2
    assert "--output DIR" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("file\nx.png\n")
    assert ray_run([str(bad)], tmp_path / "o1", tiny_weights) == 2
    assert "no 'path' column" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert ray_run([str(folder)], tmp_path / "afile", tiny_weights) == 2
    assert "is a file" in capsys.readouterr().err
    # A folder written with other options (here another shard size) is not resumed into.
    out = tmp_path / "o2"
    from crnn.commands.ocr import build_parser
    from crnn.commands.ray_ocr import options_from_args, prepare_output, run_record

    args = build_parser().parse_args([str(folder), "--weights", str(tiny_weights), "--backend", "torch"])
    prepare_output(out, run_record(options_from_args(args), "parquet", 5))
    assert ray_run([str(folder)], out, tiny_weights) == 2
    err = capsys.readouterr().err
    assert "--ray-shard-size 5 then, 10000 now" in err and "--decoder" not in err and err.count("\n") == 1


def test_crnn_ocr_without_ray_never_imports_ray(folder: Path, tiny_weights: Path) -> None:
    code = ("import sys; from crnn.cli import main; main(['ocr', sys.argv[1], '--weights', sys.argv[2], '-o', "
            "sys.argv[3]]); print('ray' in sys.modules, 'crnn.commands.ray_ocr' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, str(folder), str(tiny_weights), os.devnull],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.stdout.strip() == "False False", res.stderr
    rows = list(csv.reader(io.StringIO(subprocess.run(
        [sys.executable, "-m", "crnn.cli", "ocr", "--help"], capture_output=True, text=True, cwd=REPO).stdout)))
    assert any("--ray" in " ".join(r) for r in rows)  # the flags are listed without importing Ray


# --- the run file and a resume's checks (no Ray started: they run before it would be) --------------------------


@pytest.fixture
def no_ray_job(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """`crnn ocr --ray` with the Ray job replaced by one that reads nothing: the shards each call would read."""
    pytest.importorskip("ray")
    from crnn.commands import ray_ocr

    calls: list[int] = []
    monkeypatch.setattr(ray_ocr, "_run_shards", lambda args, options, blocks, todo, *rest: calls.append(len(todo)) or 0)
    return calls


def test_a_resume_refuses_other_weights_or_lexicon_and_allows_what_cannot_change_results(
        folder: Path, tiny_weights: Path, tmp_path: Path, capsys, no_ray_job: list[int]) -> None:
    weights, lex, out = tmp_path / "w.safetensors", tmp_path / "words.txt", tmp_path / "out"
    shutil.copy(tiny_weights, weights)
    lex.write_text("alpha\nbe\n")
    assert ray_run([str(folder)], out, weights, "--lexicon", str(lex)) == 0 and no_ray_job == [1]
    record = json.loads((out / "_crnn_ocr_run.json").read_text())
    assert record["weights"] == {"path": str(weights), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert record["lexicon"]["sha256"] == hashlib.sha256(lex.read_bytes()).hexdigest()
    assert "--batch-size" not in record["options"] and record["options"]["--decoder"] == "lm"
    capsys.readouterr()

    # What only changes how fast: allowed (and the same weights and list, moved elsewhere, are the same).
    moved = shutil.copy(lex, tmp_path / "moved.txt")
    assert ray_run([str(folder)], out, weights, "--lexicon", str(moved), "--batch-size", "7", "--ray-actors", "1",
                   "--lm-weight", "0.35") == 0 and no_ray_job == [1, 1]
    capsys.readouterr()
    # What changes the results: refused, one line saying what.
    lex.write_text("alpha\nbe\ngamma\n")
    for extra, says in [((), f"lexicon {lex} has changed since (sha256 "),
                        (("--decoder", "greedy"), "--decoder lm then, greedy now"),
                        (("--lm-weight", "0.5"), "--lm-weight 0.35 then, 0.5 now")]:
        assert ray_run([str(folder)], out, weights, "--lexicon", str(lex), *extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err and "start over in a new --output folder" in err
    assert ray_run([str(folder)], out, weights) == 2
    assert f"lexicon {lex} then, no lexicon now" in capsys.readouterr().err  # the run file keeps the first path
    assert no_ray_job == [1, 1]


@pytest.mark.parametrize("damage", ["shard", "shard without paths", "run file", "run file of a list",
                                    "run file of an older version"])
def test_a_damaged_shard_or_run_file_is_one_line_naming_it_and_exit_2(
        folder: Path, tiny_weights: Path, tmp_path: Path, capsys, no_ray_job: list[int], damage: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    assert ray_run([str(folder)], out, tiny_weights, "--ray-shard-size", "3") == 0 and no_ray_job == [3]
    run_file, shard = out / "_crnn_ocr_run.json", out / "part-000001.parquet"
    if damage == "shard":
        shard.write_bytes(b"PAR1 and then nothing")
    elif damage == "shard without paths":
        pq.write_table(pa.table({"text": ["a", "b", "c"]}), shard)
    elif damage == "run file":
        run_file.write_text('{"version": 2, "opt')
    elif damage == "run file of a list":
        run_file.write_text("[1, 2]")
    else:  # what crnn-ocr wrote before the weights were hashed
        run_file.write_text(json.dumps({"format": "parquet", "shard_size": 3, "load": {"weights": str(tiny_weights)},
                                        "run": {}, "lexicon": None, "lexicon_case": "image"}))
    capsys.readouterr()
    assert ray_run([str(folder)], out, tiny_weights, "--ray-shard-size", "3") == 2
    err = capsys.readouterr().err
    named = shard if damage.startswith("shard") else run_file
    assert err.count("\n") == 1 and err.startswith(f"crnn ocr: --output {out}: {named.name} "), err
    assert ("older crnn-ocr" in err) == damage.endswith("older version")
    assert no_ray_job == [3]  # nothing more was read
