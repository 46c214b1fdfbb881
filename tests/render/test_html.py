"""The HTML report: self-contained, verdict first, every direction and finding shown, and well-formed."""

from __future__ import annotations

import re
import sys
from html import escape
from html.parser import HTMLParser

import pytest
import torch

import gradhealth
from gradhealth import reference
from gradhealth.gates import GateResult
from gradhealth.plugins import get_renderer
from gradhealth.render.html import render, render_html, verdict_sentence
from gradhealth.render.registry import NamedReport

VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Checker(HTMLParser):
    """Checks that every non-void tag is closed in order, and collects attributes that could load a resource."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.sources += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def _check(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert all(s.startswith("data:image/png;base64,") for s in checker.sources)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    return checker


@pytest.fixture(scope="module")
def vanishing() -> gradhealth.Report:
    return gradhealth.audit(reference.LinearRecurrence(4, 0.9), seq_len=60, batch_size=4, probes="quick")


@pytest.fixture(scope="module")
def bidirectional() -> gradhealth.Report:
    torch.manual_seed(0)
    model = torch.nn.LSTM(3, 8, batch_first=True, bidirectional=True)
    return gradhealth.audit(model, seq_len=24, batch_size=4, probes="quick")


def test_unidirectional_page_order(vanishing: gradhealth.Report) -> None:
    pytest.importorskip("matplotlib")
    page = render_html(vanishing)
    checker = _check(page)
    assert len(checker.sources) == 1
    positions = [page.index(s) for s in ("VANISHING", "<img", "<h3>Findings", "GH001", "<h3>Settings")]
    assert positions == sorted(positions)
    assert "after 44 steps" in page  # horizon@1e-2 of 0.9^k
    assert escape(vanishing.findings[0].advice) in page


def test_bidirectional_page_shows_both_directions(bidirectional: gradhealth.Report) -> None:
    page = render_html(bidirectional, plots=False)
    _check(page)
    assert "worst of 2 directions" in page
    rows = re.findall(r"<tr><td>(forward|backward)</td>", page)
    assert rows == ["forward", "backward"]
    assert escape(verdict_sentence(bidirectional, 24, 1e-2)) in page
    assert page.count(f">{bidirectional.directions[1].verdict.upper()}<") >= 2


def test_named_reports_with_gates_and_errors(vanishing: gradhealth.Report, bidirectional: gradhealth.Report) -> None:
    gate = GateResult("min_horizon", False, "horizon 44 < 50", measured=44.0, threshold=50.0)
    entries = [
        NamedReport("runs/a.pt", "runs/a.pt", report=vanishing, gates=[gate]),
        NamedReport("runs/b.pt:<rnn>", "runs/b.pt", layer="<rnn>", report=bidirectional),
        NamedReport("runs/c.pt", "runs/c.pt", error="not a checkpoint: bad magic"),
    ]
    page = get_renderer("html")(entries, color=False, title="CI run")
    assert get_renderer("html") is render
    _check(page)
    assert "<title>CI run</title>" in page
    assert "runs/b.pt:&lt;rnn&gt;" in page and "<rnn>" not in page
    assert "not a checkpoint: bad magic" in page and "NOT AUDITED" in page
    assert "horizon 44 &lt; 50" in page and ">FAIL<" in page
    assert re.search(r"Verdicts: .*VANISHING.* × 2 .*ERROR.* × 1", page)


def test_without_matplotlib_the_page_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, vanishing: gradhealth.Report
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    page = render_html(vanishing)
    checker = _check(page)
    assert checker.sources == []
    assert "pip install &#x27;gradhealth[plot]&#x27;" in page


def test_labels_must_match(vanishing: gradhealth.Report) -> None:
    with pytest.raises(ValueError, match="2 labels for 1 reports"):
        render_html([vanishing], labels=["a", "b"])
