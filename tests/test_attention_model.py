"""The attention decoder's network: token mapping, teacher-forced learning, greedy and beam search, batch independence,
checkpoint round trip."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from crnn.models.attention import (EOS, IGNORE, AttentionConfig, AttentionDecoder, AttentionRecognizerNet,
                                  build_attention_model, sos_index, teacher_forcing_pair)
from crnn.charset import BLANK, Charset
from crnn.kinds.loading import load_checkpoint, save_checkpoint
from crnn.models.crnn import ModelConfig
from crnn.kinds.registry import get_kind, kind_of
from tests.word_images import render_word

CHARSET = Charset("abcdefgh")


def tiny_net(seed: int = 0, cell: str = "lstm", backbone: str = "small", encoder_cell: str = "lstm",
             max_length: int = 25) -> AttentionRecognizerNet:
    torch.manual_seed(seed)
    encoder = ModelConfig(backbone=backbone, cell=encoder_cell, hidden_size=12, num_layers=1, dropout=0.0)
    return build_attention_model(encoder, CHARSET.num_classes, cell=cell, hidden_size=16, attention_size=16,
                                 embedding_size=8, max_length=max_length)


def word_batch(words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 1, 32, W) of ``words`` padded to one width, and their valid frames (B,)."""
    import cv2

    arrays = []
    for w in words:
        img = render_word(w)
        arrays.append(cv2.resize(img, (4 * 8 * len(w) + 16, 32)).astype("float32") / 127.5 - 1.0)
    width = max(a.shape[1] for a in arrays)
    images = torch.full((len(words), 1, 32, width), 1.0)
    for i, a in enumerate(arrays):
        images[i, 0, :, : a.shape[1]] = torch.from_numpy(a)
    return images, torch.tensor([a.shape[1] // 4 for a in arrays])


# ---- tokens ------------------------------------------------------------------------------------------


def test_eos_is_the_blank_and_sos_is_an_input_only_row() -> None:
    assert EOS == BLANK == 0
    net = tiny_net()
    assert sos_index(CHARSET.num_classes) == CHARSET.num_classes
    assert net.decoder.embedding.num_embeddings == CHARSET.num_classes + 1  # the start token is embedded
    assert net.decoder.out.out_features == CHARSET.num_classes  # ... but never predicted


@pytest.mark.parametrize("words", [["ab", "h"], ["", "abc"], ["hgfedcba"]])
def test_teacher_forcing_pair(words: list[str]) -> None:
    ids = [CHARSET.encode(w) for w in words]
    inputs, targets = teacher_forcing_pair(ids, CHARSET.num_classes)
    length = max(map(len, words)) + 1
    assert inputs.shape == targets.shape == (len(words), length)
    for w, i, t in zip(words, inputs.tolist(), targets.tolist()):
        n = len(w)
        assert i[0] == sos_index(CHARSET.num_classes)
        assert CHARSET.decode(i[1 : n + 1]) == w and all(x == EOS for x in i[n + 1 :])
        assert CHARSET.decode(t[:n]) == w and t[n] == EOS and all(x == IGNORE for x in t[n + 1 :])
    # Each input is the target one step before: output recurrence under teacher forcing.
    chars = targets[:, :-1] > EOS
    assert torch.equal(inputs[:, 1:][chars], targets[:, :-1][chars])


# ---- learning ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell,free_running", [("lstm", 0.0), ("gru", 0.0), ("lstm", 0.5)])
def test_teacher_forced_loss_decreases(cell: str, free_running: float) -> None:
    net = tiny_net(cell=cell).train()
    words = ["bad", "cafe", "hedge", "ace"]
    images, lengths = word_batch(words)
    inputs, targets = teacher_forcing_pair([CHARSET.encode(w) for w in words], CHARSET.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    torch.manual_seed(1)
    for _ in range(40):
        logits = net(images, lengths, inputs, free_running)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses  # free-running steps learn more slowly: 0.56 here


# ---- decoding ------------------------------------------------------------------------------------------


def markov_decoder(table: torch.Tensor, max_length: int) -> tuple[AttentionDecoder, list[int]]:
    """A decoder whose step's logits are ``table[previous id]`` (SOS the last row): a Markov chain over classes."""
    config = AttentionConfig(num_classes=table.shape[1], encoder=ModelConfig(num_classes=table.shape[1]),
                             hidden_size=4, attention_size=4, embedding_size=4, max_length=max_length)
    decoder = AttentionDecoder(config, 2).eval()
    calls = []

    def step(prev, state, frames, keys, mask):  # noqa: ANN001, ANN202
        calls.append(len(prev))
        return table[prev], state, mask.float()

    decoder.step = step  # type: ignore[method-assign]
    return decoder, calls


def sequence_logp(table: torch.Tensor, ids: list[int], end: bool = True) -> float:
    lp = table.log_softmax(-1)
    prev, total = table.shape[1], 0.0
    for c in [*ids, *([EOS] if end else [])]:
        total += float(lp[prev, c])
        prev = c
    return total


def test_greedy_stops_at_eos_and_cuts_at_max_length() -> None:
    c = 4  # EOS + 3 characters; row 4 is SOS
    table = torch.full((c + 1, c), -5.0)
    table[4, 1] = table[1, 2] = 5.0  # SOS -> 1 -> 2 -> EOS
    table[2, EOS] = 5.0
    table[3, 3] = 5.0  # 3 -> 3 -> 3 ... never ends
    decoder, calls = markov_decoder(table, max_length=6)
    frames, lengths = torch.zeros(1, 3, 2), torch.tensor([3])
    ids, logps = decoder.greedy(frames, lengths)
    assert ids == [[1, 2]] and len(logps[0]) == 3  # two characters, then EOS's step
    assert len(calls) == 3  # no step after every sample ended
    assert sum(logps[0]) == pytest.approx(sequence_logp(table, [1, 2]), abs=1e-5)

    table[4] = -5.0
    table[4, 3] = 5.0  # SOS -> 3 -> 3 -> ...: cut at max_length, its last step the (low) EOS probability
    decoder, _ = markov_decoder(table, max_length=6)
    ids, logps = decoder.greedy(frames, lengths)
    assert ids == [[3] * 6] and len(logps[0]) == 7
    assert logps[0][-1] == pytest.approx(float(table[3].log_softmax(-1)[EOS]), abs=1e-6)


def test_greedy_batch_ends_each_sample_at_its_own_eos() -> None:
    table = torch.full((5, 4), -5.0)
    table[4, 1] = table[1, 2] = table[2, EOS] = 5.0
    decoder, _ = markov_decoder(table, max_length=10)
    ids, logps = decoder.greedy(torch.zeros(3, 4, 2), torch.tensor([4, 2, 1]))
    assert ids == [[1, 2]] * 3 and [len(x) for x in logps] == [3, 3, 3]


@pytest.mark.parametrize("seed", range(4))
def test_wide_beam_finds_the_likeliest_text(seed: int) -> None:
    torch.manual_seed(seed)
    c, max_length = 4, 3
    table = torch.randn(c + 1, c) * 1.5
    decoder, _ = markov_decoder(table, max_length)
    ids, logps = decoder.beam(torch.zeros(1, 3, 2), 3, beam_width=64)
    candidates = [list(s) for n in range(max_length + 1) for s in itertools.product(range(1, c), repeat=n)]
    best = max(candidates, key=lambda s: sequence_logp(table, s))
    assert ids == best
    assert sum(logps) == pytest.approx(sequence_logp(table, best), abs=1e-5)
    greedy_ids, greedy_logps = decoder.greedy(torch.zeros(1, 3, 2), torch.tensor([3]))
    assert sum(logps) >= sum(greedy_logps[0]) - 1e-6  # never worse than greedy


def test_beam_prior_reranks_but_confidences_stay_the_decoders() -> None:
    table = torch.zeros(5, 4)
    table[4, 1], table[4, 2] = 1.0, 0.9  # 1 slightly likelier than 2 after SOS
    table[1:4, EOS] = 6.0
    decoder, _ = markov_decoder(table, 4)
    frames = torch.zeros(1, 2, 2)
    assert decoder.beam(frames, 2, 4)[0] == [1]
    favour_2 = lambda prefix: [0.0, -3.0, 0.0, -3.0]  # noqa: E731
    ids, logps = decoder.beam(frames, 2, 4, prior=favour_2)
    assert ids == [2]
    assert sum(logps) == pytest.approx(sequence_logp(table, [2]), abs=1e-5)  # the prior is not in the log-probs


# ---- batch independence --------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_decoder_alone_equals_in_a_padded_batch(cell: str) -> None:
    """Padded frames get exactly zero attention: a sample's logits and readings are what it gets alone."""
    net = tiny_net(seed=3, cell=cell).eval()
    torch.manual_seed(0)
    lengths = torch.tensor([9, 4, 13])
    frames = torch.randn(3, 13, net.decoder.key.in_features)
    frames[1, 4:] = 1e3  # garbage in the padding must not leak in
    inputs, _ = teacher_forcing_pair([[1, 2, 3], [4], [5, 6]], CHARSET.num_classes)
    with torch.no_grad():
        batch_logits = net.decoder(frames, lengths, inputs)
        batch_ids, batch_logps = net.decoder.greedy(frames, lengths, max_length=8)
        for b, n in enumerate(lengths.tolist()):
            alone = net.decoder(frames[b : b + 1, :n], lengths[b : b + 1], inputs[b : b + 1])
            torch.testing.assert_close(batch_logits[b : b + 1], alone, rtol=0, atol=1e-5)
            ids, logps = net.decoder.greedy(frames[b : b + 1, :n], lengths[b : b + 1], max_length=8)
            assert ids[0] == batch_ids[b]
            assert logps[0] == pytest.approx(batch_logps[b], abs=1e-5)


# ---- the kind, the checkpoint ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder_cell", ["lstm", "gru", "none"])
@pytest.mark.parametrize("backbone", ["small", "full"])
def test_any_crnn_encoder_and_checkpoint_round_trip(tmp_path, backbone: str, encoder_cell: str) -> None:  # noqa: ANN001
    net = tiny_net(backbone=backbone, encoder_cell=encoder_cell).eval()
    assert kind_of(net).name == "crnn_attention" and get_kind("crnn_attention").model_class is AttentionRecognizerNet
    assert not any(k.startswith("encoder.classifier") for k in net.state_dict())  # no CTC classifier in this kind
    images, lengths = word_batch(["cab", "hid"])
    path = save_checkpoint(tmp_path / "a.safetensors", net, CHARSET, metadata={"name": "t"})
    ckpt = load_checkpoint(path)
    assert ckpt.model_type == "crnn_attention" and ckpt.charset == CHARSET
    assert ckpt.model.config == net.config and ckpt.model.config.encoder.backbone == backbone
    with torch.no_grad():
        a = net.decoder.greedy(net.encode(images, lengths), lengths)
        b = ckpt.model.decoder.greedy(ckpt.model.encode(images, lengths), lengths)
    assert a == b


def test_describe_counts_encoder_and_steps() -> None:
    net = tiny_net()
    d = get_kind("crnn_attention").describe(net, 128)
    assert d["parameters"] == sum(p.numel() for p in net.parameters())
    assert d["frames"] == 32 and d["encoder_multiply_adds"] > 0 and d["decoder_multiply_adds_per_step"] > 0
    assert d["multiply_adds"] == d["encoder_multiply_adds"] + 6 * d["decoder_multiply_adds_per_step"]
    assert math.isfinite(d["multiply_adds"])
