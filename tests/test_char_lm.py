"""Tests of crnn.decoding.char_lm (the character n-gram model) and its estimation in crnn_training.char_lm (`crnn lm`)."""

from __future__ import annotations

import itertools
import math
import string

import numpy as np
import pytest

from crnn.decoding.char_lm import CharLM, default_lm_path, fold, load_lm
from crnn.charset import DEFAULT_CHARS
from crnn.errors import CheckpointError
from crnn_training.char_lm import alphabet_of, estimate, main

WORDS = ["the", "then", "there", "these", "hello", "help", "shell", "tell", "yellow", "fellow", "12:30", "no. 7",
         "The", "HELLO", "hello", "hello", "there"]
ALPHABET = string.ascii_lowercase + string.digits + ":. "


@pytest.fixture(scope="module", params=[(1, 1, 9), (3, 1, 9), (6, 2, 4), (6, 1, 9)], ids=lambda p: f"order{p[0]}-min{p[1]}")
def small_lm(request) -> CharLM:
    order, min_count, prune_from = request.param
    return estimate(WORDS, ALPHABET, order=order, min_count=min_count, prune_from=prune_from)


def contexts(lm: CharLM) -> list[tuple[int, ...]]:
    """Histories seen in training, unseen ones, with UNK, and long ones (truncated to order - 1)."""
    texts = ["", "h", "he", "hel", "hell", "hello", "zzq", "th", "the", "@@h", "yellowfel", "12:"]
    return [(lm.bos, *lm.encode(t)) for t in texts] + [tuple(lm.encode("ello")), tuple(lm.encode("ttttttttt"))]


def test_distributions_sum_to_one(small_lm: CharLM) -> None:
    for history in contexts(small_lm):
        dist = small_lm.distribution(history)
        assert dist.shape == (small_lm.num_symbols,)
        assert math.isclose(dist.sum(), 1.0, abs_tol=1e-6), (history, dist.sum())
        assert dist[0] == 0.0  # id 0 is no symbol; BOS (== num_symbols) is never predicted
        assert (dist[1:] > 0).all()  # every symbol, UNK and EOS included, keeps some mass
        logs = small_lm.log_distribution(history)
        assert np.allclose(np.exp(logs[1:]), dist[1:])


def test_text_probabilities_sum_to_one() -> None:
    """The texts of up to n symbols (ended) and the unfinished prefixes of n + 1 symbols partition all texts:
    their probabilities sum to exactly one ('@' stands for the unknown symbol)."""
    lm = estimate(["ab", "abc", "cab", "a", "bca", "ab", "a b"], "abc", order=3)
    n = 4
    ended = sum(math.exp(lm.log_prob("".join(t))) for k in range(n + 1) for t in itertools.product("abc@", repeat=k))
    longer = sum(math.exp(lm.log_prob("".join(t), end=False)) for t in itertools.product("abc@", repeat=n + 1))
    assert math.isclose(ended + longer, 1.0, abs_tol=1e-6)  # float32 storage
    assert ended > 0.5  # the model learnt that texts are short


@pytest.mark.parametrize("order, min_count", [(2, 1), (3, 1), (6, 1), (6, 2)])
def test_the_model_prefers_trained_words(order: int, min_count: int) -> None:
    lm = estimate(WORDS, ALPHABET, order=order, min_count=min_count, prune_from=4)
    assert lm.log_prob("hello") > lm.log_prob("hfllo")
    assert lm.log_prob("there") > lm.log_prob("thare")


def test_case_is_folded() -> None:
    lm = estimate(WORDS, ALPHABET, order=4)
    assert lm.log_prob("Hello") == lm.log_prob("hello") == lm.log_prob("HELLO")
    assert fold("HeLLo 1!") == "hello 1!"
    assert lm.symbol("Q") == lm.symbol("q") != lm.unk


def test_unknown_characters_share_the_unk_symbol() -> None:
    lm = estimate(WORDS, ALPHABET, order=4)
    assert lm.symbol("@") == lm.symbol("é") == lm.unk
    assert math.isfinite(lm.log_prob("he@lo"))
    assert lm.log_prob("he@lo") < lm.log_prob("hello")


def test_save_load_round_trip(tmp_path) -> None:
    lm = estimate(WORDS, ALPHABET, order=5, min_count=2, prune_from=3, metadata={"sources": "test words"})
    path = tmp_path / "lm.safetensors"
    lm.save(path)
    back = CharLM.load(path)
    assert (back.alphabet, back.order) == (lm.alphabet, lm.order)
    assert back.metadata["sources"] == "test words" and back.metadata["order"] == 5
    for history in contexts(lm):
        assert np.allclose(back.distribution(history), lm.distribution(history), atol=1e-6)


