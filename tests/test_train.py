"""Training end to end on a tiny config: loss falls, kill-and-resume is bit-identical, DDP, fine-tuning, bad data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

from crnn.charset import Charset
from crnn.kinds.loading import load_checkpoint, save_checkpoint
from crnn.models.crnn import CRNN, ModelConfig
from tests.word_images import render_word
from crnn_training.config import TrainConfig
from crnn_training.train import init_from, main

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "configs" / "tiny.yaml")
# The checkout first, then whatever PYTHONPATH already holds (e.g. what maps crnn_training to this checkout).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
       "OMP_NUM_THREADS": "1"}
RUN = ["train.max_steps=20", "train.save_every=5", "train.eval_every=10"]


def records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_tiny_run_learns_and_resume_is_bit_identical(tmp_path: Path) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(["--config", TINY, f"out_dir={full}", *RUN]) == 0
    losses = [r["loss"] for r in records(full, "train")]
    assert losses[-1] < 0.5 * losses[0], losses
    for name in ("best.safetensors", "last.pt", "metrics.jsonl", "config.yaml", "curves.png"):
        assert (full / name).is_file(), name
    ckpt = load_checkpoint(full / "best.safetensors")
    assert ckpt.metadata["config"]["model"]["hidden_size"] == 32 and "synth/cer" in ckpt.metadata["metrics"]

    # The same run killed (no clean-up at all) after step 12; its last save was at step 10.
    proc = subprocess.run([sys.executable, "-m", "crnn_training.train", "--config", TINY, f"out_dir={killed}", *RUN,
                           "train.halt_at_step=12"], env=ENV, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert torch.load(killed / "last.pt", weights_only=True)["step"] == 10
    assert main(["--resume", str(killed), "train.halt_at_step=0"]) == 0

    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(killed / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 20
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["loss"] for r in records(killed, "train")] == losses


def test_fp16_autocast_runs_with_a_grad_scaler_and_resumes_it(tmp_path: Path) -> None:
    # The CUDA fp16 path (autocast + GradScaler, its state saved and resumed) exercised on the CPU,
    # where torch supports both.
    run = tmp_path / "fp16"
    args = ["--config", TINY, f"out_dir={run}", "train.amp=fp16", "train.max_steps=10", "train.save_every=5",
            "train.eval_every=10"]
    proc = subprocess.run([sys.executable, "-m", "crnn_training.train", *args, "train.halt_at_step=7"], env=ENV, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["step"] == 5 and state["scaler"]["scale"] > 0  # an enabled scaler saved its scale
    assert main(["--resume", str(run), "train.halt_at_step=0"]) == 0
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 10
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records(run, "train"))


@pytest.mark.slow
def test_ddp_two_gloo_processes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "crnn_training.train", "--config", TINY, f"out_dir={tmp_path}", "train.max_steps=6", "train.eval_every=3"],
        env=ENV, cwd=REPO, capture_output=True, text=True, timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 2" in proc.stdout + proc.stderr
    assert (tmp_path / "best.safetensors").is_file()
    steps = [r["step"] for r in records(tmp_path, "train")]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # only rank 0 writes
    assert records(tmp_path, "train")[-1]["images_seen"] == 6 * 2 * 8


def test_init_from_keeps_old_rows_with_a_new_charset(tmp_path: Path) -> None:
    old_cs = Charset("abc")
    torch.manual_seed(0)
    old = CRNN(ModelConfig(num_classes=old_cs.num_classes, hidden_size=16, num_layers=1))
    save_checkpoint(tmp_path / "old.safetensors", old, old_cs)
    config = TrainConfig.from_yaml(TINY, ["charset=cxa!"])
    model, cs = init_from(str(tmp_path / "old.safetensors"), config)
    assert cs == Charset("cxa!") and model.config.hidden_size == 16 and config.model.hidden_size == 16
    w_old, w_new = old.classifier.weight.detach(), model.classifier.weight.detach()
    for ch in "ca":
        assert torch.equal(w_new[cs.subset_indices(ch)[0]], w_old[old_cs.subset_indices(ch)[0]])
    assert torch.equal(w_new[0], w_old[0])  # the blank
    assert torch.equal(model.rnn.weight_hh_l0.detach(), old.rnn.weight_hh_l0.detach())


def test_bad_samples_in_a_training_folder_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "words"
    folder.mkdir()
    lines = []
    for i, word in enumerate(["cat", "dog", "tree", "house", "Moon", "sun"] * 3):
        cv2.imwrite(str(folder / f"{i}.png"), render_word(word))
        lines.append(f"{i}.png\t{word}")
    (folder / "broken.png").write_bytes(b"not a png")
    lines += ["broken.png\tbroken", "missing.png\tmissing", "0.png\tnaïve", "no tab here"]
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    rc = main(["--config", TINY, f"out_dir={out}", "train.max_steps=6", "val.synth_size=0",
               f"val.folders=[{folder}]", "val.best_metric=words/cer",
               f"data.sources=[{{type: folder, path: {folder}, weight: 1}}, {{type: synth, weight: 1}}]"])
    assert rc == 0
    last = records(out, "train")[-1]
    assert last["step"] == 6 and last["bad"] > 0  # the broken and missing images were drawn and skipped
    assert records(out, "val")[-1]["words/count"] == 18  # the 4 bad lines are not in the validation set


def test_weighted_mix_with_lmdb_and_folder_batches(tmp_path: Path) -> None:
    from crnn_synth_data import LmdbWriter

    from crnn.io.preprocess import PreprocessConfig
    from crnn_training.data import BatchStream, build_sources

    words = ["alpha", "beta", "gamma", "delta"]
    with LmdbWriter(tmp_path / "db.lmdb", map_size=1 << 22) as w:
        for word in words:
            w.add(render_word(word), word)
    folder = tmp_path / "f"
    folder.mkdir()
    cv2.imwrite(str(folder / "x.png"), render_word("xyz"))
    (folder / "labels.tsv").write_text("x.png\txyz\n")
    config = TrainConfig.from_yaml(TINY, [f"data.sources=[{{type: lmdb, path: {tmp_path / 'db.lmdb'}, weight: 3}}, "
                                f"{{type: folder, path: {folder}, weight: 1}}]"])
    cs = Charset()
    stream = BatchStream(build_sources(config, cs, 0), [3, 1], cs, PreprocessConfig(), 8, 2, seed=0)
    pool = stream.make_pool(0)
    again = stream.make_pool(0)  # a pool is a pure function of (seed, rank, index)
    assert all(torch.equal(a["images"], b["images"]) and a["texts"] == b["texts"] for a, b in zip(pool, again))
    texts = [t for b in pool for t in b["texts"]]
    assert len(texts) == 16 and set(texts) <= set(words) | {"xyz"}
    assert 6 <= sum(t in words for t in texts) <= 16  # about 3:1
    for b in pool:  # each batch is sorted into one width range and padded to one bucket
        assert b["images"].shape[0] == len(b["texts"]) and b["images"].shape[-1] % PreprocessConfig().width_bucket == 0
        assert int(b["target_lengths"].sum()) == b["targets"].numel()


def _equal_width_pools(tmp_path: Path) -> dict[bool, list[dict]]:
    """Pool 0 of an LMDB of words of many lengths, made without and with data.equal_widths."""
    from crnn_synth_data import LmdbWriter

    from crnn.io.preprocess import PreprocessConfig
    from crnn_training.data import BatchStream, build_sources

    words = ["a", "to", "cat", "tree", "house", "bridge", "example", "ab1cd2", "Zurich", "wood", "lo", "sixsix"]
    with LmdbWriter(tmp_path / "db.lmdb", map_size=1 << 22) as w:
        for i, word in enumerate(words):
            w.add(render_word(word, height=24 + 4 * (i % 4)), word)  # heights other than 32: resized both ways
    config = TrainConfig.from_yaml(TINY, [f"data.sources=[{{type: lmdb, path: {tmp_path / 'db.lmdb'}}}]"])
    cs = Charset()
    sources = build_sources(config, cs, 0)
    return {eq: BatchStream(sources, [1.0], cs, PreprocessConfig(), 6, 3, seed=0, equal_widths=eq).make_pool(0)
            for eq in (False, True)}


def test_equal_widths_stretches_every_image_of_a_batch_to_its_widest(tmp_path: Path) -> None:
    from crnn.io.preprocess import PreprocessConfig
    from crnn_training.data import ctc_frames_needed

    pools = _equal_width_pools(tmp_path)
    assert len(pools[True]) == len(pools[False]) == 3
    cs = Charset()
    for off, on in zip(pools[False], pools[True]):
        # The same samples in the same order: only the images (and their widths) change.
        assert off["texts"] == on["texts"] and len(on["texts"]) > 0
        assert torch.equal(off["targets"], on["targets"]) and torch.equal(off["target_lengths"], on["target_lengths"])
        width = on["images"].shape[-1]
        assert on["images"].shape == off["images"].shape  # the batch keeps its padded width
        assert on["widths"].tolist() == [width] * len(on["texts"])  # one width: the recurrent layers run unpacked
        assert int(off["widths"].max()) == width and bool((off["widths"] <= width).all())  # stretched, never squeezed
        assert width % PreprocessConfig().width_bucket == 0
        for i, text in enumerate(on["texts"]):
            own = int(off["widths"][i])
            if own == width:  # the widest images are untouched
                assert torch.equal(on["images"][i], off["images"][i])
            else:  # a stretched image fills the batch: no padding column left
                assert bool((on["images"][i, 0, :, own:] != 0).any(dim=0).all())
            ids = cs.encode(text)  # stretching only adds frames: the CTC frame check still holds
            assert ctc_frames_needed(ids) <= CRNN.frames_for_width(width)
    assert any(len(set(b["widths"].tolist())) > 1 for b in pools[False])  # without it, widths differ in a batch


def test_a_stretched_image_is_the_source_resized_once(tmp_path: Path) -> None:
    import numpy as np

    from crnn.io.preprocess import PreprocessConfig, normalize, resize_normalized

    config = PreprocessConfig()
    gray = render_word("bridge", height=40)
    own = normalize(gray, config)
    assert np.array_equal(resize_normalized(gray, own.shape[1], config), own)  # normalize is the own-width case
    wide = resize_normalized(gray, own.shape[1] + 24, config)
    assert wide.shape == (config.height, own.shape[1] + 24) and wide.dtype == np.float32
    assert -1.0 <= float(wide.min()) and float(wide.max()) <= 1.0


def test_plot_command(tmp_path: Path) -> None:
    from crnn_training.plot import main as plot_main

    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"kind": "train", "step": 5, "loss": 3.0, "lr": 1e-3, "grad_norm": 2.0, "rnn_grad_norm": 0.5,
         "images_per_s": 50.0, "data_wait_frac": 0.1},
        {"kind": "train", "step": 10, "loss": 2.0, "lr": 5e-4, "grad_norm": 1.0, "rnn_grad_norm": 0.4,
         "images_per_s": 55.0, "data_wait_frac": 0.05},
        {"kind": "val", "step": 10, "synth/word_accuracy_protocol": 0.1, "synth/word_accuracy_case": 0.05,
         "synth/cer": 0.8},
    ]) + "\n")
    assert plot_main([str(tmp_path)]) == 0 and (tmp_path / "curves.png").stat().st_size > 1000
    assert plot_main([str(tmp_path / "nope")]) == 2


def test_plot_overlays_several_runs_by_images_seen(tmp_path: Path) -> None:
    from crnn_training.plot import main as plot_main

    for name, loss in (("a", 3.0), ("b", 2.0)):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
            {"kind": "train", "step": 5, "loss": loss, "images_seen": 320},
            {"kind": "train", "step": 10, "loss": loss / 2, "images_seen": 640},
            {"kind": "val", "step": 10, "images_seen": 640, "synth/word_accuracy_protocol": 0.1},
        ]) + "\n")
    out = tmp_path / "both.png"
    assert plot_main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0 and out.stat().st_size > 1000
    assert plot_main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2  # several runs need --out


# --- run folders (issue 36): a folder that holds a run is refused unless --resume or --force -------------------

SHORT = ["train.max_steps=4", "train.save_every=2", "train.eval_every=2", "val.synth_size=8"]


def files_of(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_a_finished_run_is_never_overwritten_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={run}", *SHORT]) == 0
    before = files_of(run)
    assert {"best.safetensors", "last.pt", "metrics.jsonl", "config.yaml"} <= set(before)
    capsys.readouterr()
    assert main(["--config", TINY, f"out_dir={run}", *SHORT, "train.max_steps=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a run" in err[0] and f"--resume {run}" in err[0] and "--force" in err[0], err
    assert files_of(run) == before  # untouched, metrics.jsonl's lines included

    (run / "notes.txt").write_text("mine")
    assert main(["--config", TINY, f"out_dir={run}", *SHORT, "train.max_steps=2", "--force"]) == 0
    assert "removed the old run's" in capsys.readouterr().out
    assert [r["step"] for r in records(run, "train")] == [2] and [r["step"] for r in records(run, "val")] == [2]
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_force_leaves_the_old_run_as_it_was_when_the_new_one_fails_to_start(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={run}", *SHORT]) == 0
    before = files_of(run)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["--config", TINY, f"out_dir={run}", "--force", "val.folders=[/no/such/folder]"]) == 2  # at load
    assert main(["--config", TINY, f"out_dir={run}", "--force", "--init-from", str(bad)]) == 2  # during setup
    assert files_of(run) == before
    new = tmp_path / "new"
    assert main(["--config", TINY, f"out_dir={new}", "--init-from", str(bad)]) == 2
    assert not new.exists()  # a run that fails to start leaves no half run folder (which would need --force)


def _fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


@pytest.mark.parametrize(
    "prepare, args, message",
    [
        (lambda d: d.parent.mkdir() or d.write_text("x"), [], "is not a folder"),
        (lambda d: d.parent.mkdir() or d.parent.joinpath("f").write_text("x"), ["out_dir={parent}/f/run"],
         "is a file, not a folder"),
        (lambda d: (d / "last.pt").mkdir(parents=True), ["--force"], "last.pt: is a folder"),
        (lambda d: _fifo(d / "metrics.jsonl"), ["--force"], "not a regular file"),
        (lambda d: (d / "tb").mkdir(parents=True), [], "holds a run (tb)"),
    ],
    ids=["file", "under-a-file", "folder-at-last.pt", "fifo-at-metrics.jsonl", "tensorboard-only"],
)
def test_run_folders_that_cannot_take_a_run_are_refused_before_any_work(
        tmp_path: Path, prepare, args: list[str], message: str, capsys: pytest.CaptureFixture[str],  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch) -> None:
    import crnn_training.train as train_module

    monkeypatch.setattr(train_module, "pick_device", lambda *a, **k: pytest.fail("the run started"))
    out = tmp_path / "p" / "run"
    prepare(out)
    args = [a.format(parent=out.parent) for a in args]
    target = next((a.split("=", 1)[1] for a in args if a.startswith("out_dir=")), str(out))
    assert main(["--config", TINY, f"out_dir={target}", *[a for a in args if not a.startswith("out_dir=")]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "out_dir" in err[0], err


@pytest.mark.parametrize(
    "extra, message",
    [(["--config", TINY], "--config does not apply"), (["--force"], "--force does not apply"),
     (["--init-from", "x.safetensors"], "--init-from does not apply"), (["out_dir=elsewhere"], "out_dir cannot")],
)
def test_resume_refuses_what_it_would_ignore(tmp_path: Path, extra: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert main(["--resume", str(run), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(
    "sources, overrides, expected",
    [
        ("[{type: synth, weight: 1}]", [], (1, 1)),  # the renderer needs a core of its own
        ("[{type: synth, weight: 1}, {type: lmdb, path: c.lmdb, weight: 1}]", [], (1, 1)),  # half fresh: still busy
        ("[{type: lmdb, path: c.lmdb, weight: 0.9}, {type: synth, weight: 0.1}]", [], (1, 2)),  # mostly the cache
        ("[{type: lmdb, path: c.lmdb, weight: 1}]", [], (1, 2)),
        ("[{type: folder, path: f, weight: 4}, {type: synth, weight: 1}]", [], (1, 2)),  # a fifth fresh: light
        ("[{type: lmdb, path: c.lmdb, weight: 1}]", ["train.threads=1", "data.num_workers=0"], (0, 1)),  # as asked
    ],
)
def test_auto_threads_gives_the_trainer_every_core_when_the_data_is_read_not_rendered(
        sources: str, overrides: list[str], expected: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    import crnn_training.train as train_module

    monkeypatch.setattr(train_module, "cpu_cores", lambda: 2)
    config = TrainConfig.from_yaml(TINY, [f"data.sources={sources}", "data.num_workers=-1", "train.threads=0", *overrides])
    assert train_module.auto_threads(config, torch.device("cpu"), 1) == expected


@pytest.mark.parametrize("native, amp, expected", [
    (True, "auto", torch.bfloat16), (False, "auto", None), (True, "off", None), (False, "bf16", torch.bfloat16),
])
def test_amp_auto_is_bf16_on_cpus_with_native_bf16_and_fp32_elsewhere(
        native: bool, amp: str, expected: torch.dtype | None, monkeypatch: pytest.MonkeyPatch) -> None:
    import crnn.reading.precision
    from crnn_training.train import amp_dtype

    monkeypatch.setattr(crnn.reading.precision, "cpu_has_native_bf16", lambda: native)
    config = TrainConfig.from_yaml(TINY, [f"train.amp={amp}"])
    assert amp_dtype(config, torch.device("cpu")) == expected
    assert amp_dtype(TrainConfig.from_yaml(TINY, ["train.amp=auto"]), torch.device("cuda")) == torch.bfloat16  # always


@pytest.mark.parametrize("equal_widths", [False, True])
def test_a_cached_and_fresh_mix_resumes_bit_identically(tmp_path: Path, equal_widths: bool) -> None:
    from crnn_training.cache import main as cache_main

    mix = [f"data.sources=[{{type: lmdb, path: {tmp_path / 'cache.lmdb'}, weight: 0.9}}, {{type: synth, weight: 0.1}}]",
           f"data.equal_widths={str(equal_widths).lower()}"]
    assert cache_main(["--config", TINY, "--count", "40", "--workers", "1", *mix]) == 0
    run = [*mix, "train.max_steps=10", "train.save_every=5", "train.eval_every=10"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(["--config", TINY, f"out_dir={full}", *run]) == 0
    proc = subprocess.run([sys.executable, "-m", "crnn_training.train", "--config", TINY, f"out_dir={killed}", *run,
                           "train.halt_at_step=7"], env=ENV, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert main(["--resume", str(killed), "train.halt_at_step=0"]) == 0
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(killed / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 10
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["loss"] for r in records(killed, "train")] == [r["loss"] for r in records(full, "train")]
