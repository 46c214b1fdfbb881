"""``gradhealth trainability``: the longest delay a model learns on a memory task, beside its gradient horizon.

Opt-in (it trains fresh copies of the model). The model comes from ``--model package.module:factory`` (code named
on the command line, never read from a file) or ``--demo NAME`` (one of the demo's models). Heavy imports happen
inside the command.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gradhealth.cli._common import clean_errors, die
from gradhealth.cli._options import cli_option

__all__ = ["register", "trainability"]

HELP = """Measure the longest delay a model can learn (copy / delayed_recall / adding), beside its gradient horizon.

Fresh copies of the model, with a linear readout added, are trained at growing delays (1, 2, 4, ...), then the
boundary is bisected; a delay counts as learned when a majority of --seeds runs reach the task's threshold
within --max-steps steps (see gradhealth.trainability). Seeded: the same answer on every run on a CPU, unless
--time-budget runs out (then the answer is a lower bound).

Examples:

  gradhealth trainability --demo "chrono LSTM" --max-delay 64

  gradhealth trainability --model mypkg.models:make_encoder --task adding --time-budget 300
"""


def trainability(
    model: Annotated[
        str | None, typer.Option("--model", help="package.module:factory returning the model (runs that code).")
    ] = None,
    model_kwargs: Annotated[
        str | None, typer.Option("--model-kwargs", help="JSON object of keyword arguments for the factory.")
    ] = None,
    demo: Annotated[
        str | None, typer.Option("--demo", help="A demo model by name instead (see gradhealth demo).")
    ] = None,
    task: Annotated[str | None, typer.Option("--task", help="copy, delayed_recall or adding [copy].")] = None,
    max_delay: Annotated[int | None, typer.Option("--max-delay", min=1, help="Longest delay tried [256].")] = None,
    seeds: Annotated[int | None, typer.Option("--seeds", min=1, help="Training runs per delay [3].")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="Step budget of one run [400].")] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", min=0, help="Seconds for the whole search (default: no limit).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Success: accuracy at least / adding error at most.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Seed of every run [0].")] = None,
    debug: bool = cli_option("debug"),
) -> None:
    """Measure the longest delay a model can learn, beside its gradient horizon."""
    from rich.console import Console

    from gradhealth.formatting import format_horizon

    console, errors = Console(), Console(stderr=True)
    with clean_errors(debug):
        net = _model(model, model_kwargs, demo)
        given: dict[str, Any] = {"task": task, "max_delay": max_delay, "seeds": seeds, "max_steps": max_steps}
        given |= {"time_budget": time_budget, "threshold": threshold, "seed": seed}
        from gradhealth.trainability import learnable_delay

        def progress(trial: Any) -> None:
            outcome = "learned" if trial.learned else "not learned"
            errors.print(
                f"delay {trial.delay:>4}  run {trial.run}  {outcome:<11}  score {trial.score:.3g} "
                f"after {trial.steps} steps",
                highlight=False,
            )

        result = learnable_delay(net, progress=progress, **{k: v for k, v in given.items() if v is not None})
        bound = "≥ " if result.is_lower_bound else ""
        failed = f", not {result.failed_delay}" if result.failed_delay is not None else ""
        horizon = format_horizon(result.horizon, reached=result.horizon_reached)
        console.print(
            f"{result.task}: largest delay learned {bound}{result.largest_delay}{failed} "
            f"({len(result.trials)} runs, {result.seconds:.0f} s); gradient horizon of the same weights {horizon}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def _model(spec: str | None, kwargs_text: str | None, demo: str | None) -> Any:
    if (spec is None) == (demo is None):
        die("give exactly one of --model package.module:factory or --demo NAME")
    if demo is not None:
        from gradhealth.demo import DEMO_MODELS, build_demo_models

        if demo not in DEMO_MODELS:
            die(f"--demo {demo!r}: not a demo model; choose one of {', '.join(DEMO_MODELS)}")
        return build_demo_models(seq_len=150)[demo]
    from gradhealth.loaders.factory import build_from_factory, parse_model_kwargs

    assert spec is not None
    return build_from_factory(spec, parse_model_kwargs(kwargs_text))


def register(app: typer.Typer) -> None:
    """Add the ``trainability`` command to the app."""
    app.command("trainability", help=HELP)(trainability)
