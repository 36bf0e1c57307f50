import pytest
import torch
from torch import nn

from crnn.errors import ConfigError
from crnn.models.crnn import (BACKBONES, CELLS, CRNN, MixingBlock, ModelConfig, ResidualBlock, SliceMaxPool2d, build_model,
                        count_macs, count_parameters, fuse_for_inference)

RESIDUAL = ("resnet", "resnet_dw")
# Every backbone x height x head that exists: the plain stacks at 32 px, the residual ones at 32 and 48 px,
# each with and without mixing blocks, and a mixing-only head (no recurrent layers).
ARCHITECTURES = [
    {"backbone": b, "height": h, "mixer_layers": m, "cell": cell}
    for b in BACKBONES for h in ((32, 48) if b in RESIDUAL else (32,)) for m in (0, 2) for cell in ("lstm", "none")
]


def _arch_id(a: dict) -> str:
    return f"{a['backbone']}-h{a['height']}-mix{a['mixer_layers']}-{a['cell']}"


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=_arch_id)
@pytest.mark.parametrize("width", [16, 100, 256])
def test_output_shape_one_frame_per_four_pixels(arch: dict, width: int) -> None:
    model = build_model(hidden_size=32, **arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, arch["height"], width), torch.tensor([width // 4, max(1, width // 8)]))
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


@pytest.mark.parametrize("arch", [{}, {"backbone": "resnet", "mixer_layers": 2},
                                  {"backbone": "resnet_dw", "mixer_layers": 1, "height": 48}], ids=str)
def test_extra_padding_does_not_reach_the_recurrent_layers(arch: dict) -> None:
    torch.manual_seed(0)
    model = build_model(hidden_size=16, **arch).eval()
    h = model.config.height
    x = torch.randn(1, 1, h, 64)
    little = torch.cat([x, torch.zeros(1, 1, h, 64)], dim=3)
    lots = torch.cat([x, torch.zeros(1, 1, h, 512)], dim=3)
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


def test_counts_of_the_new_layers() -> None:
    resnet, mixed = build_model("resnet"), build_model("resnet", mixer_layers=2)
    tall = build_model("resnet", mixer_layers=2, height=48)
    # Two blocks of 256 features, 32 frames: per frame qkv 3*256^2 + proj 256^2 + MLP 2*2*256^2, plus the
    # two attention products 2*32*256 per frame.
    per_block = 32 * (8 * 256 * 256) + 2 * 32 * 32 * 256
    assert count_macs(mixed) - count_macs(resnet) == 2 * per_block
    assert count_macs(tall) > count_macs(mixed) and count_parameters(tall) > count_parameters(mixed)
    assert count_parameters(mixed) - count_parameters(resnet) == 2 * (
        2 * 2 * 256 + 3 * 256 * 256 + 3 * 256 + 256 * 256 + 256 + 2 * 256 * 256 + 512 + 2 * 256 * 256 + 256)


@pytest.mark.parametrize("bad", [{"backbone": "huge"}, {"cell": "transformer"}, {"height": 40}, {"height": 48},
                                 {"backbone": "full", "height": 48}, {"mixer_layers": 2, "mixer_heads": 3},
                                 {"mixer_layers": -1}])
def test_bad_config(bad: dict) -> None:
    with pytest.raises(ConfigError):
        ModelConfig(**bad)


def test_the_backbone_choices_are_the_built_stacks() -> None:
    from crnn.models.crnn import _BACKBONES, _RESIDUAL_STAGES

    assert BACKBONES == tuple(_BACKBONES) + tuple(_RESIDUAL_STAGES)
    assert RESIDUAL == tuple(_RESIDUAL_STAGES)


def test_the_classic_crnn_keeps_its_weight_names() -> None:
    # No mixing blocks: no `mixer` entry at all, so the shipped and older checkpoints load as they are.
    names = set(build_model("small").state_dict())
    assert not any(n.startswith("mixer") for n in names)
    assert {"backbone.0.weight", "classifier.weight", "rnn.weight_ih_l0"} <= names


@pytest.mark.parametrize("arch", [{"backbone": "resnet"}, {"backbone": "resnet", "mixer_layers": 2},
                                  {"backbone": "resnet_dw", "height": 48, "mixer_layers": 1, "cell": "none"}], ids=str)
def test_a_tiny_model_of_each_new_kind_learns(arch: dict) -> None:
    # A few dozen CPU steps on four fixed images: the CTC loss must fall well below where it started.
    torch.manual_seed(0)
    model = build_model(hidden_size=32, dropout=0.0, **arch).train()
    images = torch.randn(4, 1, model.config.height, 64)
    lengths = torch.tensor([16, 16, 12, 8])
    targets = torch.randint(1, 96, (4, 4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        lp = model(images, lengths)
        loss = torch.nn.functional.ctc_loss(lp.transpose(0, 1), targets, lengths, torch.full((4,), 4))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mixing_block_ignores_masked_frames(dtype: torch.dtype) -> None:
    # The frames of an image give the same output whatever follows them in the padded batch.
    torch.manual_seed(0)
    block = MixingBlock(32, 4).eval().to(dtype)
    x = torch.randn(1, 10, 32, dtype=dtype)
    padded = torch.cat([x, torch.randn(1, 6, 32, dtype=dtype) * 5], dim=1)
    valid = torch.arange(16)[None] < 10
    with torch.no_grad():
        torch.testing.assert_close(block(padded, valid)[:, :10], block(x), atol=1e-5 if dtype == torch.float32 else 2e-2,
                                   rtol=0)
        assert not torch.allclose(block(padded)[:, :10].float(), block(x).float(), atol=1e-3)


def test_residual_block_shapes_and_shortcut() -> None:
    same, wider = ResidualBlock(16, 16), ResidualBlock(16, 24, depthwise=True)
    x = torch.randn(2, 16, 4, 10)
    assert same(x).shape == (2, 16, 4, 10) and isinstance(same.shortcut, nn.Identity)
    assert wider(x).shape == (2, 24, 4, 10) and isinstance(wider.shortcut, nn.Sequential)
    assert any(isinstance(m, nn.Conv2d) and m.groups == 16 for m in wider.body)  # depthwise


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
    model = build_model(backbone, hidden_size=16, mixer_layers=1 if backbone in RESIDUAL else 0).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # random statistics, so that folding them changes the convs
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    fused = fuse_for_inference(model)
    kinds = {type(m) for m in fused.backbone.modules()}  # inside residual blocks too
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


def test_the_dict_of_a_model_without_mixing_blocks_has_no_mixing_keys() -> None:
    classic, mixed = ModelConfig(backbone="resnet"), ModelConfig(backbone="resnet", mixer_layers=2, mixer_heads=8)
    assert "mixer_layers" not in classic.to_dict() and "mixer_heads" not in classic.to_dict()
    assert mixed.to_dict()["mixer_layers"] == 2 and mixed.to_dict()["mixer_heads"] == 8
    for c in (classic, mixed):
        assert ModelConfig.from_dict(c.to_dict()) == c
