"""What `crnn train` optimises, chosen by the config's ``decoder`` section (docs/attention.md).

* ``decoder.type: ctc`` -- the CRNN (kind ``crnn``) with the CTC loss;
* ``decoder.type: attention`` -- the CRNN encoder with an attention decoder (kind ``crnn_attention``), teacher forced
  with cross-entropy (``decoder.free_running``: scheduled sampling);
* ``decoder.type: ctc`` with ``decoder.aux_attention_weight > 0`` -- GTC (PP-OCRv3): the CRNN plus an attention head
  on its frames, loss CTC + weight x cross-entropy; the head guides the encoder during training only, and what is
  saved for inference (best.safetensors) is the plain CRNN.

An objective is called by ``CTCTask.train_step`` as ``objective(net, images, lengths, batch, autocast)`` and returns the
loss; ``net`` is the module the optimiser trains (:func:`trained_module`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from crnn.models.attention import IGNORE, AttentionConfig, AttentionDecoder, build_attention_model, teacher_forcing_pair
from crnn.charset import Charset
from crnn.errors import ConfigError
from crnn.models.crnn import CRNN, ModelConfig
from crnn_training.config import TrainConfig


def build_network(config: TrainConfig, charset: Charset) -> nn.Module:
    """The network a run saves: a CRNN (decoder.type ctc) or an attention recognizer on the same encoder."""
    encoder = ModelConfig(num_classes=charset.num_classes, **config.model.to_dict())
    if config.decoder.type == "attention":
        return build_attention_model(encoder, charset.num_classes, **config.decoder.attention_fields())
    return CRNN(encoder)


class GuidedCTC(nn.Module):
    """A CRNN and an attention head reading its frames, trained together (GTC); only ``crnn`` is ever saved for inference."""

    def __init__(self, crnn: CRNN, head: AttentionConfig) -> None:
        super().__init__()
        self.crnn = crnn
        self.head = AttentionDecoder(head, crnn.classifier.in_features)

    def forward(self, images: Tensor, lengths: Tensor, inputs: Tensor | None = None,
                free_running: float = 0.0) -> tuple[Tensor, Tensor | None]:
        """(CTC log-probabilities (B, T, C), the head's teacher-forced logits (B, L, C), None without ``inputs``)."""
        frames = self.crnn.context(self.crnn.features(images), lengths)
        log_probs = self.crnn.classifier(self.crnn.dropout(frames)).float().log_softmax(-1)  # as CRNN.sequence_head
        if inputs is None:
            return log_probs, None
        return log_probs, self.head(self.crnn.dropout(frames), lengths.to(images.device), inputs, free_running)


def trained_module(config: TrainConfig, model: nn.Module) -> nn.Module:
    """The module the optimiser trains: ``model`` itself, or GuidedCTC around it when the attention head guides it."""
    d = config.decoder
    if d.type == "ctc" and d.aux_attention_weight > 0:
        head = AttentionConfig(num_classes=model.config.num_classes, encoder=model.config, **d.attention_fields())
        return GuidedCTC(model, head).to(next(model.parameters()).device)
    return model


def _texts(batch: dict[str, Any]) -> list[list[int]]:
    """Each sample's class ids, from the batch's concatenated CTC targets."""
    return [t.tolist() for t in torch.split(batch["targets"], batch["target_lengths"].tolist())]


class CTCObjective:
    """The CTC loss of a CRNN; ``aux_weight`` > 0 adds its attention head's cross-entropy (the net is a GuidedCTC)."""

    def __init__(self, num_classes: int, aux_weight: float = 0.0, free_running: float = 0.0) -> None:
        self.ctc = nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)
        self.num_classes, self.aux_weight, self.free_running = num_classes, aux_weight, free_running
        self.parts: dict[str, Tensor] = {}  # the last batch's loss terms when guided (logged beside the sum)

    def __call__(self, net: nn.Module, images: Tensor, lengths: Tensor, batch: dict[str, Any],
                 autocast: Any = contextlib.nullcontext) -> Tensor:
        """The loss of one batch (images (B, 1, 32, W), frame lengths (B,) on the CPU)."""
        device = images.device
        inputs = targets = None
        if self.aux_weight > 0:
            inputs, targets = teacher_forcing_pair(_texts(batch), self.num_classes, device)
        with autocast():
            out = net(images, lengths) if inputs is None else net(images, lengths, inputs, self.free_running)
        log_probs, logits = out if isinstance(out, tuple) else (out, None)
        loss = self.ctc(log_probs.float().transpose(0, 1), batch["targets"].to(device, non_blocking=True),
                        lengths, batch["target_lengths"])
        if logits is not None:
            ce = cross_entropy(logits, targets)
            self.parts = {"loss_ctc": loss.detach(), "loss_attention": ce.detach()}
            loss = loss + self.aux_weight * ce
        return loss


class AttentionObjective:
    """Teacher-forced cross-entropy of an attention recognizer (``free_running``: scheduled sampling)."""

    def __init__(self, num_classes: int, free_running: float = 0.0) -> None:
        self.num_classes, self.free_running = num_classes, free_running
        self.parts: dict[str, Tensor] = {}  # one term: the loss itself

    def __call__(self, net: nn.Module, images: Tensor, lengths: Tensor, batch: dict[str, Any],
                 autocast: Any = contextlib.nullcontext) -> Tensor:
        """The loss of one batch (images (B, 1, 32, W), frame lengths (B,) on the CPU)."""
        inputs, targets = teacher_forcing_pair(_texts(batch), self.num_classes, images.device)
        with autocast():
            logits = net(images, lengths, inputs, self.free_running)
        return cross_entropy(logits, targets)


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of logits (B, L, C) against targets (B, L), padded positions (IGNORE) left out."""
    return nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def make_objective(config: TrainConfig, num_classes: int) -> CTCObjective | AttentionObjective:
    """The loss of ``config.decoder``'s choice."""
    d = config.decoder
    if d.type == "attention":
        return AttentionObjective(num_classes, d.free_running)
    return CTCObjective(num_classes, d.aux_attention_weight, d.free_running)


def check_init_from(config: TrainConfig) -> None:
    """--init-from starts a CRNN from a CRNN checkpoint; an attention decoder cannot start from one (yet)."""
    if config.decoder.type != "ctc":
        raise ConfigError("--init-from takes a CRNN checkpoint and trains a CTC model (decoder.type ctc)")


def check_resume(config: TrainConfig, saved: dict[str, Any]) -> None:
    """--resume continues the same network and objective: switching decoder.type or the guide on or off is refused."""
    was = saved.get("config", {}).get("decoder", {})  # runs from before the decoder section: CTC, no guide
    if was.get("type", "ctc") != config.decoder.type:
        raise ConfigError(f"--resume cannot change decoder.type ({was.get('type', 'ctc')} -> {config.decoder.type})")
    if ("aux_head" in saved) != (config.decoder.type == "ctc" and config.decoder.aux_attention_weight > 0):
        raise ConfigError("--resume cannot switch the attention guide on or off (decoder.aux_attention_weight)")
