"""Names come from files: every renderer (and the CLI's stderr) prints a hostile name as inert text. Control
characters, ANSI and OSC escapes, table pipes, line breaks, raw HTML and ``]]>`` in a name, a layer name, an
error or a finding must not recolour or retitle a terminal, inject lines or cells, open tags or break the XML."""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

import gradhealth
from gradhealth import reference
from gradhealth.cli import app
from gradhealth.findings import make_finding
from gradhealth.gates import Thresholds, evaluate_gates
from gradhealth.plugins import get_renderer
from gradhealth.render.markdown import COLUMNS
from gradhealth.render.registry import NamedReport

HOSTILE = "evil\x1b[31mred\x1b]0;title\x07|pipe\nnewline\rcr<script>alert(1)</script>]]>\x00nul\u202e[x](http://e)"
#: The same name with every control character written out, as each format must show it (before its own escaping).
WRITTEN_OUT = r"evil\x1b[31mred\x1b]0;title\x07|pipe\nnewline\rcr<script>alert(1)</script>]]>\x00nul\u202e[x](http://e)"
CONTROLS = ["\x1b", "\x07", "\x00", "\r", "\u202e"]


@pytest.fixture(scope="module")
def entries() -> list[NamedReport]:
    report = gradhealth.audit(reference.LinearRecurrence(3, 0.9), seq_len=50, batch_size=4, probes="quick")
    report.findings.append(make_finding("GH001", f"layer {HOSTILE} forgets", probe="lag_profile"))
    gates = evaluate_gates(report, Thresholds(min_horizon=45))
    return [
        NamedReport(HOSTILE, HOSTILE, HOSTILE, report, gates),
        NamedReport(f"{HOSTILE}.pt", f"{HOSTILE}.pt", error=f"{HOSTILE}.pt is empty"),
    ]


def _no_controls(text: str, *, allowed: str = "\n") -> None:
    for char in CONTROLS:
        if char not in allowed:
            assert char not in text, repr(char)


@pytest.mark.parametrize("color", [False, True])
def test_table(entries: list[NamedReport], color: bool) -> None:
    text = get_renderer("table")(entries, color=color, width=400)
    # rich's own colours are SGR sequences "ESC [ ... m"; the name's ESC is written out, so no OSC and no name colour
    assert "\x1b]" not in text and "\x1b[31mred" not in text
    _no_controls(text.replace("\x1b[", ""), allowed="\n")
    assert r"evil\x1b[31mred" in text
    assert not any(line.startswith("newline") for line in text.splitlines())  # no injected line


def test_markdown(entries: list[NamedReport]) -> None:
    text = get_renderer("markdown")(entries)
    _no_controls(text)
    assert "<script>" not in text and "]]>" not in text
    assert "&lt;script&gt;" in text
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("| ")]
    # Each row has exactly one cell per column: every pipe from a name is escaped.
    for row in rows:
        assert row.replace("\\|", "").count("|") == len(COLUMNS) + 1, row
    assert len(rows) == 1 + 2  # the header, one direction of the audited model, the error row
    problems = [line for line in lines if line.startswith("- ")]
    assert len(problems) == 2 and len(lines) == 4 + 2 + 1 + 2  # title, blank, header, rule; rows; blank; problems
    assert "[x](http" not in text  # no link injected


def test_junit_parses_and_keeps_the_name(entries: list[NamedReport]) -> None:
    root = ET.fromstring(get_renderer("junit")(entries))
    names = [suite.get("name") for suite in root.iter("testsuite")]
    assert names == [WRITTEN_OUT, WRITTEN_OUT + ".pt"]
    error = root.find("testsuite/testcase/error")
    assert error is None or error.get("message") is not None
    messages = [e.get("message") for e in root.iter("error")]
    assert messages == [WRITTEN_OUT + ".pt is empty"]
    outputs = "".join(e.text or "" for e in root.iter("system-out"))
    assert f"layer {WRITTEN_OUT} forgets" in outputs


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html(entries: list[NamedReport]) -> None:
    text = get_renderer("html")(entries, plots=False)
    _no_controls(text)
    page = _Collector()
    page.feed(text)
    assert "script" not in page.tags
    assert any(WRITTEN_OUT in chunk for chunk in page.text)


