"""The vanishing-gradient picture, measured on trained CRNNs.

For a word image, take the loss at the last frame T (cross-entropy of that frame's distribution against
the model's own best-path label there) and its gradient with respect to the forward hidden state of the
top recurrent layer k frames earlier, h_{T-k}. Only that layer's forward recurrence carries the loss at T
back to h_{T-k} (the classifier reads frame T alone), so ||dL_T/dh_{T-k}|| against k shows how far back a
trained cell still passes gradient. Computed in float64; norms are relative to k = 0 and averaged (geometric
mean) over images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from crnn.models.crnn import CRNN

_CELLS: dict[type, type] = {nn.LSTM: nn.LSTMCell, nn.GRU: nn.GRUCell, nn.RNN: nn.RNNCell}


def _layer(rnn: nn.RNNBase, layer: int, reverse: bool) -> dict[str, Tensor]:
    """The weights of one layer and direction of a multi-layer RNN, named as a single-layer cell's."""
    sfx = f"_l{layer}" + ("_reverse" if reverse else "")
    return {name: getattr(rnn, name + sfx) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}


def _single_layer(rnn: nn.RNNBase, layer: int) -> nn.RNNBase:
    """Layer ``layer`` of ``rnn`` (both directions) as its own one-layer module with the same weights."""
    kwargs = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
    in_size = rnn.input_size if layer == 0 else rnn.hidden_size * (2 if rnn.bidirectional else 1)
    one = type(rnn)(in_size, rnn.hidden_size, num_layers=1, bidirectional=rnn.bidirectional, batch_first=True, **kwargs)
    state = {}
    for reverse in (False, True) if rnn.bidirectional else (False,):
        for name, w in _layer(rnn, layer, reverse).items():
            state[f"{name}_l0" + ("_reverse" if reverse else "")] = w.detach().clone()
    one.load_state_dict(state)
    return one.to(dtype=next(rnn.parameters()).dtype)


def last_frame_log_probs(model: CRNN, images: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Log-probabilities (B, C) at the last frame and the top layer's forward states [(B, H)] * T, in float64.

    The top recurrent layer's forward direction is unrolled cell by cell so each state is a graph node
    (``retain_grad`` is set on each); everything else runs as in ``model`` (eval mode).
    """
    rnn = model.rnn
    if rnn is None:
        raise ValueError("the model has no recurrent layer")
    with torch.no_grad():
        x = model.features(images.double())  # (B, T, F)
        for layer in range(rnn.num_layers - 1):
            x, _ = _single_layer(rnn, layer)(x)
    top = rnn.num_layers - 1
    cell_cls = _CELLS[type(rnn)]
    kwargs = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}

    def cell_for(reverse: bool) -> nn.RNNCellBase:
        cell = cell_cls(x.shape[-1], rnn.hidden_size, **kwargs).double()
        cell.load_state_dict({k: v.detach().clone() for k, v in _layer(rnn, top, reverse).items()})
        return cell

    forward = cell_for(False)
    batch, frames = x.shape[:2]
    zero = x.new_zeros(batch, rnn.hidden_size)
    h, c = zero, zero
    states: list[Tensor] = []
    for t in range(frames):
        if isinstance(forward, nn.LSTMCell):
            h, c = forward(x[:, t], (h, c))
        else:
            h = forward(x[:, t], h)
        h.retain_grad()
        states.append(h)
    last = states[-1]
    if rnn.bidirectional:
        backward = cell_for(True)
        with torch.no_grad():  # the backward direction at frame T has read frame T alone
            hb = backward(x[:, -1], (zero, zero))[0] if isinstance(backward, nn.LSTMCell) else backward(x[:, -1], zero)
        last = torch.cat([last, hb], dim=-1)
    return model.classifier(last).log_softmax(-1), states


def hidden_gradient_norms(model: CRNN, images: Tensor, max_k: int) -> np.ndarray:
    """||dL_T / dh_{T-k}|| for k = 0..max_k (relative to k = 0, geometric mean over images (B, 1, 32, W)).

    ``model`` is converted to float64 in place: pass a copy to keep the original.
    """
    model = model.double().eval()
    logp, states = last_frame_log_probs(model, images)
    frames = len(states)
    # Images are independent, so one backward pass of the summed losses gives every image's gradients.
    nn.functional.nll_loss(logp, logp.argmax(-1), reduction="sum").backward()
    norms = torch.stack([states[frames - 1 - k].grad.norm(dim=-1) for k in range(min(max_k, frames - 1) + 1)], 1)
    rel = (norms / norms[:, :1]).clamp_min(1e-300)
    return torch.exp(torch.log(rel).mean(0)).numpy()
