"""The renderer registry and the built-in renderers on a report with a known profile (g(k) = 0.9^k)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pytest

import gradhealth
from gradhealth import reference
from gradhealth.errors import ConfigError, PluginError
from gradhealth.gates import Thresholds, evaluate_gates
from gradhealth.hookspecs import hookimpl
from gradhealth.plugins import get_renderer, reset_plugin_manager
from gradhealth.plugins import renderer_registry as renderers
from gradhealth.render.github import annotation
from gradhealth.render.json import read_reports
from gradhealth.render.json import render as render_json
from gradhealth.render.registry import NamedReport


@pytest.fixture(scope="module")
def entries() -> list[NamedReport]:
    report = gradhealth.audit(reference.LinearRecurrence(3, 0.9), seq_len=50, batch_size=4, probes="quick")
    gates = evaluate_gates(report, Thresholds(min_horizon=45))
    return [NamedReport("a.pt", "a.pt", None, report, gates), NamedReport("b.pt", "b.pt", error="b.pt is empty")]


def test_builtin_formats_registered() -> None:
    assert {"table", "json", "markdown", "junit", "github"} <= set(renderers())
    with pytest.raises(ConfigError, match="invalid format 'pdf' from --format: known formats: "):
        get_renderer("pdf")


def test_plugin_renderer_and_name_clash() -> None:
    class Plugin:
        @hookimpl
        def gradhealth_register_renderers(self) -> dict[str, object]:
            return {"names": lambda reports, **options: ",".join(r.name for r in reports)}

    class Clash:
        @hookimpl
        def gradhealth_register_renderers(self) -> dict[str, object]:
            return {"json": lambda reports, **options: ""}

    from gradhealth import plugins
    from gradhealth.render import json as json_renderer

    try:
        assert plugins.register(Plugin(), name="test-names")
        entry = NamedReport("x", "x", error="e")
        assert get_renderer("names")([entry, entry]) == "x,x"
        # a clash is reported once and the clashing plugin skipped: the built-in renderer stays
        assert plugins.register(Clash(), name="test-clash")
        with pytest.warns(plugins.PluginWarning, match="json"):
            found = renderers()
        assert found["json"] is json_renderer.render
        # with strict plugins the clash is fatal, naming the plugin
        reset_plugin_manager()
        plugins.configure(strict=True)
        plugins.register(Clash(), name="test-clash")
        with pytest.raises(PluginError, match="test-clash"):
            renderers()
    finally:
        plugins.configure()
        reset_plugin_manager()


def test_json_document_round_trip(entries: list[NamedReport]) -> None:
    text = render_json(entries)
    data = json.loads(text)
    assert [e["status"] for e in data["reports"]] == ["fail", "error"]
    back = read_reports(text)
    assert back[0].report is not None and entries[0].report is not None
    assert back[0].report.metrics == entries[0].report.metrics
    assert back[0].gates == entries[0].gates
    assert back[1].error == "b.pt is empty"
    assert math.isinf(back[0].report.metrics.horizon_1e3) == math.isinf(entries[0].report.metrics.horizon_1e3)


def test_markdown_and_table_rows(entries: list[NamedReport]) -> None:
    md = get_renderer("markdown")(entries)
    assert "| a.pt | forward | vanishing | 44 \\[44, 44\\] | -0.105/step | 6.58 | FAIL min_horizon |" in md
    assert "- **b.pt**: b.pt is empty" in md
    table = get_renderer("table")(entries, color=False)
    assert "FAIL a.pt min_horizon (forward): horizon 44 < min 45 steps" in table
    assert "\x1b[" not in table


def test_junit_counts(entries: list[NamedReport]) -> None:
    root = ET.fromstring(get_renderer("junit")(entries))
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "1")


def test_github_annotation_escaping() -> None:
    assert (
        annotation("error", "a,b:c.pt", "t: 1", "50%\nnext") == "::error file=a%2Cb%3Ac.pt,title=t%3A 1::50%25%0Anext"
    )
