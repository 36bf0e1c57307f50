"""`crnn train` with the config's decoder section: the attention decoder, and CTC guided by an attention head (GTC)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from crnn.models.attention import AttentionConfig, teacher_forcing_pair
from crnn.charset import Charset
from crnn.checkpoints.checkpoint import read_header
from crnn.kinds.loading import load_checkpoint
from crnn.errors import ConfigError
from crnn.models.crnn import CRNN, ModelConfig
from crnn.reading.recognizer import Recognizer
from crnn_training.config import TrainConfig
from crnn_training.objectives import (AttentionObjective, CTCObjective, GuidedCTC, build_network, cross_entropy,
                                      make_objective, trained_module)
from crnn_training.train import main
from tests.test_attention_model import word_batch

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "configs" / "tiny.yaml")
# The checkout first, then whatever PYTHONPATH already holds (e.g. what maps crnn_training to this checkout).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
       "OMP_NUM_THREADS": "1"}
HEAD = ["decoder.hidden_size=16", "decoder.attention_size=16", "decoder.embedding_size=8", "decoder.max_length=8"]
GTC = ["decoder.aux_attention_weight=0.5", *HEAD]


def records(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def batch_of(words: list[str], charset: Charset) -> dict:
    ids = [charset.encode(w) for w in words]
    return {"targets": torch.tensor([i for t in ids for i in t]), "target_lengths": torch.tensor([len(t) for t in ids])}


# ---- config ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides,message", [
    (["decoder.type=attention", "decoder.aux_attention_weight=0.5"], "aux_attention_weight"),
    (["decoder.type=transformer"], "decoder.type"),
    (["decoder.free_running=1.5"], "decoder.free_running"),
    (["decoder.beam=3"], "decoder.beam"),
])
def test_bad_decoder_sections_are_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_yaml(TINY, overrides)


@pytest.mark.parametrize("overrides,kind,guided", [
    ([], CRNN, False), (["decoder.type=attention"], None, False), (["decoder.aux_attention_weight=0.3"], CRNN, True),
])
def test_the_decoder_section_picks_network_objective_and_trained_module(overrides: list[str], kind: type | None,
                                                                        guided: bool) -> None:
    config = TrainConfig.from_yaml(TINY, [*overrides, *HEAD])
    charset = Charset("abcdefgh")
    net = build_network(config, charset)
    objective = make_objective(config, charset.num_classes)
    if kind is None:
        assert type(net).__name__ == "AttentionRecognizerNet" and isinstance(objective, AttentionObjective)
        assert net.config.encoder == ModelConfig(num_classes=charset.num_classes, **config.model.to_dict())
    else:
        assert isinstance(net, kind) and isinstance(objective, CTCObjective)
    trained = trained_module(config, net)
    assert isinstance(trained, GuidedCTC) is guided and (trained is net) is not guided


@pytest.mark.parametrize("weight", [0.25, 1.0])
def test_guided_loss_is_ctc_plus_weighted_head_cross_entropy(weight: float) -> None:
    torch.manual_seed(0)
    charset = Charset("abcdefgh")
    crnn = CRNN(ModelConfig(num_classes=charset.num_classes, hidden_size=12, num_layers=1, dropout=0.0)).eval()
    head = AttentionConfig(num_classes=charset.num_classes, encoder=crnn.config, hidden_size=16, attention_size=16,
                           embedding_size=8)
    guided = GuidedCTC(crnn, head).eval()
    words = ["bad", "cafe", "he"]
    images, lengths = word_batch(words)
    batch = batch_of(words, charset)
    with torch.no_grad():
        both = CTCObjective(charset.num_classes, weight)(guided, images, lengths, batch)
        ctc_alone = CTCObjective(charset.num_classes)(crnn, images, lengths, batch)
        inputs, targets = teacher_forcing_pair([charset.encode(w) for w in words], charset.num_classes)
        ce = cross_entropy(guided(images, lengths, inputs)[1], targets)
    assert float(both) == pytest.approx(float(ctc_alone) + weight * float(ce), rel=1e-5)
    # The CTC side of the guided network is the CRNN itself: the head adds nothing to what inference reads.
    with torch.no_grad():
        assert torch.equal(guided(images, lengths)[0], crnn(images, lengths))


# ---- runs ------------------------------------------------------------------------------------------------


def test_attention_run_learns_and_writes_its_kind(tmp_path: Path) -> None:
    run = tmp_path / "att"
    assert main(["--config", TINY, f"out_dir={run}", "decoder.type=attention", *HEAD, "train.max_steps=20",
                 "train.eval_every=10", "train.log_every=5"]) == 0
    losses = [r["loss"] for r in records(run, "train")]
    assert losses[-1] < 0.9 * losses[0], losses
    assert read_header(run / "best.safetensors")["model_type"] == "crnn_attention"
    ckpt = load_checkpoint(run / "best.safetensors")
    assert ckpt.model.config.max_length == 8 and ckpt.metadata["config"]["decoder"]["type"] == "attention"
    assert "synth/cer" in records(run, "val")[-1]


def test_guided_run_saves_a_plain_crnn_and_resumes_its_head_bit_identically(tmp_path: Path) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    steps = ["train.max_steps=12", "train.save_every=5", "train.eval_every=6", "train.log_every=5"]
    assert main(["--config", TINY, f"out_dir={full}", *GTC, *steps]) == 0
    # best.safetensors: a plain CRNN checkpoint, the head dropped.
    assert read_header(full / "best.safetensors")["model_type"] == "crnn"
    with safe_open(str(full / "best.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert keys == set(CRNN(load_checkpoint(full / "best.safetensors").model.config).state_dict())
    last = torch.load(full / "last.pt", weights_only=True)
    assert last["aux_head"] and set(last["model"]) == keys
    for r in records(full, "train"):  # both terms logged beside their weighted sum
        assert r["loss"] == pytest.approx(r["loss_ctc"] + 0.5 * r["loss_attention"], rel=1e-4)

    # The head changes nothing at inference: the guided network's CTC output is the CRNN's without it.
    config = load_checkpoint(full / "best.safetensors").model.config
    crnn = CRNN(config)
    crnn.load_state_dict(last["model"])
    guided = GuidedCTC(CRNN(config), AttentionConfig(num_classes=config.num_classes, encoder=config, hidden_size=16,
                                                     attention_size=16, embedding_size=8, max_length=8))
    guided.crnn.load_state_dict(last["model"])
    guided.head.load_state_dict(last["aux_head"])
    images, lengths = word_batch(["bad", "hedge"])
    with torch.no_grad():
        assert torch.equal(guided.eval()(images, lengths)[0], crnn.eval()(images, lengths))

    # Killed after step 8 (last save at 5) and resumed: the head is restored with the rest.
    proc = subprocess.run([sys.executable, "-m", "crnn_training.train", "--config", TINY, f"out_dir={killed}", *GTC,
                           *steps, "train.halt_at_step=8"], env=ENV, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert main(["--resume", str(killed), "train.halt_at_step=0"]) == 0
    resumed = torch.load(killed / "last.pt", weights_only=True)
    for part in ("model", "aux_head"):
        for k in last[part]:
            assert torch.equal(last[part][k], resumed[part][k]), (part, k)
    assert [r["loss"] for r in records(killed, "train")] == [r["loss"] for r in records(full, "train")]


def test_plain_ctc_run_has_no_head(tmp_path: Path) -> None:
    run = tmp_path / "ctc"
    assert main(["--config", TINY, f"out_dir={run}", "train.max_steps=3", "train.eval_every=3"]) == 0
    assert "aux_head" not in torch.load(run / "last.pt", weights_only=True)
    assert isinstance(Recognizer(run / "best.safetensors"), Recognizer)


@pytest.mark.parametrize("first,override", [
    (GTC, "decoder.aux_attention_weight=0.0"), ([], "decoder.aux_attention_weight=0.5"), ([], "decoder.type=attention"),
])
def test_resume_refuses_to_switch_the_objective(tmp_path: Path, first: list[str], override: str,
                                                capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["--config", TINY, f"out_dir={run}", *first, "train.max_steps=2", "train.eval_every=2"]) == 0
    capsys.readouterr()
    assert main(["--resume", str(run), override]) == 2
    assert "--resume cannot" in capsys.readouterr().err
