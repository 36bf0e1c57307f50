"""The attention decoder (Bahdanau et al. 2015, as in ASTER and TRBA) on the CRNN's encoder, free of loss and charset.

The encoder is exactly the CRNN's (crnn/models/crnn.py: its backbone and recurrent layers, built from a ``ModelConfig``), so
any backbone the CTC model has works here too. The decoder is a recurrent cell with output recurrence: at step t it
attends over the encoder's frames with its previous state (additive attention, padded frames masked out), reads the
embedding of the previous character and the attended context, and predicts the next class.

Class indices are the charset's (crnn/charset.py), with one change of meaning and one addition:

* index 0, the CTC blank's slot, is the end-of-sequence token ``EOS`` (a decoder never needs a blank);
* ``sos_index(num_classes) == num_classes`` is the start token: an input only (the embedding has one row more than
  the output layer), never predicted;
* padded target positions are ``IGNORE`` (-100, cross-entropy's ``ignore_index``); padded input positions hold EOS
  (they are never scored).

So ``Charset.decode`` reads the ids before EOS unchanged, and a checkpoint's ``num_classes`` is the charset's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import torch
from pydantic import ConfigDict, Field
from torch import Tensor, nn

from crnn.charset import BLANK
from crnn.config import Config
from crnn.models.crnn import CRNN, ModelConfig, count_macs, count_parameters

EOS: int = BLANK  # end of sequence: the class the CTC blank has in a CRNN
IGNORE: int = -100  # padded target positions (torch's cross-entropy ignore_index)
DecoderCell = Literal["lstm", "gru"]
DECODER_CELLS: tuple[str, ...] = get_args(DecoderCell)


def sos_index(num_classes: int) -> int:
    """The start token's embedding row: one past the last output class (it is never predicted)."""
    return num_classes


class AttentionConfig(Config):
    """Architecture of an attention recognizer: the encoder's ModelConfig plus the decoder's sizes."""

    model_config = ConfigDict(frozen=True)
    kind = "model"

    num_classes: int = Field(96, ge=2)  # EOS (index 0) and at least one character
    encoder: ModelConfig = ModelConfig()  # its classifier is not built: this kind reads the frames before it
    cell: DecoderCell = "lstm"
    hidden_size: int = Field(256, ge=1)
    attention_size: int = Field(256, ge=1)
    embedding_size: int = Field(64, ge=1)
    max_length: int = Field(25, ge=1)  # characters read at most at inference (training reads any length)

    @property
    def height(self) -> int:
        """Input height (the encoder's): what the default preprocessing scales images to."""
        return self.encoder.height


def teacher_forcing_pair(
    ids: Sequence[Sequence[int]], num_classes: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """Decoder inputs and targets (B, L), L = longest text + 1, of texts' class ids (EOS-free).

    Inputs: SOS, then the text, then EOS as padding; targets: the text, then EOS, then IGNORE.
    """
    length = max((len(t) for t in ids), default=0) + 1
    inputs = torch.full((len(ids), length), EOS, dtype=torch.long)
    targets = torch.full((len(ids), length), IGNORE, dtype=torch.long)
    inputs[:, 0] = sos_index(num_classes)
    for b, t in enumerate(ids):
        if t:
            inputs[b, 1 : len(t) + 1] = torch.as_tensor(list(t), dtype=torch.long)
            targets[b, : len(t)] = torch.as_tensor(list(t), dtype=torch.long)
        targets[b, len(t)] = EOS
    return inputs.to(device), targets.to(device)


def frame_mask(lengths: Tensor, total: int) -> Tensor:
    """(B, T) True for each image's own frames, False for the padding after them."""
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]


