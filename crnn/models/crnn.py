"""The CRNN network (Shi, Bai, Yao 2015): conv feature extractor, recurrent head, per-frame classifier.

The module is free of loss and charset: it maps images to per-frame log-probabilities.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field, model_validator
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from crnn.config import Config, FieldProblem

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
# Residual stacks (issue 19): (out_channels, blocks, pool after the stage) per stage, after a 3x3 stem of 32
# channels and a 2x2 pool; blocks 0 is one plain conv (where the maps are largest and a block costs most).
# A last (H/16 x 3) conv to 256 channels collapses the height, as in the plain stacks. "resnet" uses basic
# blocks (two 3x3 convs); "resnet_dw" depthwise-separable ones (3x3 depthwise + 1x1 pointwise, twice) on
# wider stages: fewer multiply-adds, but depthwise convs run slowly on CPUs (docs/models.md).
_RESIDUAL_STAGES: dict[str, list[tuple[int, int, tuple[int, int]]]] = {
    "resnet": [(64, 0, (2, 2)), (96, 1, (2, 1)), (128, 2, (2, 1))],
    "resnet_dw": [(64, 0, (2, 2)), (128, 2, (2, 1)), (256, 2, (2, 1))],
}
FEATURES = 256  # channels of every backbone's last conv: the width of a frame
Backbone = Literal["full", "small", "resnet", "resnet_dw"]  # tests/test_model.py checks they are the built stacks
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
    height: Literal[32, 48] = 32  # input height; every backbone collapses it to one row of frames
    # Global mixing blocks (pre-norm multi-head self-attention over the frames + MLP, sinusoidal positions)
    # between the CNN and the recurrent head; 0: none (the classic CRNN).
    mixer_layers: int = Field(0, ge=0, le=12)
    mixer_heads: int = Field(4, ge=1)

    def to_dict(self) -> dict[str, Any]:
        """Every field, except the mixing keys of a model without mixing blocks: a classic CRNN's dict (its
        checkpoint header, the API's /v1/model) is byte for byte what it was before they existed."""
        d = super().to_dict()
        if not self.mixer_layers:
            del d["mixer_layers"], d["mixer_heads"]
        return d

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        # Named by key, so that a training config's model section reports 'model.height' (crnn_training.config).
        if self.height != 32 and self.backbone not in _RESIDUAL_STAGES:
            raise FieldProblem("height", f"the {self.backbone} backbone needs 32-pixel-high input (height 48 needs a "
                               f"residual one: {', '.join(_RESIDUAL_STAGES)})", self.height)
        if self.mixer_layers and FEATURES % self.mixer_heads:
            raise FieldProblem("mixer_heads", f"mixer_heads must divide the {FEATURES} features of a frame",
                               self.mixer_heads)
        return self


