"""OrientationNet, the tiny CNN of crnn.reading.orientation (its file format: crnn/checkpoints/orientation_file.py)."""

from __future__ import annotations

import torch
from torch import nn


class OrientationNet(nn.Module):
    """(B, 1, 32, 128) standardised crops (long side horizontal) -> (B, 5) orientation logits.

    A stride-2 stem, then conv + BN + ReLU + max-pool stages, flattened into one linear layer: with the default
    channels 29,685 parameters and ~3.7 M multiply-adds a crop.
    """

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32, 64), num_classes: int = 5,
                 input_size: tuple[int, int] = (32, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels[0], 4, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True)]
        c_in = channels[0]
        for c in channels[1:]:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c
        self.channels, self.num_classes, self.input_size = tuple(channels), num_classes, tuple(input_size)
        self.features = nn.Sequential(*layers)
        cells = (input_size[0] // 2 ** len(channels)) * (input_size[1] // 2 ** len(channels))
        # Flattened, not averaged: where the ink lies in the square (which end of a word, top or bottom)
        # is part of the answer.
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(c_in * cells, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of inputs (B, 1, *input_size)."""
        return self.classifier(self.features(x))