def test_load_refuses_missing_and_foreign_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        CharLM.load(tmp_path / "nope.safetensors")
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, dtype=np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a character language model"):
        CharLM.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="cannot read"):
        CharLM.load(tmp_path / "junk.safetensors")


def test_empty_training_text_gives_the_uniform_model() -> None:
    lm = estimate([], "ab", order=3)
    assert np.allclose(lm.distribution((lm.bos,))[1:], 1 / 4)  # a, b, UNK, EOS


def test_shipped_model_is_a_six_gram_of_the_default_charset() -> None:
    lm = load_lm()
    assert default_lm_path().stat().st_size < 8_000_000
    assert lm.order == 6 and lm.alphabet == alphabet_of(DEFAULT_CHARS)
    assert "wordfreq" in lm.metadata["sources"] and lm.metadata["smoothing"].startswith("interpolated")
    for history in [(lm.bos,), (lm.bos, *lm.encode("th")), tuple(lm.encode("street"))]:
        assert math.isclose(lm.distribution(history).sum(), 1.0, abs_tol=1e-5)
    assert lm.log_prob("house") > lm.log_prob("hovse")
    assert lm.log_prob("street") > lm.log_prob("stroet")


def test_crnn_lm_command_writes_a_loadable_model(tmp_path) -> None:
    out = tmp_path / "lm.safetensors"
    assert main(["--output", str(out), "--texts", "2000", "--order", "4", "--seed", "1"]) == 0
    lm = CharLM.load(out)
    assert lm.order == 4 and lm.metadata["mix_texts"] == 2000 and lm.metadata["seed"] == 1
    assert math.isclose(lm.distribution((lm.bos,)).sum(), 1.0, abs_tol=1e-5)


def test_crnn_lm_never_replaces_an_existing_model_without_force(tmp_path, capsys, monkeypatch) -> None:
    import crnn_training.char_lm as char_lm_module

    out = tmp_path / "lm.safetensors"
    out.write_bytes(b"shipped")
    monkeypatch.setattr(char_lm_module, "renderer_texts", lambda *a: pytest.fail("counting started"))
    assert main(["--output", str(out), "--texts", "10"]) == 2
    assert "exists; give --force" in capsys.readouterr().err and out.read_bytes() == b"shipped"
    assert main(["--output", str(tmp_path / "no" / "lm.safetensors")]) == 2  # a missing folder is not made
    assert main(["--output", str(tmp_path)]) == 2  # a folder
    monkeypatch.undo()
    assert main(["--output", str(out), "--texts", "200", "--order", "3", "--force"]) == 0
    assert CharLM.load(out).order == 3


def test_distribution_table_rows_equal_distribution_value_for_value(small_lm: CharLM) -> None:
    """The batched search's table holds exactly what log_distribution gives, for histories of every length (as
    the beam search builds them: BOS first, the last order - 1 symbols kept), seen, unseen and with UNK."""
    lm = small_lm
    g = np.random.default_rng(0)
    texts = ["", "h", "he", "hel", "hell", "hello", "hellos", "zzq", "@@h", "yellowfel", "12:"]
    texts += ["".join(g.choice(list(ALPHABET + "@"), g.integers(1, 9))) for _ in range(40)]
    keep = lm.order - 1
    histories, keys = [], []
    for text in texts:
        history, key = (lm.bos,) if keep else (), lm.start_key()
        for s in lm.encode(text):
            history = (*history, s)[-keep:] if keep else ()
            key = int(lm.next_keys(np.array([key]), np.array([s]))[0])
        histories.append(history)
        keys.append(key)
        assert key == lm.history_key(history)
    table, rows, _ = lm.distribution_table(np.array(keys))
    for history, row in zip(histories, rows):
        assert table[row].tolist() == lm.distribution(history).tolist()
        with np.errstate(divide="ignore"):
            assert np.log(table[row]).tolist() == lm.log_distribution(history)


def test_distribution_table_is_refilled_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past TABLE_LIMIT rows the table is emptied and a new generation starts; rows stay exact."""
    from crnn.decoding import char_lm

    monkeypatch.setattr(char_lm, "TABLE_LIMIT", 10)
    monkeypatch.setattr(char_lm, "MERGE_KEYS", 3)
    lm = estimate(WORDS, ALPHABET, order=4)
    words = ["the", "he", "hel", "ell", "llo", "yel", "12", ":3", "o. ", "ere", "lp", "sh", "fe", "w", "no"]
    histories = [(lm.bos, *lm.encode(w))[-3:] for w in words]
    seen_generations = set()
    for i in range(0, len(histories), 2):
        table, rows, generation = lm.distribution_table(np.array([lm.history_key(h) for h in histories[i:i + 2]]))
        seen_generations.add(generation)
        for h, r in zip(histories[i:i + 2], rows):
            assert table[r].tolist() == lm.distribution(h).tolist()
    assert len(seen_generations) > 1
