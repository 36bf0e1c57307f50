"""crnn_training.loop.fit: the order of data, step, logging, evaluation and checkpointing, with a scripted task."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from crnn_training.loop import TrainState, fit


class Scripted:
    """A task whose metric follows a script; it records what the loop asked of it."""

    def __init__(self, scores: list[float], eval_every: int, save_every: int, stop_at_time: int = 0,
                 early_stop: int = 0) -> None:
        self.scores, self.eval_every, self.save_every = iter(scores), eval_every, save_every
        self.stop_at_time, self.early_stop = stop_at_time, early_stop
        self.calls: list[tuple[str, int]] = []

    def batches(self) -> Iterator[int]:
        return itertools.count()

    def train_step(self, batch: int, state: TrainState) -> int:
        self.calls.append(("step", state.step))
        return 4

    def log(self, state: TrainState) -> bool:
        return False

    def eval_due(self, state: TrainState) -> bool:
        return state.step % self.eval_every == 0 and state.step < state.total_steps

    def validate(self, state: TrainState) -> bool:
        self.calls.append(("eval", state.step))
        state.record_eval({"acc": next(self.scores)}, "acc", minimise=False)
        return bool(self.early_stop) and state.bad_evals >= self.early_stop

    def save_due(self, state: TrainState) -> bool:
        return state.step % self.save_every == 0

    def save_last(self, state: TrainState) -> None:
        self.calls.append(("save", state.step))

    def out_of_time(self, state: TrainState) -> bool:
        return bool(self.stop_at_time) and state.step >= self.stop_at_time

    def stop_data(self) -> None:
        self.calls.append(("stop_data", -1))


@pytest.mark.parametrize(
    ("total", "stop_at_time", "early_stop", "evals", "last_step"),
    [
        (10, 0, 0, [4, 8, 10], 10),  # evaluations at 4 and 8, then the final one
        (8, 0, 0, [4, 8], 8),  # the last step is evaluated once, after the loop
        (10, 6, 0, [4, 6], 6),  # out of time at 6: final evaluation there
        (20, 0, 1, [4, 8], 8),  # early stop at 8 (no improvement): not evaluated twice
    ],
)
def test_fit_evaluates_saves_and_stops_in_order(total: int, stop_at_time: int, early_stop: int, evals: list[int],
                                                last_step: int) -> None:
    scores = [0.5, 0.4, 0.6, 0.7, 0.8]
    task = Scripted(scores, eval_every=4, save_every=5, stop_at_time=stop_at_time,
                    early_stop=early_stop)
    state = fit(task, TrainState(total_steps=total))
    assert state.step == last_step and state.images_seen == 4 * last_step
    assert [s for kind, s in task.calls if kind == "eval"] == evals
    assert task.calls[-1] == ("save", last_step)  # the resume state of the last step is always written
    assert [s for kind, s in task.calls if kind == "save"][:-1] == [s for s in (5, 10, 15) if s <= last_step]
    after_loop = task.calls[task.calls.index(("stop_data", -1)) + 1:]  # data stops first
    assert after_loop in ([("eval", last_step), ("save", last_step)], [("save", last_step)])
    assert state.best_value == max(scores[: len(evals)])


def test_state_round_trips_through_last_pt_keys() -> None:
    state = TrainState(total_steps=100, step=30, images_seen=240, counters={"bad": 1})
    state.record_eval({"synth/cer": 0.5}, "synth/cer", minimise=True)
    saved = state.to_dict()
    assert set(saved) == {"schedule", "step", "images_seen", "best", "counters"}
    assert saved["best"] == {"value": 0.5, "step": 30, "metrics": {"synth/cer": 0.5}, "bad_evals": 0}
    back = TrainState.from_dict(saved, max_steps=50)
    assert back.total_steps == 50 and back.step == 30 and back.best_value == 0.5 and back.counters == {"bad": 1}
    assert not back.record_eval({"synth/cer": 0.6}, "synth/cer", minimise=True) and back.bad_evals == 1
