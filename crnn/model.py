"""The CRNN network (Shi, Bai, Yao 2015): conv feature extractor, recurrent head, per-frame classifier.

The module is free of loss and charset: it maps images to per-frame log-probabilities.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from pydantic import ConfigDict, Field, field_validator
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from crnn.config import Config

# Horizontal downsampling of every backbone: one feature column (frame) per 4 input pixels.
WIDTH_STRIDE = 4

# Conv stacks as (out_channels, kernel, padding, batch_norm, pool) rows; pool is the (h, w) max-pool after it.
# "full" is the paper's VGG-style 7-conv stack (batch norm after every conv, which trains faster than the
# paper's two BN layers); "small" keeps the same shape with fewer channels for CPUs.
_BACKBONES: dict[str, list[tuple[int, tuple[int, int], tuple[int, int], bool, tuple[int, int] | None]]] = {
    "full": [
        (64, (3, 3), (1, 1), True, (2, 2)),
        (128, (3, 3), (1, 1), True, (2, 2)),
        (256, (3, 3), (1, 1), True, None),
        (256, (3, 3), (1, 1), True, (2, 1)),
        (512, (3, 3), (1, 1), True, None),
        (512, (3, 3), (1, 1), True, (2, 1)),
        (512, (2, 3), (0, 1), True, None),
    ],
    "small": [
        (32, (3, 3), (1, 1), True, (2, 2)),
        (64, (3, 3), (1, 1), True, (2, 2)),
        (96, (3, 3), (1, 1), True, None),
        (96, (3, 3), (1, 1), True, (2, 1)),
        (128, (3, 3), (1, 1), True, None),
        (128, (3, 3), (1, 1), True, (2, 1)),
        (256, (2, 3), (0, 1), True, None),
    ],
}
Backbone = Literal["full", "small"]  # the keys of _BACKBONES (tests/test_model.py checks they agree)
Cell = Literal["lstm", "gru", "rnn", "none"]
BACKBONES: tuple[str, ...] = get_args(Backbone)
CELLS: tuple[str, ...] = get_args(Cell)


class ModelConfig(Config):
    """Architecture of a CRNN; stored in every checkpoint so the model can be rebuilt from it alone."""

    model_config = ConfigDict(frozen=True)  # hashable, and a model's config cannot change under it
    kind = "model"

    num_classes: int = Field(96, ge=2)  # the CTC blank and at least one character
    backbone: Backbone = "small"
    cell: Cell = "lstm"
    hidden_size: int = Field(256, ge=1)
    num_layers: int = Field(2, ge=1)
    bidirectional: bool = True
    dropout: float = Field(0.1, ge=0.0, le=1.0)
    height: int = 32

    @field_validator("height")
    @classmethod
    def _height_is_32(cls, v: int) -> int:
        if v != 32:
            raise ValueError("the backbones need 32-pixel-high input")
        return v


def _make_backbone(name: str) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    in_ch = 1
    for out_ch, kernel, padding, bn, pool in _BACKBONES[name]:
        layers.append(nn.Conv2d(in_ch, out_ch, kernel, padding=padding, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
        if pool is not None:
            layers.append(nn.MaxPool2d(pool, pool))
        in_ch = out_ch
    return nn.Sequential(*layers), in_ch


class CRNN(nn.Module):
    """Images (B, 1, 32, W) -> per-frame log-probabilities (B, W // 4, num_classes)."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.backbone, feat = _make_backbone(c.backbone)
        self.rnn: nn.RNNBase | None
        if c.cell == "none":
            self.rnn = None
            head_in = feat
        else:
            rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[c.cell]
            self.rnn = rnn_cls(
                feat,
                c.hidden_size,
                num_layers=c.num_layers,
                bidirectional=c.bidirectional,
                batch_first=True,
                dropout=c.dropout if c.num_layers > 1 else 0.0,
            )
            head_in = c.hidden_size * (2 if c.bidirectional else 1)
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(head_in, c.num_classes)

    @staticmethod
    def frames_for_width(width: Tensor | int) -> Tensor | int:
        """Number of output frames that see real pixels for an image of ``width`` pixels (before padding)."""
        if isinstance(width, Tensor):
            return torch.div(width + WIDTH_STRIDE - 1, WIDTH_STRIDE, rounding_mode="floor")
        return -(-int(width) // WIDTH_STRIDE)

    def features(self, images: Tensor) -> Tensor:
        """Conv feature columns (B, T, F) of images (B, 1, 32, W), T = W // 4."""
        f = self.backbone(images)  # (B, F, 1, T)
        return f.squeeze(2).transpose(1, 2)

    def forward(self, images: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Log-probabilities (B, T, C) of images (B, 1, 32, W); ``lengths`` (B,) valid frames per image.

        With ``lengths`` the recurrent layers see only each image's own frames (padding is packed away),
        so a result does not depend on how much padding its batch added.
        """
        return self.sequence_head(self.features(images), lengths)

    def sequence_head(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Log-probabilities (B, T, C) from conv feature columns (B, T, F): the recurrent layers and the classifier."""
        x = self.classifier(self.dropout(self.context(x, lengths)))
        return x.float().log_softmax(-1)

    def context(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The frames (B, T, H) the classifier reads, from conv feature columns (B, T, F): the recurrent layers
        (packed with ``lengths``). The attention decoder (crnn/attention_model.py) reads these too."""
        if self.rnn is not None:
            total = x.shape[1]
            if lengths is not None and bool((lengths < total).any()):
                packed = pack_padded_sequence(
                    x, lengths.clamp(1, total).cpu(), batch_first=True, enforce_sorted=False
                )
                out, _ = self.rnn(packed)
                x, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
            else:
                x, _ = self.rnn(x)
        return x


def build_model(
    backbone: str = "small", cell: str = "lstm", num_classes: int = 96, **kwargs: Any
) -> CRNN:
    """A CRNN with clear defaults: the small backbone and a 2-layer bidirectional LSTM."""
    return CRNN(ModelConfig(num_classes=num_classes, backbone=backbone, cell=cell, **kwargs))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: CRNN, width: int = 128) -> int:
    """Multiply-accumulates of one forward pass on a 32 x ``width`` image (convs, recurrent cells, classifier)."""
    macs = 0
    hooks = []

    def conv_hook(m: nn.Conv2d, _inp: Any, out: Tensor) -> None:
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: Any, out: Tensor) -> None:
        nonlocal macs
        macs += out.numel() * m.in_features

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, model.config.height, width))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    if model.rnn is not None:
        c = model.config
        gates = {"lstm": 4, "gru": 3, "rnn": 1}[c.cell]
        dirs = 2 if c.bidirectional else 1
        frames = width // WIDTH_STRIDE
        in_size = model.rnn.input_size
        for _layer in range(c.num_layers):
            macs += frames * dirs * gates * c.hidden_size * (in_size + c.hidden_size)
            in_size = c.hidden_size * dirs
    return macs


class SliceMaxPool2d(nn.Module):
    """Max pooling (B, C, H, W) -> (B, C, H // kh, W // kw) for kernel = stride in {1, 2} per axis, as the
    maximum of strided slices: the same values as nn.MaxPool2d, 2-4x faster on CPU (it computes no indices)."""

    def __init__(self, kernel: tuple[int, int]) -> None:
        super().__init__()
        if any(k not in (1, 2) for k in kernel):
            raise ValueError(f"SliceMaxPool2d takes kernels of 1 or 2 per axis, got {kernel}")
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        """Pooled x; a last odd row or column is dropped, as nn.MaxPool2d does."""
        if self.kernel[0] == 2:
            h = x.shape[2] - x.shape[2] % 2
            x = torch.maximum(x[:, :, 0:h:2], x[:, :, 1:h:2])
        if self.kernel[1] == 2:
            w = x.shape[3] - x.shape[3] % 2
            x = torch.maximum(x[:, :, :, 0:w:2], x[:, :, :, 1:w:2])
        return x


def _pair(v: Any) -> tuple[Any, Any]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # type: ignore[return-value]


def _slice_pool_for(m: nn.Module) -> nn.Module:
    """SliceMaxPool2d for a plain 1-or-2 nn.MaxPool2d (kernel = stride, no padding), else ``m`` itself."""
    if not isinstance(m, nn.MaxPool2d):
        return m
    kernel, stride = _pair(m.kernel_size), _pair(m.stride)
    plain = kernel == stride and _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1) and not m.ceil_mode
    return SliceMaxPool2d(kernel) if plain and set(kernel) <= {1, 2} else m


def fuse_for_inference(model: CRNN) -> CRNN:
    """A copy of ``model`` in eval mode, faster with the same outputs: each BatchNorm folded into its conv,
    each 2x2 / 2x1 max pool computed as SliceMaxPool2d."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    layers = list(fused.backbone)
    out: list[nn.Module] = []
    i = 0
    while i < len(layers):
        if isinstance(layers[i], nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d):
            out.append(fuse_conv_bn_eval(layers[i], layers[i + 1]))
            i += 2
        else:
            out.append(_slice_pool_for(layers[i]))
            i += 1
    fused.backbone = nn.Sequential(*out)
    return fused


def describe(model: CRNN, width: int = 128) -> dict[str, Any]:
    """Architecture, parameter count and multiply-adds of ``model`` for a 32 x ``width`` input."""
    return {
        "architecture": model.config.to_dict(),
        "parameters": count_parameters(model),
        "input": f"1x{model.config.height}x{width}",
        "frames": width // 4,
        "multiply_adds": count_macs(model, width),
    }
