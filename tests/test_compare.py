"""crnn compare: the report and charts of two tiny untrained models, and the bucketing helpers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest
import torch

import crnn
from crnn.models.baseline.model import BaselineConfig, SegCharModel
from crnn.charset import Charset
from crnn.kinds.loading import save_checkpoint
from crnn.cli import main as cli_main
from tests.word_images import render_word
from crnn_training.compare import bucket_accuracy, length_bucket

CHARSET = Charset()


def test_length_bucket_and_bucket_accuracy() -> None:
    assert [length_bucket(n) for n in (0, 1, 3, 4, 6, 7, 9, 10, 25)] == [
        "1-3", "1-3", "1-3", "4-6", "4-6", "7-9", "7-9", "10+", "10+"]
    preds = ["ab", "Hello", "world", "x", "abcdefghijk"]
    targets = ["AB", "hello!", "words", "y", "abcdefghijk"]
    keys = [length_bucket(len(t)) for t in targets]
    acc = bucket_accuracy(preds, targets, keys, ("1-3", "4-6", "7-9", "10+"))
    # protocol: case and punctuation are ignored, so "ab"/"AB" and "Hello"/"hello!" count as right
    assert acc == {"1-3": (0.5, 2), "4-6": (0.5, 2), "7-9": (0.0, 0), "10+": (1.0, 1)}
    assert bucket_accuracy(["a", "b"], ["a", "c"], ["tight", "wide"], ["tight", "normal", "wide"]) == {
        "tight": (1.0, 1), "normal": (0.0, 0), "wide": (0.0, 1)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny untrained checkpoints (CRNN and baseline) and a small labeled folder."""
    root = tmp_path_factory.mktemp("compare")
    torch.manual_seed(0)
    crnn.save_checkpoint(root / "crnn.safetensors", crnn.build_model("small", hidden_size=16), CHARSET)
    base = SegCharModel(BaselineConfig(num_classes=CHARSET.num_classes, channels=(8, 16, 16), embed_dim=16,
                                       hidden_size=16, dropout=0.0))
    save_checkpoint(root / "baseline.safetensors", base, CHARSET)
    folder = root / "bench"
    folder.mkdir()
    words = ["cab", "Bad", "dice", "jog", "window", "Table", "spacing", "x"]
    for i, w in enumerate(words):
        cv2.imwrite(str(folder / f"{i}.png"), render_word(w, invert=i % 2 == 1))
    (folder / "labels.tsv").write_text("".join(f"{i}.png\t{w}\n" for i, w in enumerate(words)))
    return root


def test_compare_writes_report_and_charts(setup: Path) -> None:
    out, charts = setup / "docs" / "comparison.md", setup / "docs" / "comparison"
    rc = cli_main(["compare", "--model", f"CRNN={setup / 'crnn.safetensors'}",
                   "--model", f"baseline={setup / 'baseline.safetensors'}", "--data", str(setup / "bench"),
                   "--synth-count", "12", "--out", str(out), "--charts-dir", str(charts)])
    assert rc == 0
    pngs = {p.name for p in charts.glob("*.png")}
    assert pngs == {"length.png", "spacing.png", "failures_CRNN.png", "failures_baseline.png"}
    assert all((charts / p).stat().st_size > 1000 for p in pngs)
    report = out.read_text()
    for png in pngs:
        assert f"](comparison/{png})" in report
    assert "images seen" in report and "not the budget-matched comparison" in report  # no images_seen recorded
    for section in ("### synthetic", "### bench", "Accuracy vs word length", "character spacing", "segmenter alone"):
        assert section in report
    # every table row of a model: percentages in [0, 100], CER >= 0, images/s > 0
    rows = [line for line in report.splitlines() if re.match(r"\| (CRNN|baseline) \|", line)]
    assert sum("safetensors" in r for r in rows) == 2  # the models' header table
    per_dataset = [r for r in rows if re.match(r"\| \w+ \| \d+ \|", r)]  # model, images, acc, acc, CER, wrong length, img/s
    assert len(per_dataset) == 4 and {r.split("|")[1].strip() for r in per_dataset} == {"CRNN", "baseline"}
    for r in per_dataset:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert int(cells[1]) > 0
        for c in (cells[2], cells[3], cells[5]):
            assert 0.0 <= float(c.rstrip(" %")) <= 100.0
        assert float(cells[4]) >= 0.0 and float(cells[6]) > 0.0
    for r in rows:
        for value in re.findall(r"([0-9.]+) %", r):
            assert 0.0 <= float(value) <= 100.0
    seg_rows = [line for line in report.splitlines() if re.match(r"\| (tight|normal|wide) \|", line)]
    assert len(seg_rows) == 3
    for r in seg_rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert int(cells[1]) == 4  # 12 words split over 3 spacing classes, all boxed by the renderer
        assert 0.0 <= float(cells[4]) <= 1.0


def test_bad_model_spec_is_an_error(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["compare", "--model", str(setup / "crnn.safetensors"), "--synth-count", "0"]) == 2
    assert "NAME=CHECKPOINT" in capsys.readouterr().err