def test_github_annotations_and_summary(
    entries: list[NamedReport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    text = get_renderer("github")(entries)
    lines = text.splitlines()
    assert len(lines) == 2 and all(line.startswith("::error file=") for line in lines)
    _no_controls(text)
    written = summary.read_text(encoding="utf-8")
    _no_controls(written)
    assert "<script>" not in written
    assert len([line for line in written.splitlines() if line.startswith("- ")]) == 2


Run = Callable[..., Result]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_error_lines_on_stderr(run: Run, tmp_path: Path) -> None:
    name = "evil\x1b]0;title\x07\nfake line|<b>.pt"
    (tmp_path / name).write_bytes(b"")
    good = tmp_path / "good.pt"
    torch.save(torch.nn.RNN(3, 4).state_dict(), good)
    result = run("audit", good, tmp_path / name, "--seq-len", "8", "--batch-size", "2", "--probes", "quick")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradhealth: error: ")
    assert lines[0].startswith(r"gradhealth: error: " + str(tmp_path) + r"/evil\x1b]0;title\x07\nfake line|<b>.pt")
    _no_controls(result.stderr)


def test_output_is_replaced_in_one_step(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good.pt"
    torch.save(torch.nn.RNN(3, 4).state_dict(), good)
    out = tmp_path / "report.json"
    out.write_text("previous report")
    out.chmod(0o640)
    args = ("audit", good, "--seq-len", "8", "--batch-size", "2", "--probes", "quick", "--format", "json")

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    failed = run(*args, "--output", out)
    assert failed.exit_code == 2
    assert failed.stderr == (
        f"gradhealth: error: invalid output '{out}' from --output: cannot write the report there: "
        "No space left on device\n"
    )
    assert out.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.pt", "report.json"]  # no temporary file left
    monkeypatch.undo()
    written = run(*args, "--output", out)
    assert written.exit_code == 0, written.stderr
    assert gradhealth.Report.from_json(out.read_text()).model["checkpoint"] == str(good)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_output_that_is_a_folder_names_the_option(run: Run, tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save(torch.nn.RNN(3, 4).state_dict(), good)
    result = run("audit", good, "--seq-len", "8", "--batch-size", "2", "--probes", "quick", "--output", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"gradhealth: error: invalid output '{tmp_path}' from --output: ")
    assert result.stderr.count("\n") == 1


def test_inspect_listing_writes_out_tensor_names(run: Run, tmp_path: Path) -> None:
    state = dict(torch.nn.RNN(3, 4).state_dict())
    state["head\x1b[2J\nfake: line"] = torch.zeros(2)
    path = tmp_path / "named.pt"
    torch.save(state, path)
    result = run("inspect", path)
    assert result.exit_code == 0, result.stderr
    _no_controls(result.stdout)
    assert r"    head\x1b[2J\nfake: line  (2,)  float32" in result.stdout.splitlines()
    assert not any(line.startswith("fake") for line in result.stdout.splitlines())


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_compare_writes_out_names_from_report_files(
    run: Run, tmp_path: Path, entries: list[NamedReport], fmt: str
) -> None:
    document = get_renderer("json")(entries[:1] * 2)  # the listing document, with the hostile name
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(document)
    new.write_text(document)
    result = run("compare", old, new, "--format", fmt)
    assert result.exit_code == 0, result.stderr
    _no_controls(result.stdout)
    if fmt == "table":
        assert r"evil\x1b[31mred" in result.stdout
    else:
        assert "<script>" not in result.stdout
        rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
        assert all(row.replace("\\|", "").count("|") == 8 for row in rows), rows


def test_html_plots_take_any_name(entries: list[NamedReport]) -> None:
    pytest.importorskip("matplotlib")
    # Undecodable bytes of a file name (lone surrogates) broke matplotlib's font code; "$" would start mathtext.
    name = "bad\udcff$\\frac{$.pt"
    named = [NamedReport(name, name, None, entries[0].report)]
    text = get_renderer("html")(named, plots=True)
    assert "data:image/png;base64," in text
    assert r"bad\udcff$\frac{$.pt" in text
