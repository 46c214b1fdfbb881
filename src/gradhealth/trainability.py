"""Trainability: the longest delay a model can actually learn, beside the gradient horizon of the same weights.

Opt-in, because it trains. Fresh copies of the user's model (its current weights: the initialisation being judged)
get a linear readout on the output of the last step and are trained with Adam on a synthetic memory task at a
given delay:

- ``copy``: a cue (one of ``n_symbols`` one-hot symbols on the first input features) at the first step, then
  gaussian distractors on the other input features; recall the cue at the last step (classification; success:
  accuracy >= ``threshold``, default 0.9, chance 1/``n_symbols``).
- ``delayed_recall``: the same without distractors (zeros after the cue): the easiest memory task.
- ``adding``: the adding problem of Hochreiter & Schmidhuber (1997): a value and a marker per step, two marked
  steps (the first at the first step, the second uniformly in the sequence); output their sum at the last step
  (regression; success: mean absolute error <= ``threshold``, default 0.04, H&S's criterion).

A delay of ``d`` means the cue sits ``d - 1`` steps before the readout step, so the sequence is ``d`` steps long,
the same unit as the gradient horizon (a horizon of H: g(k) >= ε up to lag H - 1): a delay line of length n,
which sees its last n inputs, learns delay n and not n + 1.

Search (grow, then bisect): delays 1, 2, 4, ... double while learned, up to ``max_delay``; between the last delay
learned and the first one failed, bisection finds the boundary. A delay counts as learned when at least
``min_successes`` of ``seeds`` seeded runs reach the threshold within ``max_steps`` steps (checked on a fixed
evaluation batch every ``eval_every`` steps; a run stops at its first success). Each run is seeded from
(``seed``, delay, run), so the answer is the same on every call on a CPU, unless ``time_budget`` seconds run out:
then the search stops and the result says the largest delay is a lower bound.

    >>> from gradhealth.reference import DelayLine
    >>> result = learnable_delay(DelayLine(4, 3), task="copy", max_delay=8, seeds=1, max_steps=150)
    >>> result.largest_delay, result.failed_delay
    (3, 4)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradhealth.errors import ConfigError

__all__ = ["TASKS", "TrainabilityResult", "Trial", "learnable_delay", "runs_at_delay"]

#: The tasks and their default success thresholds (accuracy at least / mean absolute error at most).
TASKS = {"copy": 0.9, "delayed_recall": 0.9, "adding": 0.04}


@dataclass
class Trial:
    """One training run at one delay."""

    delay: int
    run: int
    learned: bool
    score: float
    steps: int


@dataclass
class TrainabilityResult:
    """The answer of :func:`learnable_delay`.

    Attributes:
        task: the task name.
        threshold: the success threshold (accuracy at least, or for ``adding`` mean absolute error at most).
        largest_delay: the largest delay learned (0: not even delay 1).
        failed_delay: the smallest delay found not learned (``None``: every delay up to ``max_delay`` learned).
        is_lower_bound: the time budget ran out before the search ended, or ``max_delay`` was learned.
        trials: every run, in the order run.
        horizon: the gradient horizon of the same initialisation (``None`` when not measured).
        seconds: wall time of the search.
        horizon_reached: whether the profile fell below ε within K = ``max_delay`` (else ``horizon`` is
            extrapolated or ``inf``).
    """

    task: str
    threshold: float
    largest_delay: int
    failed_delay: int | None
    is_lower_bound: bool
    trials: list[Trial] = field(default_factory=list)
    horizon: float | None = None
    seconds: float = 0.0
    horizon_reached: bool = True


def learnable_delay(
    model: Any,
    *,
    task: str = "copy",
    max_delay: int = 256,
    seeds: int = 3,
    min_successes: int | None = None,
    max_steps: int = 400,
    time_budget: float | None = None,
    threshold: float | None = None,
    batch_size: int = 32,
    lr: float = 1e-2,
    n_symbols: int = 4,
    eval_every: int = 10,
    seed: int = 0,
    input_size: int | None = None,
    with_horizon: bool = True,
    progress: Callable[[Trial], None] | None = None,
) -> TrainabilityResult:
    """Find the largest delay the model learns on ``task`` by a grow-then-bisect search (see the module doc).

    Args:
        model: the model at the initialisation to judge; it is copied, never trained itself.
        task: ``copy``, ``delayed_recall`` or ``adding``.
        max_delay: the longest delay tried.
        seeds: training runs per delay.
        min_successes: runs that must succeed for a delay to count as learned [a majority of ``seeds``].
        max_steps: the step budget of one run.
        time_budget: seconds for the whole search; ``None`` for no limit.
        threshold: the success threshold [:data:`TASKS`].
        batch_size: training sequences per step.
        lr: Adam's learning rate.
        n_symbols: cue symbols of ``copy`` / ``delayed_recall``.
        eval_every: steps between checks on the fixed evaluation batch.
        seed: seeds every run (with the delay and the run number).
        input_size: features per step, for a model that does not tell.
        with_horizon: also audit the same weights' gradient horizon (K = ``max_delay``, the quick preset).
        progress: called with each finished run.

    Raises:
        ConfigError: a setting is invalid.
    """
    setup = _make_setup(
        model, task, seeds, min_successes, max_steps, threshold, batch_size, lr, n_symbols, eval_every, seed, input_size
    )
    if isinstance(max_delay, bool) or not isinstance(max_delay, int) or max_delay < 1:
        raise ConfigError("max_delay", max_delay, "must be a positive integer")
    start = time.perf_counter()
    deadline = start + time_budget if time_budget is not None else math.inf
    trials: list[Trial] = []

    def learned(delay: int) -> bool | None:
        return setup.learned(delay, trials, deadline, progress)

    good, bad, timed_out = 0, None, False
    delay = 1
    while delay <= max_delay:
        outcome = learned(delay)
        if outcome is None:
            timed_out = True
            break
        if not outcome:
            bad = delay
            break
        good = delay
        delay = min(delay * 2, max_delay) if delay < max_delay else max_delay + 1
    while not timed_out and bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        outcome = learned(middle)
        if outcome is None:
            timed_out = True
        elif outcome:
            good = middle
        else:
            bad = middle
    horizon, reached = None, True
    if with_horizon:
        from gradhealth.engine import audit

        metrics = audit(model, seq_len=max_delay, probes="quick", seed=seed, input_size=input_size).metrics
        horizon, reached = metrics.horizon, metrics.horizon_reached
    return TrainabilityResult(
        task,
        setup.threshold,
        good,
        bad,
        timed_out or bad is None,
        trials,
        horizon,
        time.perf_counter() - start,
        reached,
    )


def runs_at_delay(
    model: Any,
    delay: int,
    *,
    task: str = "copy",
    seeds: int = 3,
    min_successes: int | None = None,
    max_steps: int = 400,
    threshold: float | None = None,
    batch_size: int = 32,
    lr: float = 1e-2,
    n_symbols: int = 4,
    eval_every: int = 10,
    seed: int = 0,
    input_size: int | None = None,
) -> tuple[bool, list[Trial]]:
    """Whether the model learns one delay (the rule of :func:`learnable_delay`), with the runs it took.

    The runs stop as soon as the answer is certain (enough successes, or too few runs left to reach them).
    """
    setup = _make_setup(
        model, task, seeds, min_successes, max_steps, threshold, batch_size, lr, n_symbols, eval_every, seed, input_size
    )
    trials: list[Trial] = []
    return setup.learned(delay, trials, math.inf, None) is True, trials


def _make_setup(
    model: Any,
    task: str,
    seeds: int,
    min_successes: int | None,
    max_steps: int,
    threshold: float | None,
    batch_size: int,
    lr: float,
    n_symbols: int,
    eval_every: int,
    seed: int,
    input_size: int | None,
) -> _Setup:
    from gradhealth import plugins

    if task not in TASKS:
        raise ConfigError("task", task, f"trainability tasks: {', '.join(TASKS)}")
    for name, value in (("seeds", seeds), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(name, value, "must be a positive integer")
    needed = min_successes if min_successes is not None else seeds // 2 + 1
    if not 1 <= needed <= seeds:
        raise ConfigError("min_successes", min_successes, f"must lie in 1..seeds ({seeds})")
    adapter = plugins.adapt(model, None)
    features = input_size or adapter.input_size
    if features is None or features < 2 or (task != "adding" and features < n_symbols):
        raise ConfigError("input_size", features, f"the {task} task needs at least {max(2, n_symbols)} input features")
    return _Setup(
        adapter,
        task,
        features,
        threshold if threshold is not None else TASKS[task],
        batch_size,
        lr,
        n_symbols,
        eval_every,
        max_steps,
        seed,
        seeds,
        needed,
    )


class _Setup:
    """What every run shares: the task, the budgets, and how to make one seeded run."""

    def __init__(
        self,
        adapter: Any,
        task: str,
        features: int,
        threshold: float,
        batch_size: int,
        lr: float,
        n_symbols: int,
        eval_every: int,
        max_steps: int,
        seed: int,
        seeds: int,
        needed: int,
    ) -> None:
        self.adapter, self.task, self.features, self.threshold = adapter, task, features, threshold
        self.batch_size, self.lr, self.n_symbols = batch_size, lr, n_symbols
        self.eval_every, self.max_steps, self.seed = eval_every, max_steps, seed
        self.seeds, self.needed = seeds, needed

    def learned(
        self, delay: int, trials: list[Trial], deadline: float, progress: Callable[[Trial], None] | None
    ) -> bool | None:
        """Whether ``needed`` of ``seeds`` runs learn the delay (``None``: the deadline passed first)."""
        wins = 0
        for run in range(self.seeds):
            if time.perf_counter() > deadline:
                return None
            trial = self.train(delay, run)
            trials.append(trial)
            if progress is not None:
                progress(trial)
            wins += trial.learned
            if wins >= self.needed or wins + self.seeds - run - 1 < self.needed:
                break
        return wins >= self.needed

    def train(self, delay: int, run: int) -> Trial:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + delay * 1009 + run)
            gen = torch.Generator().manual_seed(self.seed * 7919 + delay * 31 + run)
            model = self.adapter.materialize(torch.float32, torch.device("cpu"))
            if isinstance(model.model, nn.Module):
                model.model.train()
            eval_x, eval_y = self.batch(gen, 256, delay)
            out_features = model.run(eval_x[:1]).output.shape[-1]
            readout = nn.Linear(out_features, 1 if self.task == "adding" else self.n_symbols)
            params = [p for p in [*_parameters(model.model), *readout.parameters()] if p.requires_grad]
            opt = torch.optim.Adam(params, lr=self.lr)
            score = self.score(model, readout, eval_x, eval_y)
            for step in range(1, self.max_steps + 1):
                x, y = self.batch(gen, self.batch_size, delay)
                loss = self.loss(readout(model.run(x).output[:, -1]), y)
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                if step % self.eval_every == 0 or step == self.max_steps:
                    score = self.score(model, readout, eval_x, eval_y)
                    if self.is_success(score):
                        return Trial(delay, run, True, score, step)
            return Trial(delay, run, self.is_success(score), score, self.max_steps)

    def batch(self, gen: torch.Generator, size: int, delay: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.zeros(size, delay, self.features)
        if self.task == "adding":
            values = torch.rand(size, delay, generator=gen)
            second = torch.randint(0, delay, (size,), generator=gen)
            marks = torch.zeros(size, delay)
            marks[:, 0] = 1.0
            marks[torch.arange(size), second] = 1.0
            x[..., 0], x[..., 1] = values, marks
            target = values[:, 0] + torch.where(second == 0, 0.0, values[torch.arange(size), second])
            return x, target.unsqueeze(1)
        symbols = torch.randint(0, self.n_symbols, (size,), generator=gen)
        if self.task == "copy" and self.features > self.n_symbols:
            x[:, 1:, self.n_symbols :] = torch.randn(size, delay - 1, self.features - self.n_symbols, generator=gen)
        x[torch.arange(size), 0, symbols] = 1.0
        return x, symbols

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "adding":
            return (prediction - target).pow(2).mean()
        return nn.functional.cross_entropy(prediction, target)

    def score(self, model: Any, readout: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            prediction = readout(model.run(x).output[:, -1])
        if self.task == "adding":
            return float((prediction - y).abs().mean())
        return float((prediction.argmax(-1) == y).float().mean())

    def is_success(self, score: float) -> bool:
        return score <= self.threshold if self.task == "adding" else score >= self.threshold


def _parameters(model: Any) -> list[nn.Parameter]:
    return list(model.parameters()) if isinstance(model, nn.Module) else []
