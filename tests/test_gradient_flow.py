"""crnn_training.gradient_flow: the unrolled top layer reproduces the model, and the norms are well formed."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from crnn.models.crnn import build_model
from crnn_training.gradient_flow import hidden_gradient_norms, last_frame_log_probs


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
def test_unrolled_top_layer_matches_the_model(cell: str, bidirectional: bool, layers: int) -> None:
    torch.manual_seed(0)
    model = build_model("small", cell=cell, hidden_size=16, num_layers=layers, bidirectional=bidirectional).eval()
    images = torch.randn(3, 1, 32, 64)
    with torch.no_grad():
        expected = copy.deepcopy(model).double()(images.double())[:, -1]  # (B, C) at the last frame
    logp, states = last_frame_log_probs(copy.deepcopy(model).double().eval(), images)
    assert len(states) == 64 // 4 and states[0].shape == (3, 16)
    # the model returns float32 log-probs (computed in float64 here, cast at the end)
    torch.testing.assert_close(logp.detach().float(), expected, rtol=1e-5, atol=1e-5)


def test_hidden_gradient_norms_shape_and_start() -> None:
    torch.manual_seed(0)
    model = build_model("small", cell="rnn", hidden_size=16, num_layers=2)
    norms = hidden_gradient_norms(model, torch.randn(4, 1, 32, 80), max_k=12)
    assert norms.shape == (13,) and norms[0] == pytest.approx(1.0)
    assert np.all(np.isfinite(norms)) and np.all(norms > 0)


def test_a_model_without_recurrence_is_refused() -> None:
    with pytest.raises(ValueError, match="no recurrent layer"):
        hidden_gradient_norms(build_model("small", cell="none"), torch.randn(1, 1, 32, 32), 3)
