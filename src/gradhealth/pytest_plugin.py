"""The gradhealth pytest plugin (entry point ``pytest11``): the ``gradhealth`` fixture, marker, options, report.

Importing this module loads neither torch nor numpy nor the engine: every hook first checks whether gradhealth is
in use (a setting given, a test that audits) and imports inside the function, so a test run that never audits
pays only for option registration. ``-p no:gradhealth`` disables the plugin.

Settings are resolved per test, highest first: ``@pytest.mark.gradhealth(...)`` > ``--gradhealth-*`` options >
``GRADHEALTH_*`` environment variables > ``gradhealth_*`` ini keys (see :mod:`gradhealth.testing._settings`).
Every audit made through the fixture or :mod:`gradhealth.testing` during a test is recorded: as a JUnit XML
property, in the terminal summary and in the ``--gradhealth-report`` JSON file (gathered from pytest-xdist workers
on the controller, written once).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gradhealth.testing._settings import (
    HELP,
    MARKER_HELP,
    REPORT_HELP,
    SETTINGS,
    env_name,
    ini_name,
    option_name,
)

if TYPE_CHECKING:
    from collections.abc import Generator

    from gradhealth.report import Report
    from gradhealth.testing._auditor import Auditor
    from gradhealth.testing._settings import Settings

__all__ = ["active_item", "item_settings", "record_audit"]

_WORKEROUTPUT_KEY = "gradhealth_audits"
_PROPERTY = "gradhealth"

#: Layers parsed at configure time, lowest first: ini keys, environment variables, command-line options.
_LAYERS = pytest.StashKey[list[dict[str, tuple[Any, str]]]]()
#: Every audit of the session (entries of the JSON report), in the order recorded.
_AUDITS = pytest.StashKey[list[dict[str, Any]]]()
_ITEM_SETTINGS = pytest.StashKey["Settings"]()

# Items being run, innermost last: a stack, because pytester runs a whole session inside a test.
_running: list[pytest.Item] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradhealth", "gradient health of recurrent models (gradhealth)")
    for name in SETTINGS:
        group.addoption(option_name(name), dest=ini_name(name), default=None, metavar=name.upper(), help=HELP[name])
        parser.addini(ini_name(name), HELP[name])
    group.addoption("--gradhealth-report", dest="gradhealth_report", default=None, metavar="PATH", help=REPORT_HELP)
    parser.addini("gradhealth_report", REPORT_HELP)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[_AUDITS] = []
    config.stash[_LAYERS] = _configured_layers(config)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(config), "gradhealth-xdist")


def _configured_layers(config: pytest.Config) -> list[dict[str, tuple[Any, str]]]:
    """Parse the ini, environment and option layers; raw values are only imported-and-parsed when present."""
    raw_ini = {name: value for name in SETTINGS if (value := config.getini(ini_name(name)))}
    raw_env = {name: os.environ[env_name(name)] for name in SETTINGS if env_name(name) in os.environ}
    raw_opt = {name: value for name in SETTINGS if (value := getattr(config.option, ini_name(name))) is not None}
    if not (raw_ini or raw_env or raw_opt):
        return []
    from gradhealth.errors import GradhealthError
    from gradhealth.testing._settings import parse_layer

    inifile = config.inipath.name if config.inipath else "ini file"
    try:
        return [
            parse_layer(raw_ini, lambda n: f"ini key {ini_name(n)} in {inifile}"),
            parse_layer(raw_env, lambda n: f"environment variable {env_name(n)}"),
            parse_layer(raw_opt, lambda n: f"option {option_name(n)}"),
        ]
    except GradhealthError as exc:
        raise pytest.UsageError(str(exc)) from None


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


def item_settings(item: pytest.Item) -> Settings:
    """The settings of one test: its markers (closest wins) over the session's options, env and ini layers.

    Raises:
        ConfigError: a marker value is invalid or unknown, naming the marker and the test.
    """
    if _ITEM_SETTINGS in item.stash:
        return item.stash[_ITEM_SETTINGS]
    from gradhealth.errors import ConfigError
    from gradhealth.testing._settings import merge, parse_layer

    source = f"marker on {item.name}"
    marker_layers = []
    for marker in reversed(list(item.iter_markers("gradhealth"))):
        if marker.args:
            raise ConfigError(
                "marker arguments", marker.args, "use keywords, e.g. gradhealth(seq_len=64)", source=source
            )
        marker_layers.append(parse_layer(marker.kwargs, lambda n: source))
    settings = merge([*item.config.stash.get(_LAYERS, []), *marker_layers])
    item.stash[_ITEM_SETTINGS] = settings
    return settings


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
def gradhealth(request: pytest.FixtureRequest) -> Auditor:
    """An auditor configured for this test: ``gradhealth.check(model)`` applies the marker's thresholds,
    ``gradhealth.audit(model)`` returns the Report."""
    from gradhealth.errors import GradhealthError
    from gradhealth.testing._auditor import Auditor

    try:
        settings = item_settings(request.node)
    except GradhealthError as exc:
        problem = str(exc)
    else:
        return Auditor(settings, test=request.node.name)
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
    raw = config.getoption("gradhealth_report") or config.getini("gradhealth_report")
    return config.invocation_params.dir / raw if raw else None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    audits = config.stash.get(_AUDITS, [])
    path = _report_path(config)
    if not audits and path is None:
        return
    from gradhealth.render.text import format_number
    from gradhealth.report import decode_floats

    terminalreporter.write_sep("=", "gradhealth")
    rows = []
    for entry in sorted(audits, key=lambda e: e["nodeid"]):
        report = decode_floats(entry["report"])
        m = report["metrics"]
        horizon = format_number(m["horizon"], " steps") + ("" if m["horizon_reached"] else " (extrapolated)")
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
