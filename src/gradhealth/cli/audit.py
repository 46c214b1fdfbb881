"""``gradhealth audit``: audit saved checkpoints, render the reports, gate on thresholds and baselines.

torch, the loaders and the engine are imported inside the functions, so ``gradhealth audit --help`` stays cheap.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gradhealth.cli._common import Settings, clean_errors, die, expand_inputs, load_settings, one_line, write_output
from gradhealth.errors import ConfigError, GradhealthError

if TYPE_CHECKING:
    from gradhealth.config import AuditConfig
    from gradhealth.gates import Gates
    from gradhealth.render.registry import NamedReport
    from gradhealth.report import Report

__all__ = ["AuditJob", "audit_checkpoint", "register"]

EXAMPLES = """Audit saved checkpoints: format detected by content, weights loaded safely, recurrent layers rebuilt.

Examples:

  gradhealth audit runs/*.pt --seq-len 256 --format json > report.json

  gradhealth audit model.safetensors --model mypkg.models:make_encoder --min-horizon 100

  gradhealth audit ckpt.pt --baseline main-report.json --max-horizon-drop 20%

Exit codes: 0 all gates pass, 1 a gate failed, 2 bad usage or an input that cannot be audited.
"""

#: Settings read from [tool.gradhealth] besides the command line, and their defaults.
DEFAULTS: dict[str, Any] = {
    "seq_len": 100,
    "batch_size": 32,
    "task": "noise",
    "seed": 0,
    "dtype": None,
    "probes": "standard",
    "eps": 1e-2,
    "input_scale": 1.0,
    "input_size": None,
    "format": "table",
    "fail_on": None,
    "min_horizon": None,
    "max_decay_rate": None,
    "baseline": None,
    "max_horizon_drop": None,
    "jobs": 1,
    "nonlinearity": "tanh",
    "model": None,
    "model_kwargs": None,
    "allow_global": (),
    "trust": False,
}


@dataclass(frozen=True)
class AuditJob:
    """Everything a worker process needs to audit one input (plain data, so it pickles)."""

    config: dict[str, Any]
    load_options: dict[str, Any]
    model_options: dict[str, Any] = field(default_factory=dict)
    debug: bool = False


def audit_checkpoint(path: str, job: AuditJob) -> list[NamedReport]:
    """Load one checkpoint and audit every model found in it; an error becomes an entry, never an exception."""
    from gradhealth.config import AuditConfig
    from gradhealth.engine import run_audit
    from gradhealth.loaders import models_to_audit, open_checkpoint
    from gradhealth.render.registry import NamedReport

    try:
        checkpoint = open_checkpoint(Path(path), job.load_options)
        models = models_to_audit(checkpoint, job.model_options)
        config = AuditConfig.from_dict(job.config)
        entries = []
        for layer, module in models:
            name = path if job.model_options.get("model") else f"{path}:{layer}"
            report = run_audit(module, config)
            report.model.update(checkpoint=path, checkpoint_format=checkpoint.format, layer=layer)
            entries.append(NamedReport(name, path, layer, report))
        return entries
    except (GradhealthError, OSError, ValueError) as exc:
        if job.debug:
            traceback.print_exc(file=sys.stderr)
        return [NamedReport(path, path, None, None, error=one_line(exc))]


def _config(settings: Settings, cli: dict[str, Any]) -> AuditConfig:
    from gradhealth.config import PRESETS, AuditConfig

    values, sources = {}, {}
    for name in ("seq_len", "batch_size", "task", "seed", "dtype", "probes", "eps", "input_scale", "input_size"):
        values[name], sources[name] = settings.pick(name, cli.get(name), DEFAULTS[name])
    probes = values["probes"]
    if isinstance(probes, str) and probes not in PRESETS:
        values["probes"] = tuple(p.strip() for p in probes.split(",") if p.strip())
    elif isinstance(probes, list):
        values["probes"] = tuple(probes)
    if values["dtype"] == "auto":
        values["dtype"] = None
    try:
        return AuditConfig(**values)
    except ConfigError as exc:
        raise ConfigError(exc.name, exc.value, str(exc).split(": ", 1)[-1], source=sources.get(exc.name, "?")) from exc


def _gates(settings: Settings, cli: dict[str, Any]) -> tuple[Gates, dict[str, Report]]:
    from gradhealth.gates import Gates, parse_drop, parse_verdicts
    from gradhealth.render.json import read_reports

    fail_on, fail_src = settings.pick("fail_on", cli.get("fail_on"))
    min_horizon, _ = settings.pick("min_horizon", cli.get("min_horizon"))
    max_decay, _ = settings.pick("max_decay_rate", cli.get("max_decay_rate"))
    baseline_path, baseline_src = settings.pick("baseline", cli.get("baseline"))
    drop_text, drop_src = settings.pick("max_horizon_drop", cli.get("max_horizon_drop"))
    baselines: dict[str, Report] = {}
    if baseline_path is not None:
        try:
            entries = read_reports(Path(baseline_path).read_text(encoding="utf-8"), name=str(baseline_path))
        except UnicodeDecodeError as exc:
            raise ConfigError(
                "baseline", str(baseline_path), "not a gradhealth report (binary file)", source=baseline_src
            ) from exc
        except (OSError, ValueError) as exc:
            raise ConfigError("baseline", str(baseline_path), one_line(exc), source=baseline_src) from exc
        baselines = {e.name: e.report for e in entries if e.report is not None}
    elif drop_text is not None:
        raise ConfigError(
            "max_horizon_drop", drop_text, "needs --baseline REPORT.json to compare with", source=drop_src
        )
    gates = Gates(
        fail_on=parse_verdicts(fail_on, source=fail_src) if fail_on else frozenset(),
        min_horizon=float(min_horizon) if min_horizon is not None else None,
        max_decay_rate=float(max_decay) if max_decay is not None else None,
        max_horizon_drop=parse_drop(str(drop_text if drop_text is not None else "0"), source=drop_src)
        if baselines
        else None,
    )
    return gates, baselines


def _baseline_for(entry: NamedReport, baselines: dict[str, Report]) -> Report | None:
    if len(baselines) == 1:
        return next(iter(baselines.values()))
    for key in (entry.name, entry.layer, Path(entry.path).name):
        if key in baselines:
            return baselines[key]
    return None


def _apply_gates(entries: list[NamedReport], gates: Gates, baselines: dict[str, Report]) -> None:
    import dataclasses

    from gradhealth.gates import GateResult, evaluate_gates

    for entry in entries:
        if entry.report is None:
            continue
        entry_gates = gates
        if baselines:
            baseline = _baseline_for(entry, baselines)
            if baseline is None:
                entry.gates.append(GateResult("max_horizon_drop", False, f"the baseline has no entry for {entry.name}"))
                entry_gates = dataclasses.replace(gates, max_horizon_drop=None)
            else:
                entry_gates = dataclasses.replace(gates, baseline=baseline)
        entry.gates.extend(evaluate_gates(entry.report, entry_gates))


def _run_all(inputs: list[str], job: AuditJob, jobs: int, progress: bool) -> list[NamedReport]:
    results: dict[str, list[NamedReport]] = {}
    advance: Callable[[], None] = lambda: None  # noqa: E731
    bar = None
    if progress:
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        task = bar.add_task("auditing", total=len(inputs))
        advance = lambda: bar.advance(task)  # noqa: E731
        bar.start()
    try:
        if jobs > 1 and len(inputs) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn, not fork: forking a process that already runs torch's thread pools can deadlock.
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(audit_checkpoint, path, job): path for path in inputs}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    advance()
        else:
            for path in inputs:
                results[path] = audit_checkpoint(path, job)
                advance()
    finally:
        if bar is not None:
            bar.stop()
    return [entry for path in inputs for entry in results[path]]


def _exit_code(entries: Sequence[NamedReport]) -> int:
    if any(e.status == "error" for e in entries):
        return 2
    return 1 if any(e.status == "fail" for e in entries) else 0


def audit_command(
    inputs: Annotated[list[str], typer.Argument(help="Checkpoint files, folders or globs.", show_default=False)],
    model: Annotated[
        str | None, typer.Option("--model", help="Build the architecture with package.module:factory.")
    ] = None,
    model_kwargs: Annotated[
        str | None, typer.Option("--model-kwargs", help="JSON object of factory arguments.")
    ] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="Allow code in the file (pickles, TorchScript, .pt2).")
    ] = False,
    allow_global: Annotated[
        list[str] | None, typer.Option("--allow-global", help="Allow one class, module.Name (repeatable).")
    ] = None,
    nonlinearity: Annotated[str | None, typer.Option(help="Nonlinearity of rebuilt RNN layers: tanh or relu.")] = None,
    seq_len: Annotated[
        int | None, typer.Option(help="Dependency length K: lags 0..K are probed. [default: 100]")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Probe sequences. [default: 32]")] = None,
    task: Annotated[str | None, typer.Option(help="Input task: noise, impulse, copy, adding, delayed_recall.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random draw. [default: 0]")] = None,
    dtype: Annotated[str | None, typer.Option(help="Probe dtype: auto, float64, float32, bfloat16, float16.")] = None,
    probes: Annotated[
        str | None, typer.Option(help="Preset (quick, standard, thorough) or comma-separated probes.")
    ] = None,
    eps: Annotated[float | None, typer.Option(help="Horizon threshold on g(k). [default: 0.01]")] = None,
    input_scale: Annotated[float | None, typer.Option(help="Input standard deviation. [default: 1.0]")] = None,
    input_size: Annotated[int | None, typer.Option(help="Features per step, where the model does not tell.")] = None,
    output_format: Annotated[
        str | None,
        typer.Option("--format", "-f", help="table, json, markdown, junit, github, or a plugin's. [default: table]"),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here instead of stdout.")
    ] = None,
    fail_on: Annotated[str | None, typer.Option(help="Verdicts that fail: vanishing,exploding,non_finite.")] = None,
    min_horizon: Annotated[float | None, typer.Option(help="Fail if the horizon is shorter (steps).")] = None,
    max_decay_rate: Annotated[float | None, typer.Option(help="Fail if the gradient decays faster (per step).")] = None,
    baseline: Annotated[Path | None, typer.Option(help="A previous JSON report to compare horizons with.")] = None,
    max_horizon_drop: Annotated[
        str | None, typer.Option(help="Allowed drop vs --baseline: '20%' or steps. [default: 0]")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Audit in N parallel processes. [default: 1]")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write PNG plots of each audited model into this folder.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on a terminal.")] = True,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Audit saved checkpoints for vanishing and exploding gradients through time."""
    cli = dict(locals())
    with clean_errors(debug):
        settings = load_settings()
        config = _config(settings, cli)
        gates, baselines = _gates(settings, cli)
        fmt, fmt_src = settings.pick("format", output_format, DEFAULTS["format"])
        from gradhealth.loaders.factory import parse_model_kwargs
        from gradhealth.render.registry import get_renderer

        renderer = get_renderer(str(fmt), source=fmt_src)
        n_jobs, _ = settings.pick("jobs", jobs, 1)
        spec, _ = settings.pick("model", model)
        kwargs_text, kwargs_src = settings.pick("model_kwargs", model_kwargs)
        allowed, _ = settings.pick("allow_global", tuple(allow_global or ()), ())
        job = AuditJob(
            config=config.to_dict() | {"burn_in": config.burn_in},
            load_options={"trust": trust or bool(settings.values.get("trust", False)), "allow_globals": tuple(allowed)},
            model_options={
                "model": spec,
                "model_kwargs": parse_model_kwargs(kwargs_text, source=kwargs_src),
                "nonlinearity": settings.pick("nonlinearity", nonlinearity, "tanh")[0],
            },
            debug=debug,
        )
        paths = expand_inputs(inputs)
        if not paths:
            die("no inputs: pass checkpoint files, folders or globs")
        show_bar = progress and fmt == "table" and sys.stderr.isatty() and len(paths) > 1
        entries = _run_all(paths, job, max(1, int(n_jobs)), show_bar)
        _apply_gates(entries, gates, baselines)
        color = output is None and sys.stdout.isatty()
        write_output(renderer(entries, color=color), output)
        if plot is not None:
            _save_plots(entries, plot)
        for entry in entries:
            if entry.error is not None:
                typer.echo(f"gradhealth: error: {entry.error}", err=True)
    raise typer.Exit(_exit_code(entries))


def _save_plots(entries: list[NamedReport], directory: Path) -> None:
    """One set of PNGs per audited model, named after it (``--plot DIR``)."""
    from gradhealth.plot import save_report_plots

    for entry in entries:
        if entry.report is not None:
            name = Path(entry.path).name + (f"_{entry.layer}" if entry.layer else "")
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"
            save_report_plots(entry.report, directory, stem=stem)


def register(app: typer.Typer) -> None:
    """Add ``audit`` to the app."""
    app.command("audit", help=EXAMPLES, no_args_is_help=True)(audit_command)
