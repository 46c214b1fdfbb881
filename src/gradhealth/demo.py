"""The vanishing-gradient story in one call: four recurrent cells and an attention layer audited side by side.

A vanilla tanh RNN, an LSTM and a GRU with PyTorch's default initialisation, an LSTM with chrono-initialised
gates (:func:`gradhealth.reference.chrono_lstm`, Tallec & Ollivier 2018), and one causal self-attention layer
(:class:`gradhealth.reference.CausalSelfAttention`), all with the same input and hidden size, are probed at the
same dependency length K. The three default cells forget within about ten steps; the chrono LSTM carries gradient
across all K steps; attention reaches every earlier step directly, so its profile does not decay at all.
``gradhealth demo`` prints this, with the longest delay each model learned on the copy task (measured by
``benchmarks/bench_trainability.py`` and shipped with the package: :func:`learned_delays`); :func:`run_demo`
returns the reports.

    >>> from gradhealth.demo import run_demo
    >>> reports = run_demo(seq_len=60)
    >>> reports["tanh RNN"].verdict, reports["chrono LSTM"].verdict
    ('vanishing', 'healthy')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradhealth.errors import ConfigError

if TYPE_CHECKING:
    from rich.table import Table

    from gradhealth.report import Report

__all__ = [
    "DEMO_MODELS",
    "RECURRENT_MODELS",
    "build_demo_models",
    "demo_sparklines",
    "demo_summary",
    "demo_table",
    "learned_delays",
    "remedies_table",
    "run_demo",
]

#: The recurrent models of the demo, in display order.
RECURRENT_MODELS = ("tanh RNN", "LSTM", "GRU", "chrono LSTM")
#: The models of the demo, in display order.
DEMO_MODELS = (*RECURRENT_MODELS, "attention")


def build_demo_models(*, seq_len: int, input_size: int = 8, hidden_size: int = 48, seed: int = 0) -> dict[str, Any]:
    """Build the five demo models with seeded weights, leaving the global RNG untouched.

    Args:
        seq_len: the dependency length K; the chrono LSTM's longest gate timescale is set to it.
        input_size: features per step.
        hidden_size: hidden units of every model.
        seed: seed of the weight initialisation.

    Returns:
        Models by name, in :data:`DEMO_MODELS` order.
    """
    import torch
    from torch import nn

    from gradhealth.reference import CausalSelfAttention, chrono_lstm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {
            "tanh RNN": nn.RNN(input_size, hidden_size, nonlinearity="tanh", batch_first=True),
            "LSTM": nn.LSTM(input_size, hidden_size, batch_first=True),
            "GRU": nn.GRU(input_size, hidden_size, batch_first=True),
            "chrono LSTM": chrono_lstm(input_size, hidden_size, max(seq_len, 3), seed=seed),
            "attention": CausalSelfAttention(input_size, hidden_size),
        }


def run_demo(
    *,
    seq_len: int = 150,
    input_size: int = 8,
    hidden_size: int = 48,
    batch_size: int = 8,
    task: str = "noise",
    seed: int = 0,
    probes: str | list[str] = "quick",
) -> dict[str, Report]:
    """Audit the five demo models on the same task and dependency length.

    Args:
        seq_len: the dependency length K (lags 0..K are probed).
        input_size: features per step.
        hidden_size: hidden units of every model.
        batch_size: probe sequences per model.
        task: input task name (see :func:`gradhealth.audit`).
        seed: seeds the weights and the probe inputs.
        probes: probe preset or names (``"quick"``: the lag profile only).

    Returns:
        The reports by model name, in :data:`DEMO_MODELS` order.

    Raises:
        ConfigError: a setting is invalid.
    """
    from gradhealth.engine import audit

    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ConfigError("seq_len", seq_len, "the demo needs an integer K >= 2")
    models = build_demo_models(seq_len=seq_len, input_size=input_size, hidden_size=hidden_size, seed=seed)
    return {
        name: audit(model, seq_len=seq_len, batch_size=batch_size, task=task, seed=seed, probes=probes)
        for name, model in models.items()
    }


def demo_table(reports: dict[str, Report], learned: dict[str, str] | None = None) -> Table:
    """A rich table: one row per model with its verdict, horizon, decay rate and half-life, and the longest delay
    it learned on the copy task where ``learned`` (from :func:`learned_delays`) has it."""
    from rich.table import Table

    from gradhealth.formatting import VERDICT_STYLES, format_horizon, format_number

    first = next(iter(reports.values()))
    eps = float(first.config.get("eps", 1e-2))
    table = Table(title=f"Gradient through time at K = {first.config.get('seq_len')} (ε = {eps:g})")
    table.add_column("model")
    table.add_column("verdict")
    table.add_column("horizon", justify="right")
    table.add_column("decay rate", justify="right")
    table.add_column("half-life", justify="right")
    if learned is not None:
        table.add_column("learned delay", justify="right")
    for name, report in reports.items():
        m = report.metrics
        horizon = format_horizon(m.horizon, reached=m.horizon_reached, censored=m.horizon_censored, compact=True)
        style = VERDICT_STYLES.get(report.verdict, "")
        table.add_row(
            name,
            f"[{style}]{report.verdict}[/]" if style else report.verdict,
            horizon,
            format_number(m.decay_rate, "/step"),
            format_number(m.half_life, " steps"),
            *([learned.get(name, "—")] if learned is not None else []),
        )
    return table


def learned_delays() -> tuple[dict[str, str], str]:
    """The longest delay each demo model (and each remedy) learned on the copy task, as shipped with the package.

    Measured by ``python benchmarks/bench_trainability.py`` at the demo's default sizes (8 inputs, 48 units,
    seed 0); rerun it to reproduce or refresh. Returns the delays as text by model name (``≥ n``: a lower bound,
    the search's largest delay was learned), and one line saying how they were measured.
    """
    data = _shipped_trainability()
    settings = data["settings"]
    delays = {row["model"]: f"{'≥ ' if row['is_lower_bound'] else ''}{row['learned_delay']}" for row in data["rows"]}
    note = (
        f"learned delay: the longest delay learned on the copy task (accuracy ≥ {settings['threshold']:g}, "
        f"{settings['seeds']} seeds, {settings['max_steps']} steps, up to {settings['max_delay']}), from "
        "benchmarks/bench_trainability.py at hidden size "
        f"{settings['hidden_size']} (gradhealth.trainability.learnable_delay measures any model)"
    )
    return delays, note


def demo_sparklines(reports: dict[str, Report], *, width: int = 50) -> str:
    """One text sparkline per model: g(k) on a log scale from lag 0 (left) to K (right), blank below 1e-12."""
    from gradhealth.render.text import sparkline

    pad = max(len(name) for name in reports)
    lines = [f"{'g(k), log scale':<{pad}}  lag 0 → K"]
    lines += [f"{name:<{pad}} |{sparkline(r.profile.g, width=width)}|" for name, r in reports.items()]
    return "\n".join(lines)


def demo_summary(reports: dict[str, Report]) -> str:
    """Two sentences saying what the demo shows, with the measured numbers."""
    first = next(iter(reports.values()))
    k = first.config.get("seq_len")
    eps = float(first.config.get("eps", 1e-2))
    vanishing = [name for name, r in reports.items() if r.verdict == "vanishing"]
    short = [r.metrics.horizon for r in reports.values() if r.verdict == "vanishing"]
    recurrent = {name: r for name, r in reports.items() if name != "attention"} or reports
    best_name, best = max(recurrent.items(), key=lambda item: item[1].metrics.horizon)
    first_sentence = (
        f"Each row is one model's gradient g(k) flowing back k steps from a loss at the last step, relative to "
        f"lag 0; the horizon is how many steps it stays above ε = {eps:g}, and the task needs K = {k}."
    )
    if vanishing:
        span = f"{min(short):.0f}-{max(short):.0f}" if min(short) != max(short) else f"{min(short):.0f}"
        second = (
            f"The {_join(vanishing)} lose the gradient within {span} steps (vanishing), while the "
            f"{best_name} keeps it for {_horizon_words(best)}"
            + (", because its forget gates start with long timescales." if best_name == "chrono LSTM" else ".")
        )
    else:
        second = f"No model vanishes at this K; the {best_name} keeps gradient longest ({_horizon_words(best)})."
    if "attention" in reports:
        second += " Attention reaches every earlier step in one hop, so its profile does not decay with the lag."
    return f"{first_sentence}\n{second}"


def _horizon_words(report: Report) -> str:
    m = report.metrics
    if m.horizon_reached:
        return f"{m.horizon:.0f} steps"
    return "all K steps and beyond"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def remedies_table() -> Table:
    """The remedies, measured (shipped results of ``benchmarks/bench_trainability.py``): orthogonal and identity
    initialisation of the tanh RNN (horizon and learned delay against the default), and gradient clipping on an
    exploding tanh RNN (final and worst training loss without and with ``clip_grad_norm_``)."""
    import math

    from rich.table import Table

    from gradhealth.formatting import format_number

    data = _shipped_trainability()
    table = Table(title="Remedies, measured (benchmarks/bench_trainability.py)")
    table.add_column("remedy")
    table.add_column("horizon at init", justify="right")
    table.add_column("learned delay / training loss", justify="right")
    for row in data["rows"]:
        if row["model"].startswith("tanh RNN"):
            learned = f"{'≥ ' if row['is_lower_bound'] else ''}{row['learned_delay']}"
            horizon = format_number(row["horizon"]) if row["horizon_reached"] else "beyond K"
            table.add_row(row["model"], horizon, learned)
    clipping = data["clipping"]
    for arm in ("without", "with"):
        losses = clipping["losses"][arm]
        finite = [v for v in losses if math.isfinite(v)]
        worst = format_number(max(finite)) if finite else "nan"
        final = format_number(losses[-1]) if math.isfinite(losses[-1]) else "diverged (NaN)"
        table.add_row(f"exploding tanh RNN, {arm} clipping", "", f"loss {final}, worst {worst}")
    return table


def _shipped_trainability() -> dict[str, Any]:
    import json
    from importlib import resources

    from gradhealth.report import decode_floats

    text = resources.files("gradhealth").joinpath("data").joinpath("trainability.json").read_text("utf-8")
    return dict(decode_floats(json.loads(text)))