def test_experiment_commands_share_stream_and_budget() -> None:
    from crnn_training.experiment import RUNS, run_command, steps_for

    assert steps_for(200_000, 128) == 1563 and steps_for(1, 128) == 1
    synth = {"lexicon_size": 50}
    cmds = {r.slug: run_command(r, Path("/tmp/x") / r.slug, "configs/tiny.yaml", 1000, 8, "cpu", 1, 1, synth, [])
            for r in RUNS}
    base = cmds["baseline"]
    assert base[base.index("--max-steps") + 1] == "125" and base[base.index("--batch-size") + 1] == "8"
    assert base[base.index("--seed") + 1] == "0" and '"lexicon_size": 50' in base[base.index("--synth") + 1]
    for slug, cmd in cmds.items():
        if slug != "baseline":
            assert "train.max_steps=125" in cmd and "seed=0" in cmd and "synth.lexicon_size=50" in cmd
    assert "model.cell=none" in cmds["none"] and "model.bidirectional=false" in cmds["lstm2-uni"]
    assert "model.cell=rnn" in cmds["birnn2"] and "model.num_layers=1" in cmds["bilstm1"]


@pytest.mark.slow
def test_compare_quick_trains_the_budget_matched_set(tmp_path: Path) -> None:
    runs, out, charts = tmp_path / "runs", tmp_path / "docs" / "comparison.md", tmp_path / "docs" / "comparison"
    args = ["compare", "--quick", "--runs-dir", str(runs), "--train-images", "32", "--train-config",
            "configs/tiny.yaml", "--synth-count", "12", "--out", str(out), "--charts-dir", str(charts)]
    assert cli_main(args) == 0
    from crnn_training.experiment import RUNS

    for r in RUNS:  # every run finished on the same budget
        assert json.loads((runs / r.slug / "done.json").read_text())["images"] == 32
    report = out.read_text()
    assert "Training budgets match" in report and "Recurrent-head ablation" in report
    rows = [line for line in report.splitlines() if line.startswith(("| baseline |", "| CRNN |"))]
    assert len(rows) >= 4  # both models in the models table and the per-dataset table at least
    assert (charts / "gradient_flow.png").stat().st_size > 1000
    assert {p.name for p in charts.glob("failures_*.png")} == {"failures_CRNN.png", "failures_baseline.png"}
    meta = crnn.checkpoints.checkpoint.read_header(runs / "baseline" / "best.safetensors")["metadata"]
    assert meta["train_args"]["max_steps"] * meta["train_args"]["batch_size"] == 32  # the budget it was given
    assert meta["images_seen"] in (16, 32) and "hardware" in meta  # the best of the half-way and final evaluations


@pytest.mark.parametrize("run_set", ["heads", "models", "decoders"])
def test_every_run_of_a_set_is_a_valid_config_and_network(run_set: str) -> None:
    # A typo in a run's overrides would surface only hours into a GPU session: build each run's config and network.
    from crnn.config import apply_overrides, load_yaml
    from crnn.models.crnn import CRNN, ModelConfig
    from crnn_training.config import TrainConfig
    from crnn_training.experiment import RUN_SETS
    from crnn_training.objectives import build_network

    preset = "configs/models-cpu.yaml" if run_set == "models" else "configs/compare.yaml"
    runs = RUN_SETS[run_set]
    assert len({r.slug for r in runs}) == len(runs)
    for run in runs:
        if run.kind != "crnn":
            continue
        config = TrainConfig.from_dict(apply_overrides(load_yaml(preset), list(run.overrides)))
        net = build_network(config, Charset())
        assert isinstance(net, torch.nn.Module)
        if run_set == "models":
            assert isinstance(net, CRNN) and net.config == ModelConfig(num_classes=Charset().num_classes,
                                                                       **config.model.to_dict())


def test_compare_offers_every_run_set() -> None:
    from crnn_training.compare import SET_SECTIONS, _parser
    from crnn_training.experiment import RUN_SETS

    action = next(a for a in _parser()._actions if a.dest == "set")
    assert set(action.choices) == set(RUN_SETS)
    assert set(SET_SECTIONS) == set(RUN_SETS)  # each set's report names its own same-budget table


def test_experiment_refuses_run_folders_it_did_not_finish_before_any_run(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from crnn.errors import OutputPathError
    from crnn_training import experiment

    runs = tuple(r for r in experiment.RUNS if r.slug in ("baseline", "bilstm2", "none"))
    for slug, images in (("baseline", 64), ("bilstm2", 32)):  # finished on another budget, and on this one
        (tmp_path / slug).mkdir()
        (tmp_path / slug / "best.safetensors").write_bytes(b"old")
        (tmp_path / slug / "done.json").write_text(json.dumps({"images": images}))
    started: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: started.append(cmd) or pytest.fail("a run started"))
    with pytest.raises(OutputPathError, match=r"baseline: holds a run \(best.safetensors, done.json\); give --force"):
        experiment.train_all(tmp_path, 32, config="configs/tiny.yaml", runs=runs)
    assert experiment.main(["--runs-dir", str(tmp_path), "--images", "32", "--config", "configs/tiny.yaml",
                            "--only", "baseline,bilstm2,none"]) == 2
    assert not started and (tmp_path / "baseline" / "best.safetensors").read_bytes() == b"old"

    def fake_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
        started.append(cmd)
        out = Path(cmd[cmd.index("--out") + 1] if "--out" in cmd else next(a[8:] for a in cmd if a.startswith("out_dir=")))
        assert not (out / "done.json").exists()  # the old budget's mark is gone before the run starts
        (out / "best.safetensors").write_bytes(b"new")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    done = experiment.train_all(tmp_path, 32, config="configs/tiny.yaml", runs=runs, force=True)
    assert set(done) == {r.label for r in runs} and len(started) == 2  # bilstm2 was finished on 32: kept
    assert all("--force" in cmd for cmd in started)  # train_all checked the folders; the trainers may replace
    assert (tmp_path / "baseline" / "best.safetensors").read_bytes() == b"new"
    assert (tmp_path / "bilstm2" / "best.safetensors").read_bytes() == b"old"
    assert json.loads((tmp_path / "baseline" / "done.json").read_text())["images"] == 32