class AttentionDecoder(nn.Module):
    """Encoder frames (B, T, D) -> class logits per decoding step; a recurrent cell with additive attention."""

    def __init__(self, config: AttentionConfig, input_size: int) -> None:
        super().__init__()
        self.config = config
        c = config
        self.key = nn.Linear(input_size, c.attention_size)
        self.query = nn.Linear(c.hidden_size, c.attention_size, bias=False)
        self.score = nn.Linear(c.attention_size, 1, bias=False)
        self.embedding = nn.Embedding(c.num_classes + 1, c.embedding_size)  # + the start token
        cell_cls = nn.LSTMCell if c.cell == "lstm" else nn.GRUCell
        self.cell: nn.LSTMCell | nn.GRUCell = cell_cls(c.embedding_size + input_size, c.hidden_size)
        self.out = nn.Linear(c.hidden_size + input_size, c.num_classes)

    def start(self, frames: Tensor, lengths: Tensor) -> tuple[Any, Tensor, Tensor]:
        """(initial state, keys (B, T, A), mask (B, T)) for frames (B, T, D) with ``lengths`` valid frames each."""
        b = frames.shape[0]
        h = frames.new_zeros(b, self.config.hidden_size)
        state = (h, h.clone()) if self.config.cell == "lstm" else h
        return state, self.key(frames), frame_mask(lengths.to(frames.device), frames.shape[1])

    def step(self, prev: Tensor, state: Any, frames: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Any, Tensor]:
        """One decoding step: (logits (B, C), new state, attention weights (B, T)) after the previous ids (B,)."""
        h = state[0] if isinstance(state, tuple) else state
        energy = self.score(torch.tanh(keys + self.query(h)[:, None, :])).squeeze(-1)  # (B, T)
        # -inf, not a large negative: a padded frame gets exactly zero weight, so an image's result is what it
        # gets alone (tests/test_attention_model.py).
        weights = energy.float().masked_fill(~mask, float("-inf")).softmax(-1).to(frames.dtype)
        context = torch.bmm(weights[:, None, :], frames).squeeze(1)  # (B, D)
        state = self.cell(torch.cat([self.embedding(prev), context], -1), state)
        h = state[0] if isinstance(state, tuple) else state
        return self.out(torch.cat([h, context], -1)), state, weights

    def forward(self, frames: Tensor, lengths: Tensor, inputs: Tensor, free_running: float = 0.0) -> Tensor:
        """Logits (B, L, C) for decoder inputs (B, L) (SOS first: :func:`teacher_forcing_pair`), teacher forced.

        ``free_running`` (training only): each later step of each sample is fed the model's own previous
        prediction instead of the true character with this probability (scheduled sampling).
        """
        state, keys, mask = self.start(frames, lengths)
        prev = inputs[:, 0]
        out = []
        for t in range(inputs.shape[1]):
            logits, state, _ = self.step(prev, state, frames, keys, mask)
            out.append(logits)
            if t + 1 < inputs.shape[1]:
                prev = inputs[:, t + 1]
                if free_running > 0 and self.training:
                    own = torch.rand(prev.shape, device=prev.device) < free_running
                    prev = torch.where(own, logits.detach().argmax(-1), prev)
        return torch.stack(out, 1)

    @torch.no_grad()
    def greedy(self, frames: Tensor, lengths: Tensor, max_length: int | None = None) -> tuple[list[list[int]], list[list[float]]]:
        """Per sample: class ids read before EOS, and the log-probability of each step, EOS's last.

        A text that reaches ``max_length`` characters is ended there: its last step is EOS's log-probability
        after them (usually low), so its confidence says the model did not end it.
        """
        max_length = self.config.max_length if max_length is None else max_length
        b = frames.shape[0]
        state, keys, mask = self.start(frames, lengths)
        prev = torch.full((b,), sos_index(self.config.num_classes), dtype=torch.long, device=frames.device)
        done = torch.zeros(b, dtype=torch.bool, device=frames.device)
        chosen, step_logps = [], []
        for t in range(max_length + 1):
            logits, state, _ = self.step(prev, state, frames, keys, mask)
            logp = logits.float().log_softmax(-1)
            ids = logp.argmax(-1) if t < max_length else torch.full_like(prev, EOS)
            chosen.append(ids)
            step_logps.append(logp.gather(1, ids[:, None]).squeeze(1))
            done = done | (ids == EOS)
            prev = ids
            if bool(done.all()):
                break
        ids_bt = torch.stack(chosen, 1).tolist()
        logps_bt = torch.stack(step_logps, 1).tolist()
        texts, logps = [], []
        for row, lp in zip(ids_bt, logps_bt):
            n = row.index(EOS)
            texts.append(row[:n])
            logps.append(lp[: n + 1])
        return texts, logps

    @torch.no_grad()
    def beam(
        self,
        frames: Tensor,
        length: int,
        beam_width: int = 10,
        max_length: int | None = None,
        prior: Callable[[tuple[int, ...]], Sequence[float]] | None = None,
    ) -> tuple[list[int], list[float]]:
        """Beam search over one image's frames (1, T, D): (class ids before EOS, step log-probabilities, EOS last).

        Hypotheses are ranked by their summed log-probabilities plus, when given, ``prior(prefix)[c]`` for each
        class c appended (a language model's weighted log-probabilities, EOS at index 0); the returned
        log-probabilities are the decoder's own. A hypothesis reaching ``max_length`` characters is ended there.
        """
        if beam_width < 1:
            raise ValueError(f"beam_width must be at least 1, got {beam_width}")
        max_length = self.config.max_length if max_length is None else max_length
        state, keys, mask = self.start(frames[:1], torch.tensor([length], device=frames.device))
        # Alive hypotheses: (ranking score, ids, step log-probs); row i of the state batch is hypothesis i.
        alive: list[tuple[float, tuple[int, ...], tuple[float, ...]]] = [(0.0, (), ())]
        done: list[tuple[float, tuple[int, ...], tuple[float, ...]]] = []
        prev = torch.tensor([sos_index(self.config.num_classes)], device=frames.device)
        for t in range(max_length + 1):
            k = len(alive)
            logits, state, _ = self.step(prev, state, frames[:1].expand(k, -1, -1), keys[:1].expand(k, -1, -1),
                                         mask[:1].expand(k, -1))
            logp = logits.float().log_softmax(-1)
            last = t == max_length
            top = torch.topk(logp, min(beam_width, logp.shape[1]), dim=-1).indices.tolist()
            rows = logp.tolist()
            candidates = []
            for i, (score, ids, lps) in enumerate(alive):
                bonus = prior(ids) if prior is not None else None
                for c in ([EOS] if last else sorted(set(top[i]) | {EOS})):
                    s = score + rows[i][c] + (bonus[c] if bonus is not None else 0.0)
                    candidates.append((s, i, c))
            candidates.sort(key=lambda x: -x[0])
            keep_rows, new_alive, new_prev = [], [], []
            for s, i, c in candidates:
                _, ids, lps = alive[i]
                if c == EOS:
                    done.append((s, ids, (*lps, rows[i][c])))
                elif len(new_alive) < beam_width:
                    keep_rows.append(i)
                    new_alive.append((s, (*ids, c), (*lps, rows[i][c])))
                    new_prev.append(c)
            best_done = max((d[0] for d in done), default=float("-inf"))
            # Scores only fall as a hypothesis grows (log-probabilities are <= 0), so no alive one can win now.
            if not new_alive or best_done >= new_alive[0][0]:
                break
            index = torch.tensor(keep_rows, device=frames.device)
            state = tuple(s[index] for s in state) if isinstance(state, tuple) else state[index]
            alive, prev = new_alive, torch.tensor(new_prev, device=frames.device)
        _, ids, lps = max(done, key=lambda d: d[0])
        return list(ids), list(lps)


