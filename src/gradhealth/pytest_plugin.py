"""The gradhealth pytest plugin (entry point ``pytest11``): the ``gradhealth`` fixture, marker, options, report.

Importing this module loads neither torch nor numpy nor the engine: every hook first checks whether gradhealth is
in use (a setting given, a test that audits) and imports inside the function, so a test run that never audits
pays only for option registration. ``-p no:gradhealth`` disables the plugin.

Options, ini keys, environment variables and marker arguments are made from the settings table
(:mod:`gradhealth.settings`). Settings are resolved per test, highest first: call arguments >
``@pytest.mark.gradhealth(...)`` > ``--gradhealth-*`` options > ``GRADHEALTH_*`` environment variables >
``gradhealth_*`` ini keys > defaults. Every audit made through the fixture or :mod:`gradhealth.testing` during a
test is recorded: as a JUnit XML property, in the terminal summary and in the ``--gradhealth-report`` JSON file
(gathered from pytest-xdist workers on the controller, written once). ``--gradhealth-skip`` skips every gradient
test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gradhealth import settings as table

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from gradhealth.report import Report
    from gradhealth.testing._auditor import Auditor

__all__ = ["active_item", "item_inputs", "item_settings", "record_audit", "session_settings"]

_WORKEROUTPUT_KEY = "gradhealth_audits"
_PROPERTY = "gradhealth"
_MARKER = "gradhealth"
#: The marker argument that gives probe inputs (data, not a setting: it is not in the settings table).
_INPUTS = "inputs"

#: Layers parsed at configure time, lowest first: ini keys, environment variables, command-line options.
_LAYERS = pytest.StashKey[list[table.Layer]]()
#: Every audit of the session (entries of the JSON report), in the order recorded.
_AUDITS = pytest.StashKey[list[dict[str, Any]]]()
_ITEM_SETTINGS = pytest.StashKey[table.Resolved]()

# Items being run, innermost last: a stack, because pytester runs a whole session inside a test.
_running: list[pytest.Item] = []


def _marker_help() -> str:
    names = ", ".join(s.name for s in table.carried_by(table.MARKER))
    return (
        "gradhealth(**settings): gradient-health audit settings for this test, e.g. seq_len=512, min_horizon=256, "
        f"fail_on='exploding'. Settings: {names}; and inputs= (probe data, or the name of a fixture giving it). "
        "They override --gradhealth-* options, GRADHEALTH_* environment "
        "variables and gradhealth_* ini keys; the `gradhealth` fixture and gradhealth.testing use them."
    )


def _help(setting: table.Setting) -> str:
    return f"{setting.help} (default: {setting.describe_default(table.PYTEST)})."


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradhealth", "gradient health of recurrent models (gradhealth)")
    for setting in table.carried_by(table.PYTEST):
        if setting.is_flag:
            group.addoption(
                setting.pytest_option, dest=setting.ini_key, action="store_true", default=None, help=_help(setting)
            )
        else:
            group.addoption(
                setting.pytest_option,
                dest=setting.ini_key,
                default=None,
                metavar=setting.name.upper(),
                help=_help(setting),
            )
        parser.addini(setting.ini_key, _help(setting))


def pytest_configure(config: pytest.Config) -> None:
    # A suite that must also collect with -p no:gradhealth declares the marker in its own ini file (pytest cannot
    # let a disabled plugin register it); that declaration stands, and ours is not added twice.
    if not any(_declares_marker(line) for line in config.getini("markers")):
        config.addinivalue_line("markers", _marker_help())
    config.stash[_AUDITS] = []
    config.stash[_LAYERS] = _configured_layers(config)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(config), "gradhealth-xdist")


def _declares_marker(line: str) -> bool:
    return line.split(":", 1)[0].split("(", 1)[0].strip() == _MARKER


def _configured_layers(config: pytest.Config) -> list[table.Layer]:
    """Parse the ini, environment and option layers (empty values count as not set)."""
    carried = table.carried_by(table.PYTEST)
    raw_ini = {s.name: value for s in carried if (value := config.getini(s.ini_key))}
    raw_env = {s.name: value for s in carried if (value := os.environ.get(s.env_var))}
    raw_opt = {s.name: value for s in carried if (value := getattr(config.option, s.ini_key)) is not None}
    if not (raw_ini or raw_env or raw_opt):
        return []
    from gradhealth.errors import GradhealthError

    inifile = config.inipath.name if config.inipath else "ini file"
    try:
        return [
            table.parse_layer(raw_ini, face=table.PYTEST, source=lambda n: f"ini key {_ini(n)} in {inifile}"),
            table.parse_layer(raw_env, face=table.PYTEST, source=lambda n: f"environment variable {_env(n)}"),
            table.parse_layer(raw_opt, face=table.PYTEST, source=lambda n: f"option {_option(n)}"),
        ]
    except GradhealthError as exc:
        raise pytest.UsageError(str(exc)) from None


def _ini(name: str) -> str:
    return table.SETTINGS[name].ini_key


def _env(name: str) -> str:
    return table.SETTINGS[name].env_var


def _option(name: str) -> str:
    return table.SETTINGS[name].pytest_option


def session_settings(config: pytest.Config) -> table.Resolved:
    """The session's settings: ini keys, environment variables and options over the defaults."""
    layers: list[table.Layer] = config.stash.get(_LAYERS, [])
    return table.resolve(table.PYTEST, layers)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"gradhealth: {line}" for line in session_settings(config).lines(explicit_only=True)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = session_settings(config)
    if not settings.values["skip"]:
        return
    skip = pytest.mark.skip(reason=_skip_reason(settings))
    for item in items:
        if item.get_closest_marker(_MARKER) is not None or _MARKER in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


