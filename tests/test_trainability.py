"""Trainability: the grow-then-bisect search finds the analytic answer of a delay line, and tells a tanh RNN from a
chrono-initialised LSTM on the copy task."""

from __future__ import annotations

import pytest
import torch

from gradhealth.errors import ConfigError
from gradhealth.reference import DelayLine, chrono_lstm
from gradhealth.trainability import learnable_delay, runs_at_delay


def test_a_delay_line_of_length_n_learns_delay_n_and_not_n_plus_1() -> None:
    # A delay line of length 5 outputs the sum of its last 5 inputs: the cue is visible to the readout up to
    # delay 5 (4 steps back) and gone at delay 6, whatever the training; its gradient horizon is 5 too.
    before = torch.get_rng_state()
    result = learnable_delay(DelayLine(6, 5), task="copy", max_delay=12, seeds=1, max_steps=200)
    assert (result.largest_delay, result.failed_delay, result.is_lower_bound) == (5, 6, False)
    assert result.horizon == 5
    assert [t.delay for t in result.trials] == [1, 2, 4, 8, 6, 5]  # grow 1, 2, 4, 8; bisect 6, 5
    assert torch.equal(torch.get_rng_state(), before)


def test_a_tanh_rnn_fails_the_copy_task_at_a_delay_a_chrono_lstm_learns() -> None:
    torch.manual_seed(0)
    rnn = torch.nn.RNN(8, 16, batch_first=True)
    lstm = chrono_lstm(8, 16, 60)
    settings = {"task": "copy", "seeds": 3, "max_steps": 300}
    rnn_learned, rnn_runs = runs_at_delay(rnn, 30, **settings)
    lstm_learned, lstm_runs = runs_at_delay(lstm, 30, **settings)
    assert not rnn_learned and lstm_learned
    assert all(t.score < 0.9 for t in rnn_runs) and len(rnn_runs) == 2  # stopped once the majority failed
    assert all(t.score >= 0.9 for t in lstm_runs)


def test_runs_are_seeded_and_leave_the_model_alone() -> None:
    model = torch.nn.GRU(4, 6, batch_first=True)
    weights = [p.detach().clone() for p in model.parameters()]
    first = runs_at_delay(model, 3, seeds=2, max_steps=20, eval_every=5)
    second = runs_at_delay(model, 3, seeds=2, max_steps=20, eval_every=5)
    assert first == second
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights, strict=True))
    assert model.training and all(p.grad is None for p in model.parameters())


def test_adding_targets_are_the_sum_of_the_marked_values() -> None:
    from gradhealth import plugins
    from gradhealth.trainability import _Setup

    setup = _Setup(plugins.adapt(DelayLine(3, 2), None), "adding", 3, 0.04, 8, 0.01, 4, 10, 10, 0, 1, 1)
    x, y = setup.batch(torch.Generator().manual_seed(1), 64, 7)
    assert x.shape == (64, 7, 3) and torch.all(x[:, 0, 1] == 1) and torch.all(x[..., 2] == 0)
    assert torch.all(x[..., 1].sum(1) <= 2)
    assert torch.allclose(y[:, 0], (x[..., 0] * x[..., 1]).sum(1))


def test_an_exhausted_time_budget_gives_a_lower_bound() -> None:
    out = learnable_delay(DelayLine(4, 3), max_delay=8, time_budget=0.0, with_horizon=False)
    assert (out.largest_delay, out.failed_delay, out.is_lower_bound, out.trials) == (0, None, True, [])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "parity"}, "trainability tasks"),
        ({"max_delay": 0}, "max_delay"),
        ({"seeds": 2, "min_successes": 3}, "min_successes"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        learnable_delay(DelayLine(4, 2), **kwargs)  # type: ignore[arg-type]


def test_too_few_input_features_for_the_symbols() -> None:
    with pytest.raises(ConfigError, match="at least 4 input features"):
        learnable_delay(DelayLine(2, 2), task="copy")