def _conv_bn(in_ch: int, out_ch: int, kernel: tuple[int, int] | int = 3, groups: int = 1) -> list[nn.Module]:
    k = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    return [nn.Conv2d(in_ch, out_ch, k, padding=(k[0] // 2, k[1] // 2), groups=groups, bias=False),
            nn.BatchNorm2d(out_ch)]


class ResidualBlock(nn.Module):
    """relu(body(x) + shortcut(x)) on (B, C_in, H, W) -> (B, C_out, H, W); body: two 3x3 convs, or with
    ``depthwise`` two depthwise-separable ones; shortcut: identity, or a 1x1 conv + BN when channels change."""

    def __init__(self, in_ch: int, out_ch: int, depthwise: bool = False) -> None:
        super().__init__()
        if depthwise:
            body = [*_conv_bn(in_ch, in_ch, 3, in_ch), nn.ReLU(inplace=True), *_conv_bn(in_ch, out_ch, 1),
                    nn.ReLU(inplace=True), *_conv_bn(out_ch, out_ch, 3, out_ch), nn.ReLU(inplace=True),
                    *_conv_bn(out_ch, out_ch, 1)]
        else:
            body = [*_conv_bn(in_ch, out_ch), nn.ReLU(inplace=True), *_conv_bn(out_ch, out_ch)]
        self.body = nn.Sequential(*body)
        self.shortcut = nn.Sequential(*_conv_bn(in_ch, out_ch, 1)) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        return torch.relu(self.body(x) + self.shortcut(x))


def _make_backbone(name: str, height: int = 32) -> tuple[nn.Sequential, int]:
    if name in _RESIDUAL_STAGES:
        return _make_residual_backbone(name, height)
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


def _make_residual_backbone(name: str, height: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = [*_conv_bn(1, 32), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2)]
    in_ch = 32
    for out_ch, blocks, pool in _RESIDUAL_STAGES[name]:
        if blocks == 0:
            layers += [*_conv_bn(in_ch, out_ch), nn.ReLU(inplace=True)]
        for _ in range(blocks):
            layers.append(ResidualBlock(in_ch, out_ch, depthwise=name == "resnet_dw"))
            in_ch = out_ch
        in_ch = out_ch
        layers.append(nn.MaxPool2d(pool, pool))
    # Height is now height / 16 (2 or 3 rows): one (rows x 3) conv makes it a single row of frames.
    layers += [nn.Conv2d(in_ch, FEATURES, (height // 16, 3), padding=(0, 1), bias=False), nn.BatchNorm2d(FEATURES),
               nn.ReLU(inplace=True)]
    return nn.Sequential(*layers), FEATURES


def sinusoidal_positions(frames: int, dim: int, device: torch.device | None = None) -> Tensor:
    """The transformer's fixed sine/cosine position code (frames, dim): defined for any width, so a model
    trained on short words still places the frames of a long one."""
    pos = torch.arange(frames, dtype=torch.float32, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    return torch.stack([torch.sin(pos * freq), torch.cos(pos * freq)], dim=2).flatten(1)


class MixingBlock(nn.Module):
    """Global mixing (SVTR-style): pre-norm multi-head self-attention over the frames, then an MLP, each
    residual; (B, T, D) -> (B, T, D). Padded frames are masked out of the keys, so a frame's result does
    not depend on how much padding its batch added."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """(B, T, D) -> (B, T, D); ``valid`` (B, T) bool marks each image's own frames (None: all)."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = valid[:, None, None, :] if valid is not None else None
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class CRNN(nn.Module):
    """Images (B, 1, 32, W) -> per-frame log-probabilities (B, W // 4, num_classes)."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.backbone, feat = _make_backbone(c.backbone, c.height)
        # Absent (not an empty list) without mixing blocks, so the classic CRNN's state dict is unchanged.
        self.mixer: nn.ModuleList | None = None
        if c.mixer_layers:
            self.mixer = nn.ModuleList(MixingBlock(feat, c.mixer_heads, c.dropout) for _ in range(c.mixer_layers))
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
        """Conv feature columns (B, T, F) of images (B, 1, H, W), T = W // 4."""
        f = self.backbone(images)  # (B, F, 1, T)
        return f.squeeze(2).transpose(1, 2)

    def forward(self, images: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Log-probabilities (B, T, C) of images (B, 1, H, W); ``lengths`` (B,) valid frames per image.

        With ``lengths`` the recurrent layers see only each image's own frames (padding is packed away),
        so a result does not depend on how much padding its batch added.
        """
        return self.sequence_head(self.features(images), lengths)

    def sequence_head(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Log-probabilities (B, T, C) from conv feature columns (B, T, F): the mixing blocks, the recurrent
        layers and the classifier."""
        x = self.classifier(self.dropout(self.context(x, lengths)))
        return x.float().log_softmax(-1)

    def context(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The frames (B, T, H) the classifier reads, from conv feature columns (B, T, F): the mixing blocks
        (padding masked with ``lengths``) and the recurrent layers (packed with ``lengths``). The attention
        decoder (crnn/models/attention.py) reads these too."""
        if self.mixer is not None:
            total = x.shape[1]
            valid = None
            if lengths is not None and bool((lengths < total).any()):
                valid = torch.arange(total, device=x.device)[None, :] < lengths.clamp(1, total)[:, None].to(x.device)
            x = x + sinusoidal_positions(total, x.shape[2], x.device).to(x.dtype)
            for block in self.mixer:
                x = block(x, valid)
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
    """Multiply-accumulates of one forward pass on a height x ``width`` image (convs, mixing blocks, recurrent
    cells, classifier)."""
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
    c = model.config
    frames = width // WIDTH_STRIDE
    if model.mixer is not None:  # the two attention products (Q K^T and A V); the hooks saw the linear layers
        macs += len(model.mixer) * 2 * frames * frames * model.mixer[0].qkv.in_features
    if model.rnn is not None:
        gates = {"lstm": 4, "gru": 3, "rnn": 1}[c.cell]
        dirs = 2 if c.bidirectional else 1
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


def _fused(seq: nn.Sequential) -> nn.Sequential:
    """``seq`` with each conv + BatchNorm pair folded into one conv and plain max pools as SliceMaxPool2d;
    residual blocks are fused inside."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    layers = list(seq)
    out: list[nn.Module] = []
    i = 0
    while i < len(layers):
        m = layers[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d):
            out.append(fuse_conv_bn_eval(m, layers[i + 1]))
            i += 2
            continue
        if isinstance(m, ResidualBlock):
            m.body = _fused(m.body)
            if isinstance(m.shortcut, nn.Sequential):
                m.shortcut = _fused(m.shortcut)
        out.append(_slice_pool_for(m))
        i += 1
    return nn.Sequential(*out)


def fuse_for_inference(model: CRNN) -> CRNN:
    """A copy of ``model`` in eval mode, faster with the same outputs: each BatchNorm folded into its conv,
    each 2x2 / 2x1 max pool computed as SliceMaxPool2d."""
    import copy

    fused = copy.deepcopy(model).eval()
    fused.backbone = _fused(fused.backbone)
    return fused


def describe(model: CRNN, width: int = 128) -> dict[str, Any]:
    """Architecture, parameter count and multiply-adds of ``model`` for a height x ``width`` input."""
    return {
        "architecture": model.config.to_dict(),
        "parameters": count_parameters(model),
        "input": f"1x{model.config.height}x{width}",
        "frames": width // 4,
        "multiply_adds": count_macs(model, width),
    }
