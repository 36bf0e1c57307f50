import pytest
import torch
from torch import nn

from crnn.errors import ConfigError
from crnn.model import (BACKBONES, CELLS, CRNN, ModelConfig, SliceMaxPool2d, build_model, count_macs,
                        count_parameters, fuse_for_inference)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("width", [16, 32, 100, 128, 256])
def test_output_shape_one_frame_per_four_pixels(backbone: str, width: int) -> None:
    model = build_model(backbone, hidden_size=32).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, width))
    assert out.shape == (2, width // 4, 96)
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, width // 4), atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
def test_recurrent_heads(cell: str, bidirectional: bool, layers: int) -> None:
    model = build_model("small", cell, hidden_size=16, num_layers=layers, bidirectional=bidirectional).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 32, 64), torch.tensor([16, 10, 4]))
    assert out.shape == (3, 16, 96)
    if cell != "none":
        assert model.rnn.bidirectional == bidirectional and model.rnn.num_layers == layers


def test_extra_padding_does_not_reach_the_recurrent_layers() -> None:
    model = build_model("small", hidden_size=16).eval()
    x = torch.randn(1, 1, 32, 64)
    little = torch.cat([x, torch.zeros(1, 1, 32, 64)], dim=3)
    lots = torch.cat([x, torch.zeros(1, 1, 32, 512)], dim=3)
    with torch.no_grad():
        a = model(little, torch.tensor([16]))[0, :16]
        b = model(lots, torch.tensor([16]))[0, :16]
        unpacked = model(lots)[0, :16]
    assert torch.allclose(a, b, atol=1e-5)
    # without lengths the backward direction runs through the padding and the result changes
    assert not torch.allclose(a, unpacked, atol=1e-5)


def test_frames_for_width() -> None:
    assert CRNN.frames_for_width(128) == 32
    assert CRNN.frames_for_width(130) == 33
    assert CRNN.frames_for_width(torch.tensor([4, 5, 8])).tolist() == [1, 2, 2]


def test_counts() -> None:
    small, full = build_model("small"), build_model("full")
    assert count_parameters(small) < count_parameters(full)
    assert 0 < count_macs(small) < count_macs(full)
    assert count_macs(full) > 5e8  # the paper's VGG stack is ~0.8 G multiply-adds at 32x128


@pytest.mark.parametrize("bad", [{"backbone": "huge"}, {"cell": "transformer"}, {"height": 48}])
def test_bad_config(bad: dict) -> None:
    with pytest.raises(ConfigError):
        ModelConfig(**bad)


def test_the_backbone_choices_are_the_built_stacks() -> None:
    from crnn.model import _BACKBONES

    assert BACKBONES == tuple(_BACKBONES)


def test_config_dict_round_trip_and_unknown_keys() -> None:
    c = ModelConfig(backbone="full", cell="gru", hidden_size=64)
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="colour"):
        ModelConfig.from_dict({**c.to_dict(), "colour": 1})


@pytest.mark.parametrize("kernel", [(2, 2), (2, 1), (1, 2), (1, 1)])
@pytest.mark.parametrize("size", [(8, 16), (7, 9)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_slice_max_pool_equals_max_pool(kernel: tuple[int, int], size: tuple[int, int], dtype: torch.dtype,
                                        channels_last: bool) -> None:
    x = torch.randn(3, 5, *size).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(SliceMaxPool2d(kernel)(x), nn.MaxPool2d(kernel, kernel)(x))


def test_slice_max_pool_refuses_other_kernels() -> None:
    with pytest.raises(ValueError, match="1 or 2"):
        SliceMaxPool2d((3, 3))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_fuse_for_inference_keeps_the_outputs(backbone: str) -> None:
    torch.manual_seed(0)
    model = build_model(backbone, hidden_size=16).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # random statistics, so that folding them changes the convs
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    fused = fuse_for_inference(model)
    kinds = {type(m) for m in fused.backbone}
    assert nn.BatchNorm2d not in kinds and nn.MaxPool2d not in kinds and SliceMaxPool2d in kinds
    x = torch.randn(2, 1, 32, 96)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, 3), nn.MaxPool2d(2, 1), nn.MaxPool2d(2, 2, padding=1),
                                  nn.MaxPool2d(2, 2, ceil_mode=True)])
def test_only_plain_two_by_two_pools_are_replaced(pool: nn.MaxPool2d) -> None:
    model = build_model("small", hidden_size=16)
    model.backbone = nn.Sequential(*model.backbone, pool)
    assert type(fuse_for_inference(model).backbone[-1]) is nn.MaxPool2d  # kept as it is