def _skip_reason(settings: table.Resolved) -> str:
    return f"gradient-health tests skipped ({settings.source('skip')})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


def active_item() -> pytest.Item | None:
    """The test being run, if any (read by :mod:`gradhealth.testing` to find its settings)."""
    return _running[-1] if _running else None


def item_settings(item: pytest.Item) -> table.Resolved:
    """The settings of one test: its markers (closest wins) over the session's options, env and ini layers.

    Raises:
        ConfigError: a marker value is invalid or unknown, naming the marker and the test.
    """
    if _ITEM_SETTINGS in item.stash:
        return item.stash[_ITEM_SETTINGS]
    from gradhealth.errors import ConfigError

    source = f"marker on {item.name}"
    marker_layers = []
    for marker in reversed(list(item.iter_markers(_MARKER))):
        if marker.args:
            raise ConfigError(
                "marker arguments", marker.args, "use keywords, e.g. gradhealth(seq_len=64)", source=source
            )
        values = {name: value for name, value in marker.kwargs.items() if name != _INPUTS}
        marker_layers.append(table.parse_layer(values, face=table.MARKER, source=source))
    layers: list[table.Layer] = item.config.stash.get(_LAYERS, [])
    settings = table.resolve(table.PYTEST, [*layers, *marker_layers])
    item.stash[_ITEM_SETTINGS] = settings
    return settings


def item_inputs(item: pytest.Item, fixture_value: Callable[[str], Any] | None = None) -> Any:
    """The probe inputs of one test: the closest marker's ``inputs=``, else the ``gradhealth_inputs`` fixture's
    value when the test uses it, else ``None``.

    A string names a fixture that gives the data (``inputs="val_batch"``); ``fixture_value`` looks it up (the
    fixture request's ``getfixturevalue``), else the test's own arguments must include it.

    Raises:
        ConfigError: a named fixture that cannot be found.
    """
    marker = next((m for m in item.iter_markers(_MARKER) if _INPUTS in m.kwargs), None)
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    if marker is None:
        return funcargs.get("gradhealth_inputs")
    value = marker.kwargs[_INPUTS]
    if not isinstance(value, str):
        return value
    if fixture_value is not None:
        return fixture_value(value)
    if value in funcargs:
        return funcargs[value]
    from gradhealth.errors import ConfigError

    raise ConfigError(
        _INPUTS, value, "no such fixture among the test's arguments: add it to them", source=f"marker on {item.name}"
    )