class AttentionRecognizerNet(nn.Module):
    """Images (B, 1, 32, W) -> the CRNN encoder's frames (B, W // 4, D) -> attention decoder logits (B, L, C)."""

    def __init__(self, config: AttentionConfig | None = None) -> None:
        super().__init__()
        self.config = config or AttentionConfig()
        self.encoder = CRNN(self.config.encoder)
        frame_size = self.encoder.classifier.in_features
        self.encoder.classifier = nn.Identity()  # the CTC classifier is not part of this kind
        self.decoder = AttentionDecoder(self.config, frame_size)

    frames_for_width = staticmethod(CRNN.frames_for_width)

    def encode(self, images: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Encoder frames (B, T, D) of images (B, 1, 32, W); ``lengths`` (B,) valid frames (packed recurrence)."""
        return self.encoder.dropout(self.encoder.context(self.encoder.features(images), lengths))

    def forward(self, images: Tensor, lengths: Tensor, inputs: Tensor | None = None, free_running: float = 0.0) -> Tensor:
        """Teacher-forced logits (B, L, C) for decoder inputs (B, L) (None: the start token alone, L = 1)."""
        if inputs is None:
            inputs = torch.full((images.shape[0], 1), sos_index(self.config.num_classes), device=images.device)
        return self.decoder(self.encode(images, lengths), lengths.to(images.device), inputs, free_running)


def build_attention_model(encoder: ModelConfig, num_classes: int, **decoder: Any) -> AttentionRecognizerNet:
    """An attention recognizer on the CRNN encoder ``encoder`` (its num_classes is set to ``num_classes``)."""
    enc = encoder.model_copy(update={"num_classes": num_classes})
    return AttentionRecognizerNet(AttentionConfig(num_classes=num_classes, encoder=enc, **decoder))


def decoder_step_macs(decoder: AttentionDecoder, frames: int) -> int:
    """Multiply-adds of one decoding step over ``frames`` encoder frames (attention, cell, output layer)."""
    c = decoder.config
    d = decoder.key.in_features
    gates = 4 if c.cell == "lstm" else 3
    attention = frames * c.attention_size + c.hidden_size * c.attention_size + frames * d
    cell = gates * c.hidden_size * (c.embedding_size + d + c.hidden_size)
    return attention + cell + (c.hidden_size + d) * c.num_classes


def describe(model: AttentionRecognizerNet, width: int = 128) -> dict[str, Any]:
    """Architecture, parameters and multiply-adds for a 32 x ``width`` input: the encoder once, plus each decoding step."""
    frames = width // 4
    encoder = count_macs(model.encoder, width)  # its classifier is an identity: the frames alone
    step = decoder_step_macs(model.decoder, frames)
    return {
        "architecture": model.config.to_dict(),
        "parameters": count_parameters(model),
        "input": f"1x{model.config.encoder.height}x{width}",
        "frames": frames,
        "encoder_multiply_adds": encoder,
        "decoder_multiply_adds_per_step": step,
        # A 5-character word: 6 steps (EOS included).
        "multiply_adds": encoder + 6 * step,
    }
