"""crnn.kinds.registry: every model kind registered once, looked up by checkpoint type; the TextRecognizer contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crnn.models.attention import AttentionRecognizerNet, build_attention_model
from crnn.reading.attention_recognizer import AttentionRecognizer
from crnn.models.baseline.model import BaselineConfig, SegCharModel
from crnn.reading.baseline_recognizer import BaselineRecognizer
from crnn.charset import Charset
from crnn.checkpoints.checkpoint import read_header
from crnn.kinds.loading import load_checkpoint, save_checkpoint
from crnn.errors import CheckpointError
from crnn.models.crnn import CRNN, ModelConfig
from crnn.reading.recognizer import Recognizer
from crnn.kinds.registry import get_kind, kind_of, kinds, register
from crnn.checkpoints.kind import ModelKind
from crnn.reading.text_recognizer import TextRecognizer
from crnn.kinds.loading import load_recognizer

CHARSET = Charset("abc")


def _crnn() -> CRNN:
    torch.manual_seed(0)
    return CRNN(ModelConfig(num_classes=CHARSET.num_classes, hidden_size=8, num_layers=1))


def _baseline() -> SegCharModel:
    torch.manual_seed(0)
    return SegCharModel(BaselineConfig(num_classes=CHARSET.num_classes, channels=(4, 8), embed_dim=8, hidden_size=8))


def _attention() -> AttentionRecognizerNet:
    torch.manual_seed(0)
    encoder = ModelConfig(hidden_size=8, num_layers=1)
    return build_attention_model(encoder, CHARSET.num_classes, hidden_size=8, attention_size=8, embedding_size=4)


MODELS = {"crnn": (_crnn, Recognizer), "baseline": (_baseline, BaselineRecognizer),
          "crnn_attention": (_attention, AttentionRecognizer)}


def test_the_built_in_kinds_are_registered() -> None:
    assert {"crnn", "baseline", "crnn_attention"} <= set(kinds())
    for name, (make, rec_cls) in MODELS.items():
        kind = get_kind(name)
        assert kind.name == name and kind.recognizer_class is rec_cls and kind_of(make()) is kind
        assert rec_cls.kind == name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_save_and_load_pair_for_every_kind(name: str, tmp_path: Path) -> None:
    make, rec_cls = MODELS[name]
    model = make().eval()
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, CHARSET, metadata={"note": name})
    assert read_header(path)["model_type"] == name
    ckpt = load_checkpoint(path)
    assert ckpt.model_type == name and type(ckpt.model) is type(model) and ckpt.model.config == model.config
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ckpt.model.state_dict()[k], v)
    rec = load_recognizer(path, threads=1, precision="fp32")
    assert type(rec) is rec_cls and isinstance(rec, TextRecognizer)
    image = np.full((32, 64), 255, np.uint8)
    image[8:24, 10:20] = 0
    preds = rec.recognize([image, image])
    assert len(preds) == 2 and preds[0] == preds[1]
    d = rec.describe()
    assert d["architecture"] == model.config.to_dict() and d["parameters"] > 0
    assert get_kind(name).summary(model.config)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_kind_can_be_demanded(name: str, tmp_path: Path) -> None:
    make, _ = MODELS[name]
    path = save_checkpoint(tmp_path / "m.safetensors", make(), CHARSET)
    other = next(k for k in MODELS if k != name)
    with pytest.raises(CheckpointError, match=f"is not {get_kind(other).title}"):
        load_checkpoint(path, kind=other)
    with pytest.raises(CheckpointError, match=f"is not {get_kind(other).title}"):
        MODELS[other][1](path)


def test_unknown_model_types_and_networks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="unknown model type 'zz'"):
        get_kind("zz")
    with pytest.raises(CheckpointError, match="not the network of a registered model kind"):
        kind_of(torch.nn.Linear(2, 2))


def test_registering_a_taken_name_is_an_error() -> None:
    crnn_kind = get_kind("crnn")
    assert register(crnn_kind) is crnn_kind  # the same kind again: harmless (a module imported twice)
    clash = ModelKind(**{**crnn_kind.__dict__, "title": "another"})
    with pytest.raises(ValueError, match="already registered"):
        register(clash)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_server_serves_every_kind(name: str, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Starlette's TestClient moving to httpx2
        from fastapi.testclient import TestClient
    import cv2

    from crnn_server import Settings, create_app

    path = save_checkpoint(tmp_path / f"{name}.safetensors", MODELS[name][0](), CHARSET, metadata={"name": name})
    image = np.full((32, 64), 255, np.uint8)
    image[8:24, 10:20] = 0
    png = cv2.imencode(".png", image)[1].tobytes()
    with TestClient(create_app(Settings(weights=str(path), threads=1))) as client:
        model = client.get("/v1/model").json()
        response = client.post("/v1/recognize", files=[("files", ("w.png", png, "image/png"))])
    assert model["name"] == name and model["architecture"] == MODELS[name][0]().config.to_dict()
    assert response.status_code == 200 and "text" in response.json()["results"][0]
