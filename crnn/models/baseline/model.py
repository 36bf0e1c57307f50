"""SegCharModel: a CNN embeds each character crop, a bidirectional RNN reads the crops, a softmax per crop.

The lecture's segmentation baseline. Class indices are the Charset's (1..len(chars)); index 0, the CTC
blank in a CRNN, is here the padding label of positions past a word's last segment and is never predicted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import cv2
import numpy as np
import torch
from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from crnn.config import Config
from crnn.models.crnn import count_parameters

PAD: int = 0
Cell = Literal["lstm", "gru"]
CELLS: tuple[str, ...] = get_args(Cell)


class BaselineConfig(Config):
    """Architecture of a SegCharModel; stored in its checkpoint so the model can be rebuilt from it alone."""

    model_config = ConfigDict(frozen=True)  # hashable, and a model's config cannot change under it
    kind = "baseline"

    num_classes: int = Field(96, ge=2)  # the padding label and at least one character
    crop_size: int = Field(32, ge=1)
    # One conv block (conv, batch norm, ReLU, 2x2 max-pool) per entry.
    channels: tuple[Annotated[int, Field(ge=1)], ...] = Field((32, 64, 128), min_length=1)
    embed_dim: int = Field(128, ge=1)
    cell: Cell = "lstm"
    hidden_size: int = Field(128, ge=1)
    num_layers: int = Field(1, ge=1)
    bidirectional: bool = True
    dropout: float = Field(0.1, ge=0.0, le=1.0)

    @field_validator("channels")
    @classmethod
    def _crop_fits_the_pools(cls, v: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        # Each conv block halves the crop, so the crop must halve cleanly once per channel entry.
        crop = info.data.get("crop_size")  # absent when crop_size itself was refused
        if crop is not None and crop % 2 ** len(v) != 0:
            raise ValueError(f"crop_size {crop} must be divisible by 2**{len(v)} (one 2x2 pool per channel entry)")
        return v


def crops_from_boxes(image: np.ndarray, boxes: np.ndarray, size: int, pad_value: float | None = None) -> np.ndarray:
    """Square crops (N, size, size) float32 of an image (H, W), one per box (N, 4) x0, y0, x1, y1.

    A crop spans the box's columns and the image's full height: where a letter sits on the line and how tall
    it is (o vs O, p vs P, ' vs ,) survive. It is scaled to ``size`` px high keeping its aspect (an i stays
    thin), squeezed only when wider than square, and centred on ``pad_value`` (default: the border median,
    i.e. the background).
    """
    h, w = image.shape
    img = image.astype(np.float32)
    if pad_value is None:
        pad_value = float(np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])))
    out = np.full((len(boxes), size, size), pad_value, np.float32)
    for i, (x0, _, x1, _) in enumerate(np.asarray(boxes, np.float64)):
        a = int(np.clip(np.floor(x0), 0, w - 1))
        b = int(np.clip(np.ceil(x1), a + 1, w))
        piece = img[:, a:b]
        new_w = int(min(size, max(1, round((b - a) * size / h))))
        resized = cv2.resize(piece, (new_w, size), interpolation=cv2.INTER_AREA if h > size else cv2.INTER_LINEAR)
        left = (size - new_w) // 2
        out[i, :, left : left + new_w] = resized.reshape(size, new_w)
    return out


class SegCharModel(nn.Module):
    """Crops (B, N, 1, S, S) and segment counts (B,) -> per-segment logits (B, N, num_classes)."""

    def __init__(self, config: BaselineConfig | None = None) -> None:
        super().__init__()
        self.config = config or BaselineConfig()
        c = self.config
        layers: list[nn.Module] = []
        in_ch = 1
        for out_ch in c.channels:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            in_ch = out_ch
        self.cnn = nn.Sequential(*layers)
        side = c.crop_size // 2 ** len(c.channels)
        self.embed = nn.Sequential(nn.Flatten(), nn.Dropout(c.dropout), nn.Linear(in_ch * side * side, c.embed_dim),
                                   nn.ReLU(inplace=True))
        rnn_cls = nn.LSTM if c.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(c.embed_dim, c.hidden_size, num_layers=c.num_layers, batch_first=True,
                           bidirectional=c.bidirectional, dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.classifier = nn.Linear(c.hidden_size * (2 if c.bidirectional else 1), c.num_classes)

    def embed_crops(self, crops: Tensor) -> Tensor:
        """Crop embeddings (M, embed_dim) of crops (M, 1, S, S)."""
        return self.embed(self.cnn(crops))

    def forward(self, crops: Tensor, lengths: Tensor) -> Tensor:
        """Logits (B, N, C) of crops (B, N, 1, S, S); positions at or past lengths[b] are padding (zeros)."""
        b, n = crops.shape[:2]
        valid = torch.arange(n, device=crops.device)[None, :] < lengths.to(crops.device)[:, None]
        # Only real crops go through the CNN: padding would cost time and shift batch-norm statistics.
        emb = crops.new_zeros(b, n, self.config.embed_dim)
        if valid.any():
            emb[valid] = self.embed_crops(crops[valid]).to(emb.dtype)  # bf16 under autocast
        # Packed sequences: the backward direction starts at each word's own last segment, not at padding,
        # so a word's result does not depend on the rest of its batch.
        lens = lengths.cpu().clamp(min=1)
        packed = pack_padded_sequence(emb, lens, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=n)
        logits = self.classifier(out)
        return logits.masked_fill(~valid[..., None], 0.0)

    @staticmethod
    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy over real segments of logits (B, N, C) against targets (B, N) (PAD ignored)."""
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)


def collate_crops(crop_list: list[np.ndarray], size: int) -> tuple[Tensor, Tensor]:
    """Pad per-word crops [(N_i, S, S)] to a batch (B, Nmax, 1, S, S) float32 and counts (B,)."""
    lengths = torch.tensor([len(c) for c in crop_list], dtype=torch.long)
    n = max(1, int(lengths.max())) if len(crop_list) else 1
    batch = torch.zeros(len(crop_list), n, 1, size, size)
    for i, c in enumerate(crop_list):
        if len(c):
            batch[i, : len(c), 0] = torch.from_numpy(c)
    return batch, lengths


def describe(model: SegCharModel, width: int = 128) -> dict[str, Any]:
    """Architecture and parameter count (a per-width cost has no meaning here: segments, not frames)."""
    return {"architecture": model.config.to_dict(), "parameters": count_parameters(model)}
