"""``gradhealth audit``: audit saved checkpoints, render the reports, gate on thresholds and baselines.

torch, the loaders and the engine are imported inside the functions, so ``gradhealth audit --help`` stays cheap.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gradhealth import settings as table
from gradhealth.cli._common import clean_errors, die, error_line, expand_inputs, one_line, write_output
from gradhealth.cli._options import resolve_command_line, table_options
from gradhealth.errors import ConfigError, GradhealthError
from gradhealth.render.escape import printable

if TYPE_CHECKING:
    from gradhealth.gates import Thresholds
    from gradhealth.render.registry import NamedReport, Renderer
    from gradhealth.tasks.data import ProbeInputs

__all__ = ["AuditJob", "AuditPlan", "audit_checkpoint", "plan_audit", "register"]

EXAMPLES = """Audit saved checkpoints: format detected by content, weights loaded safely, recurrent layers rebuilt.

Examples:

  gradhealth audit runs/*.pt --seq-len 256 --format json > report.json

  gradhealth audit model.safetensors --model mypkg.models:make_encoder --min-horizon 100

  gradhealth audit ckpt.pt --baseline main-report.json --max-horizon-drop 20%

  gradhealth audit ckpt.pt --inputs val.npz:x --min-horizon 50

Settings also come from \\[tool.gradhealth] in the nearest pyproject.toml; the command line wins.

--verbose prints each setting in effect and where it came from.

Exit codes: 0 all gates pass, 1 a gate failed, 2 bad usage, an input that cannot be audited, or an internal error.
"""

#: The options of ``gradhealth audit``: every setting of the command-line face, in table order.
OPTIONS = tuple(s.name for s in table.carried_by(table.CLI))


@dataclass(frozen=True)
class AuditJob:
    """Everything a worker process needs to audit one input (plain data, so it pickles)."""

    config: dict[str, Any]
    load_options: dict[str, Any]
    model_options: dict[str, Any] = field(default_factory=dict)
    debug: bool = False
    threads: int | None = None
    threads_explicit: bool = False
    inputs: ProbeInputs | None = None


def audit_checkpoint(path: str, job: AuditJob) -> list[NamedReport]:
    """Load one checkpoint and audit every model found in it; an error becomes an entry, never an exception."""
    from gradhealth.cli._threads import torch_threads
    from gradhealth.render.registry import NamedReport

    try:
        with torch_threads(job.threads):  # loading; each model's audit sets its own below
            return _audit_models(path, job)
    except (GradhealthError, OSError, ValueError) as exc:
        if job.debug:
            traceback.print_exc(file=sys.stderr)
        # Our own messages are one line by design unless they quote a name holding a line break: keep it whole.
        message = str(exc).strip() if isinstance(exc, GradhealthError) else one_line(exc)
        return [NamedReport(path, path, None, None, error=_naming(path, message))]
    except Exception as exc:  # one input's unexpected failure must not sink the others
        if job.debug:
            traceback.print_exc(file=sys.stderr)
        hint = "" if job.debug else " (run with --debug for the traceback)"
        error = f"{path}: internal error: {type(exc).__name__}: {one_line(exc)}{hint}"
        return [NamedReport(path, path, None, None, error=error)]


def _naming(path: str, message: str) -> str:
    """The error line, starting with the input it is about unless it names it already."""
    return message if path in message else f"{path}: {message}"


def _audit_models(path: str, job: AuditJob) -> list[NamedReport]:
    from gradhealth.cli._baseline import checkpoint_key
    from gradhealth.cli._threads import threads_for_model, torch_threads
    from gradhealth.config import AuditConfig
    from gradhealth.engine import run_audit
    from gradhealth.findings import make_finding, sort_findings
    from gradhealth.loaders.layout import declared_layout
    from gradhealth.loaders.load import time_limit
    from gradhealth.memory import check_memory, estimate_for_config, module_units, state_dict_units
    from gradhealth.plugins import models_to_audit, open_checkpoint
    from gradhealth.render.registry import NamedReport

    config = AuditConfig.from_dict(job.config)
    limit = job.load_options.get("memory_limit")
    with time_limit(job.load_options.get("load_timeout"), path):
        checkpoint = open_checkpoint(Path(path), job.load_options)
        if not job.model_options.get("model"):  # the layers rebuilt from the weights, before building them
            # rebuilt torch layers run checkpoint_chunks unless bidirectional
            unidirectional = not any("_reverse" in str(key) for key in checkpoint.state_dict)
            estimate = estimate_for_config(*state_dict_units(checkpoint.state_dict), config, can_chunk=unidirectional)
            check_memory(estimate, limit, f"{path}: auditing its recurrent layers", path=path)
        models = models_to_audit(checkpoint, job.model_options)
    metadata = getattr(checkpoint, "metadata", None) or {}
    entries = []
    for layer, module in models:
        name = path if job.model_options.get("model") else f"{path}:{layer}"
        base = (metadata.get("layouts") or {}).get(layer)
        layout = declared_layout(module, job.model_options.get("layout") or {}, base, name=layer)
        estimate = estimate_for_config(*module_units(module), config, can_chunk=_can_chunk(module, layout))
        check_memory(estimate, limit, f"{name}: the audit", path=path)
        size = sum(p.numel() for p in module.parameters())
        with torch_threads(threads_for_model(job.threads, size, is_explicit=job.threads_explicit)):
            # the probes' estimate was checked just above against --memory-limit, whose message names the flag
            report = run_audit(module, config, layout, inputs=job.inputs, memory_limit=None)
        report.model.update(
            checkpoint=path, checkpoint_key=checkpoint_key(path), checkpoint_format=checkpoint.format, layer=layer
        )
        saved = metadata.get("hyper_parameters")
        if saved and job.model_options.get("model"):
            report.model["hyper_parameters"] = sorted(saved)
        assumed = (metadata.get("assumptions") or {}).get(layer)
        if assumed:
            finding = make_finding("GH903", assumed, probe="loader", assumption=assumed, layer=layer)
            report.findings = sort_findings([*report.findings, finding])
        entries.append(NamedReport(name, path, layer, report))
    return entries


@dataclass
class AuditPlan:
    """Everything decided before any input is read: the settings, what each worker does, the gates, the output.

    Attributes:
        settings: the resolved settings, with their sources.
        job: what each input's audit needs (plain data).
        gates: the thresholds.
        baselines: the baseline's entries.
        renderer: the output format's renderer.
    """

    settings: table.Resolved
    job: AuditJob
    gates: Thresholds
    baselines: list[NamedReport]
    renderer: Renderer


def _can_chunk(module: Any, layout: Any) -> bool:
    """Whether the audit's adapter runs ``checkpoint_chunks`` on this module (for the memory estimate only: an
    adapter that cannot be chosen is the audit's error to report, and counts as not chunking here)."""
    from gradhealth import plugins
    from gradhealth.errors import GradhealthError

    try:
        return bool(plugins.adapt(module, layout).has_chunked_window)
    except GradhealthError:
        return False


def plan_audit(settings: table.Resolved) -> AuditPlan:
    """Validate every setting once, before any input is loaded: values, names of tasks, probes and formats, the
    ``--model`` factory's import, the baseline, and a ``--min-horizon`` within ``--seq-len``.

    Raises:
        ConfigError: the first problem, naming the flag or the file it came from.
    """
    from gradhealth.cli._threads import threads_per_job
    from gradhealth.config import AuditConfig
    from gradhealth.loaders.layout import layout_fields
    from gradhealth.plugins import get_renderer

    values = settings.values
    _check_registered_names(settings)
    inputs, settings = _read_inputs(settings)
    config = AuditConfig(**settings.audit_kwargs(), source="the command line")
    _check_device(settings)
    table.check_horizon_within_reach(settings)
    gates, baselines = _gates(settings)
    renderer = get_renderer(values["format"], source=settings.source("format"))
    _check_factory(settings)
    _check_allowed_globals(settings)
    job = AuditJob(
        config=config.to_dict() | {"burn_in": config.burn_in},
        load_options={
            "trust": values["trust"],
            "allow_globals": values["allow_global"],
            "memory_limit": values["memory_limit"],
            "load_timeout": values["load_timeout"],
        },
        model_options={
            "model": values["model"],
            "model_kwargs": values["model_kwargs"] or {},
            "nonlinearity": values["nonlinearity"],
            "layout": layout_fields(values),
        },
        debug=values["debug"],
        threads=threads_per_job(values["threads"], values["jobs"]),
        threads_explicit=values["threads"] is not None,
        inputs=inputs,
    )
    return AuditPlan(settings, job, gates, baselines, renderer)


def _read_inputs(settings: table.Resolved) -> tuple[ProbeInputs | None, table.Resolved]:
    """Load ``--inputs`` and fit the lag window, batch size and task to it, as ``gradhealth.audit(inputs=)`` does:
    seq_len and burn_in not given come from the sequences' length.

    Raises:
        ConfigError: an unreadable or unsafe file, data of the wrong rank, sequences too short, or ``--task``.
    """
    spec = settings.values["inputs"]
    if spec is None:
        return None, settings
    from gradhealth.loaders.inputs import load_input_file
    from gradhealth.tasks.data import DataTask, probe_window, read_inputs

    source = settings.source("inputs")
    if "task" in settings.sources:
        raise ConfigError(
            "task", settings.values["task"], f"cannot be combined with {source}", source=settings.source("task")
        )
    explicit = {name: settings.values[name] if name in settings.sources else None for name in ("seq_len", "burn_in")}
    raw = load_input_file(spec, source=source)
    try:
        data = read_inputs(raw, limit=settings.values["batch_size"], source=spec)
        seq_len, burn_in = probe_window(data.seq_len, **explicit)
    except ConfigError as exc:
        where = settings.source(exc.name) if exc.name in settings.sources else f"{source} {spec}"
        raise ConfigError(exc.name, exc.value, exc.problem, source=where) from None
    derived = f"the length of {source} {spec}"
    fitted = {"seq_len": seq_len, "burn_in": burn_in, "batch_size": data.count}
    layer = {name: (value, derived) for name, value in fitted.items() if settings.values[name] != value}
    return data, settings.with_layers({**layer, "task": (DataTask.name, source)})


def _unknown(name: str, value: Any, known: Sequence[str], what: str, source: str, *, plural: str = "") -> ConfigError:
    from gradhealth._setting_types import did_you_mean

    hint = did_you_mean(str(value), known)
    listed = f"known {plural or what + 's'}: {', '.join(known)}"
    return ConfigError(name, value, f"unknown {what}{hint} ({listed})", source=source)


def _check_registered_names(settings: table.Resolved) -> None:
    from gradhealth.plugins import probe_classes, renderer_registry, task_registry

    values = settings.values
    tasks = sorted(task_registry())
    if values["task"] not in tasks:
        raise _unknown("task", values["task"], tasks, "task", settings.source("task"))
    if not isinstance(values["probes"], str):
        known = sorted(probe_classes())
        for name in values["probes"]:
            if name not in known:
                raise _unknown(
                    "probes",
                    name,
                    [*table.PRESETS, *known],
                    "preset or probe",
                    settings.source("probes"),
                    plural="presets and probes",
                )
    formats = sorted(renderer_registry())
    if values["format"] not in formats:
        raise _unknown("format", values["format"], formats, "format", settings.source("format"))


def _check_device(settings: table.Resolved) -> None:
    device = settings.values["device"]
    if device is None:
        return
    import torch

    from gradhealth.engine import check_device

    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError("device", device, one_line(exc), source=settings.source("device")) from exc
    check_device(parsed, source=settings.source("device"))


def _check_factory(settings: table.Resolved) -> None:
    """Import ``--model``'s factory now, so a bad spec is one error, not one per input."""
    spec = settings.values["model"]
    if spec is None:
        return
    from gradhealth.loaders._imports import import_object

    module_name, _, attr = spec.partition(":")
    try:
        factory = import_object(module_name, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            "model", spec, f"cannot import it ({exc}); is the package on PYTHONPATH?", source=settings.source("model")
        ) from exc
    if not callable(factory):
        raise ConfigError("model", spec, "is not callable", source=settings.source("model"))


def _check_allowed_globals(settings: table.Resolved) -> None:
    """Refuse ``--allow-global`` names that run code (and names that do not import) once, before any input."""
    names = settings.values["allow_global"]
    if not names:
        return
    from gradhealth.loaders.safety import resolve_allowed_globals

    try:
        resolve_allowed_globals(names)
    except ConfigError as exc:
        raise ConfigError(exc.name, exc.value, exc.problem, source=settings.source("allow_global")) from None


def _gates(settings: table.Resolved) -> tuple[Thresholds, list[NamedReport]]:
    from gradhealth.gates import HorizonDrop, Thresholds
    from gradhealth.render.json import read_reports

    values = settings.values
    baseline_path, baseline_src = values["baseline"], settings.source("baseline")
    baselines: list[NamedReport] = []
    if baseline_path is not None:
        try:
            entries = read_reports(Path(baseline_path).read_text(encoding="utf-8"), name=str(baseline_path))
        except UnicodeDecodeError as exc:
            raise ConfigError(
                "baseline", str(baseline_path), "not a gradhealth report (binary file)", source=baseline_src
            ) from exc
        except (OSError, ValueError) as exc:
            raise ConfigError("baseline", str(baseline_path), one_line(exc), source=baseline_src) from exc
        baselines = [e for e in entries if e.report is not None]
    elif values["max_horizon_drop"] is not None:
        raise ConfigError(
            "max_horizon_drop",
            str(values["max_horizon_drop"]),
            "needs --baseline REPORT.json to compare with",
            source=settings.source("max_horizon_drop"),
        )
    gates = Thresholds(
        fail_on=values["fail_on"] or frozenset(),
        min_horizon=values["min_horizon"],
        max_horizon=values["max_horizon"],
        max_decay_rate=values["max_decay_rate"],
        max_horizon_drop=(values["max_horizon_drop"] or HorizonDrop(0.0, False)) if baselines else None,
        gate_decision=values["gate_decision"],
    )
    return gates, baselines


def _apply_gates(entries: list[NamedReport], gates: Thresholds, baselines: list[NamedReport]) -> list[str]:
    """Evaluate the gates on every entry; returns the baseline entries this run did not audit."""
    import dataclasses

    from gradhealth.cli._baseline import match_baseline
    from gradhealth.gates import GateResult, evaluate_gates

    audited = [e for e in entries if e.report is not None]
    matched = match_baseline(audited, baselines) if baselines else None
    for i, entry in enumerate(audited):
        assert entry.report is not None
        entry_gates = gates
        if matched is not None:
            baseline = matched.reports[i]
            if baseline is None:
                message = f"new: the baseline has no entry for {entry.name}; not compared"
                entry.gates.append(GateResult("max_horizon_drop", True, message))
                entry_gates = dataclasses.replace(gates, max_horizon_drop=None)
            else:
                entry_gates = dataclasses.replace(gates, baseline=baseline)
        entry.gates.extend(evaluate_gates(entry.report, entry_gates))
    return matched.missing if matched is not None else []


def _run_all(inputs: list[str], job: AuditJob, jobs: int, progress: bool) -> list[NamedReport]:
    results: dict[str, list[NamedReport]] = {}
    bar = _ProgressBar(len(inputs)) if progress else None
    try:
        if jobs > 1 and len(inputs) > 1:
            results = _run_parallel(inputs, job, jobs, bar)
        else:
            for path in inputs:
                if bar is not None:
                    bar.start(path)
                results[path] = audit_checkpoint(path, job)
                if bar is not None:
                    bar.done(path)
    finally:
        if bar is not None:
            bar.stop()
    return [entry for path in inputs for entry in results[path]]


def _run_parallel(
    inputs: list[str], job: AuditJob, jobs: int, bar: _ProgressBar | None
) -> dict[str, list[NamedReport]]:
    from gradhealth.render.registry import NamedReport

    results: dict[str, list[NamedReport]] = {}
    unfinished = _run_pool(inputs, job, jobs, bar, results)
    # A worker died (killed for memory, or a crash in native code): that breaks the whole pool, which cannot say
    # whose input did it, so each unfinished input runs again in a pool of its own.
    for path in unfinished:
        if _run_pool([path], job, 1, bar, results):
            error = (
                f"{path}: the worker process auditing it died (killed, for example for memory, or crashed in native "
                "code); audit this input alone to see why"
            )
            results[path] = [NamedReport(path, path, None, None, error=error)]
            if bar is not None:
                bar.done(path)
    return results


def _run_pool(
    inputs: list[str], job: AuditJob, jobs: int, bar: _ProgressBar | None, results: dict[str, list[NamedReport]]
) -> list[str]:
    """Audit ``inputs`` in a pool of ``jobs`` worker processes into ``results``; return those a dead worker left."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    broken = set()
    # spawn, not fork: forking a process that already runs torch's thread pools can deadlock.
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint)
    try:
        futures = {pool.submit(audit_checkpoint, path, job): path for path in inputs}
        for future in as_completed(futures):
            try:
                results[futures[future]] = future.result()
            except BrokenProcessPool:
                broken.add(futures[future])
                continue
            if bar is not None:
                bar.done(futures[future])
    except BaseException:
        # Ctrl-C (or any failure): stop the workers now instead of letting them finish their audits.
        _terminate_workers(pool)
        raise
    pool.shutdown()
    return [path for path in inputs if path in broken]


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops them (no traceback from every worker)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _terminate_workers(pool: Any) -> None:
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
    else:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


class _ProgressBar:
    """A rich progress bar on stderr: inputs done of all, the current file, and the time left."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("auditing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}"),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("auditing", total=total, current="")
        self._progress.start()

    def start(self, path: str) -> None:
        self._progress.update(self._task, current=_shown(path))

    def done(self, path: str) -> None:
        self._progress.update(self._task, advance=1, current=_shown(path))

    def stop(self) -> None:
        self._progress.stop()


def _shown(path: str) -> str:
    """A path as the progress bar's markup shows it literally: controls written out, rich markup escaped."""
    from rich.markup import escape

    from gradhealth.render.escape import printable

    return escape(printable(path))


def _exit_code(entries: Sequence[NamedReport]) -> int:
    if any(e.status == "error" for e in entries):
        return 2
    return 1 if any(e.status == "fail" for e in entries) else 0


@table_options(OPTIONS)
def audit_command(
    ctx: typer.Context,
    checkpoints: Annotated[
        list[str],
        typer.Argument(help="Checkpoint files, folders or globs.", show_default=False, metavar="CHECKPOINTS..."),
    ],
    **given: Any,
) -> None:
    """Audit saved checkpoints for vanishing and exploding gradients through time."""
    with clean_errors(bool(given.get("debug"))):
        settings = resolve_command_line(ctx, given)
        if settings.values["verbose"]:
            _print_settings(settings)
        plan = plan_audit(settings)
        paths = expand_inputs(checkpoints)
        if not paths:
            die("no inputs: pass checkpoint files, folders or globs")
        if len(paths) == 1 and not Path(paths[0]).exists():
            die(f"{paths[0]}: no such file or folder")
        entries = _audit_all(paths, plan)
        values = settings.values
        if values["format"] != "table" or any(e.report is not None for e in entries):
            text = plan.renderer(entries, color=values["output"] is None and sys.stdout.isatty())
            write_output(text, values["output"], source=settings.source("output"))
        if values["plot"] is not None:
            _save_plots(entries, values["plot"])
        for entry in entries:
            if entry.error is not None:
                error_line(entry.error)
    raise typer.Exit(_exit_code(entries))


def _audit_all(paths: list[str], plan: AuditPlan) -> list[NamedReport]:
    values = plan.settings.values
    show_bar = values["progress"] and values["format"] == "table" and sys.stderr.isatty() and len(paths) > 1
    entries = _run_all(paths, plan.job, values["jobs"], show_bar)
    missing = _apply_gates(entries, plan.gates, plan.baselines)
    if missing:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        typer.echo(f"gradhealth: note: missing from this run, in the baseline: {printable(shown)}", err=True)
    return entries


def _print_settings(settings: table.Resolved) -> None:
    typer.echo("gradhealth: settings in effect:", err=True)
    for line in settings.lines():
        typer.echo(f"  {printable(line)}", err=True)


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
