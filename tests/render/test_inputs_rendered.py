"""Every text face names the probe inputs of a report made on the user's data, escaped, and never the data."""

from __future__ import annotations

import torch
from torch import nn

import gradhealth
from gradhealth.render import html, markdown, table
from gradhealth.render.registry import NamedReport
from gradhealth.report import InputInfo
from gradhealth.testing._message import reproduce_call

HOSTILE = "<script>alert(1)</script>|[red]x[/].npy"


def _entry() -> NamedReport:
    report = gradhealth.audit(nn.GRU(2, 3, batch_first=True), inputs=torch.full((2, 9, 2), 0.4321), probes="quick")
    assert report.inputs is not None
    report.inputs = InputInfo(HOSTILE, report.inputs.shape, report.inputs.dtype, report.inputs.kind, "0123abcd")
    return NamedReport("m", "m", None, report)


def test_the_inputs_are_named_in_every_text_face() -> None:
    entry = _entry()
    assert entry.report is not None
    expected = "(float32 [2, 9, 2] features, sha256 0123abcd)"
    assert f"inputs: {HOSTILE} {expected}" in str(entry.report)
    assert f"{HOSTILE} {expected}" in table.render([entry], width=400)
    assert "\\|\\[red\\]x\\[/\\].npy" in markdown.render([entry])  # no table split, no link syntax
    page = html.render([entry])
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "INPUTS = " in reproduce_call(entry.report)
    for text in (str(entry.report), table.render([entry]), markdown.render([entry]), page):
        assert "0.4321" not in text