def record_audit(item: pytest.Item, report: Report, label: str) -> None:
    """Record an audit made during a test: session report entry and JUnit XML property."""
    import json

    from gradhealth.report import encode_floats

    m = report.metrics
    summary = {"model": label, "verdict": report.verdict, "horizon": m.horizon, "decay_rate": m.decay_rate}
    summary.update(seq_len=report.config.get("seq_len"), seed=report.config.get("seed"))
    item.user_properties.append((_PROPERTY, json.dumps(encode_floats(summary), allow_nan=False)))
    entry = {"nodeid": item.nodeid, "model": label, "report": encode_floats(report.to_dict())}
    item.config.stash.setdefault(_AUDITS, []).append(entry)


@pytest.fixture
def gradhealth_inputs() -> Any:
    """Probe inputs for this test's audits: ``None`` (the synthetic task). Override it in a ``conftest.py`` to
    return validation data (a ``[B, T, D]`` tensor, token ids, a DataLoader...); the ``gradhealth`` fixture then
    probes with it. A marker's ``inputs=`` wins over it."""
    return None


@pytest.fixture
def gradhealth(request: pytest.FixtureRequest, gradhealth_inputs: Any) -> Auditor:
    """An auditor configured for this test: ``gradhealth.check(model)`` applies the marker's thresholds,
    ``gradhealth.audit(model)`` returns the Report. Its probe inputs are the marker's ``inputs=``, else the
    ``gradhealth_inputs`` fixture's."""
    from gradhealth.errors import GradhealthError
    from gradhealth.testing._auditor import Auditor

    try:
        settings = item_settings(request.node)
        inputs = item_inputs(request.node, request.getfixturevalue)
    except GradhealthError as exc:
        problem = str(exc)
    else:
        return Auditor(settings, test=request.node.name, inputs=gradhealth_inputs if inputs is None else inputs)
    pytest.fail(problem, pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    audits = config.stash.get(_AUDITS, [])
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        if audits:
            import json

            workeroutput[_WORKEROUTPUT_KEY] = json.dumps(audits)
        return
    path = _report_path(config)
    if path is not None:
        import json

        ordered = sorted(audits, key=lambda entry: entry["nodeid"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ordered, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _report_path(config: pytest.Config) -> Path | None:
    path = session_settings(config).values["report"]
    return config.invocation_params.dir / path if path is not None else None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    audits = config.stash.get(_AUDITS, [])
    path = _report_path(config)
    if not audits and path is None:
        return
    import math

    from gradhealth.formatting import format_horizon, format_interval, format_level, format_number
    from gradhealth.report import decode_floats

    terminalreporter.write_sep("=", "gradhealth")
    rows = []
    for entry in sorted(audits, key=lambda e: e["nodeid"]):
        report = decode_floats(entry["report"])
        m = report["metrics"]
        horizon = format_horizon(m["horizon"], reached=m["horizon_reached"], censored=m.get("horizon_censored", False))
        interval = (m.get("intervals") or {}).get("horizon")
        if interval is not None and not all(math.isinf(end) for end in interval):  # [∞, ∞] says nothing more
            horizon += f" {format_interval(interval)} {format_level(m.get('interval_level'))}".rstrip()
        rate = format_number(m["decay_rate"], "/step")
        rows.append((entry["nodeid"], entry["model"], report["verdict"], f"horizon {horizon}", f"decay rate {rate}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)] if rows else []
    for row in rows:
        terminalreporter.write_line(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[4]
        )
    if path is not None:
        terminalreporter.write_line(f"gradhealth: {len(audits)} audit(s) written to {path}")


class XdistHooks:
    """Hooks for pytest-xdist, registered only when it is installed: gather the workers' audits on the
    controller, which alone writes the session report and the summary."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        raw = getattr(node, "workeroutput", {}).get(_WORKEROUTPUT_KEY)
        if raw:
            import json

            self.config.stash[_AUDITS].extend(json.loads(raw))
