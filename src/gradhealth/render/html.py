"""The HTML renderer: one self-contained file per audit run, readable on its own.

Order on the page: the verdict (with one sentence saying what it means), then the plots, then the findings with
their advice, then the settings and the model description. Plots are PNGs embedded as base64 ``data:`` URIs and
the styles are inline, so the file opens offline and can be attached to a CI run or mailed as is; nothing is
fetched from the network. Without matplotlib the plots are replaced by a text sparkline and a note naming the
``gradhealth[plot]`` extra.

:func:`render` is the renderer registered as format ``html`` (``gradhealth audit --format html``): it takes the
registry's :class:`~gradhealth.render.registry.NamedReport` entries, so gate results and inputs that could not be
audited show too. :func:`render_html` takes plain reports as well.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from html import escape as _html_escape
from typing import TYPE_CHECKING, Any

from gradhealth.formatting import VERDICT_COLORS, format_horizon, format_number, interval_suffix
from gradhealth.render.escape import printable
from gradhealth.render.text import sparkline

if TYPE_CHECKING:
    from gradhealth.gates import GateResult
    from gradhealth.render.registry import NamedReport
    from gradhealth.report import DirectionResult, Report

__all__ = ["render", "render_html", "verdict_sentence"]

_VERDICT_COLORS = {
    **VERDICT_COLORS,
    "pass": VERDICT_COLORS["healthy"],
    "fail": ("#cf222e", "#ffebe9"),
    "borderline": VERDICT_COLORS["vanishing"],
}

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0;
       background: #f6f8fa; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; min-height: 100vh; }
h1 { font-size: 1.6rem; margin: 0 0 4px; } h2 { font-size: 1.3rem; margin: 32px 0 8px; border-bottom: 1px solid #d0d7de;
     padding-bottom: 4px; } h3 { font-size: 1.05rem; margin: 20px 0 8px; }
.sub { color: #59636e; margin: 0 0 16px; } .headline { font-size: 1.1rem; margin: 8px 0; }
.verdict { border-radius: 8px; padding: 12px 16px; margin: 12px 0; border-left: 6px solid; }
.verdict .label { font-weight: 700; font-size: 1.25rem; letter-spacing: 0.03em; }
.badge { display: inline-block; border-radius: 12px; padding: 1px 10px; font-weight: 600; font-size: 0.85rem; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92rem; }
th, td { text-align: left; padding: 4px 12px 4px 0; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { color: #59636e; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.spark { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre; color: #0969da; }
figure { margin: 12px 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #59636e; font-size: 0.85rem; }
.finding { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.finding .code { font-family: ui-monospace, monospace; font-weight: 700; margin-right: 6px; }
.finding p { margin: 4px 0; } .advice { color: #1f2328; background: #f6f8fa; padding: 6px 8px; border-radius: 4px; }
.sev-error { border-left: 5px solid #cf222e; } .sev-warning { border-left: 5px solid #bf8700; }
.sev-info { border-left: 5px solid #0969da; }
.note { color: #59636e; font-style: italic; }
footer { color: #59636e; font-size: 0.8rem; margin-top: 40px; }
"""


def escape(text: str) -> str:
    """HTML-escape untrusted text (names come from files), with its control characters written out."""
    return _html_escape(printable(text))


@dataclass
class _Entry:
    """One model on the page: its report, or the reason it could not be audited, and its gate results."""

    label: str
    report: Report | None
    gates: list[GateResult] = field(default_factory=list)
    error: str | None = None


def render(reports: Sequence[NamedReport], **options: Any) -> str:
    """The ``html`` format of the renderer registry: :func:`render_html` over named reports."""
    return render_html(reports, **options)


def render_html(
    reports: Report | Sequence[Report | NamedReport] | Mapping[str, Report],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    plots: bool = True,
    **options: Any,
) -> str:
    """Render one or more reports as one self-contained HTML page.

    Args:
        reports: one report, a sequence of reports or of the registry's named reports, or reports by label.
        labels: names for the reports (default: the mapping keys, else the model class).
        title: page title.
        plots: embed matplotlib plots (when matplotlib is installed).
        **options: options meant for other renderers are accepted and ignored.

    Returns:
        The HTML document.
    """
    entries = _entries(reports, labels)
    if not entries:
        raise ValueError("render_html needs at least one report")
    pairs = [(e.label, e.report) for e in entries if e.report is not None]
    page_title = title or ("gradhealth report" if len(entries) == 1 else f"gradhealth report: {len(entries)} models")
    images = _Images(enabled=plots)
    body = [f"<h1>{escape(page_title)}</h1>", f'<p class="sub">{escape(_subtitle(entries))}</p>']
    if len(entries) > 1:
        body.append(f'<p class="headline">{_headline(entries)}</p>')
        body.append(_summary_table(entries))
        if len(pairs) > 1:
            body.append(images.profiles(dict(pairs), "Lag profiles of every model, overlaid."))
    for i, entry in enumerate(entries):
        body.append(_entry_section(entry, images, heading=len(entries) > 1, color=i))
    if not pairs:
        return _page(page_title, body)
    version = pairs[0][1].gradhealth_version
    body.append(
        f"<footer>gradhealth {escape(version)} · report schema version {pairs[0][1].schema_version} · "
        "self-contained: no network access needed to view this file.</footer>"
    )
    return _page(page_title, body)


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def _entries(
    reports: Report | Sequence[Report | NamedReport] | Mapping[str, Report], labels: Sequence[str] | None
) -> list[_Entry]:
    from gradhealth.plot import label_reports
    from gradhealth.report import Report

    if isinstance(reports, (Report, Mapping)):
        entries = [_Entry(label, report) for label, report in label_reports(reports)]
    else:
        plain = [r for r in reports if isinstance(r, Report)]
        plain_labels = iter(label for label, _ in label_reports(plain))
        entries = [
            _Entry(next(plain_labels), r) if isinstance(r, Report) else _Entry(r.name, r.report, list(r.gates), r.error)
            for r in reports
        ]
    if labels is not None:
        if len(labels) != len(entries):
            raise ValueError(f"render_html got {len(labels)} labels for {len(entries)} reports")
        for entry, label in zip(entries, labels, strict=True):
            entry.label = str(label)
    return entries


def verdict_sentence(result: DirectionResult | Report, seq_len: int | None, eps: float) -> str:
    """One sentence saying what a verdict means for this profile, with its numbers."""
    m = result.metrics
    k = f"K = {seq_len}" if seq_len is not None else "K"
    if result.verdict == "non_finite":
        where = f" from lag {m.first_nonfinite_lag}" if m.first_nonfinite_lag is not None else ""
        return f"The gradient is NaN or Inf{where}: the numbers past that point mean nothing."
    if result.verdict == "exploding":
        return (
            f"The gradient grows to {format_number(m.peak_gain)}× its lag-0 size (first past 100× at lag "
            f"{m.first_explode_lag}): updates will be dominated by distant inputs and training can diverge."
        )
    if result.verdict == "inconclusive":
        return (
            f"The gradient drops below what the probe dtype resolves while still above ε = {eps:g}: the horizon is "
            f"at least {format_number(m.horizon)} steps, which cannot tell healthy from vanishing at {k}."
        )
    if result.verdict == "finite_memory":
        return (
            f"The gradient is exactly zero beyond the model's receptive field: the output depends only on the last "
            f"{format_number(m.horizon)} inputs, short of {k}. That is the architecture's finite memory, not a "
            f"vanishing gradient."
        )
    if result.verdict == "vanishing":
        return (
            f"The gradient falls below ε = {eps:g} of its lag-0 size after {format_number(m.horizon)} steps, short of "
            f"the dependency length {k}: inputs further back barely influence learning."
        )
    extrapolated = f" (extrapolated horizon ≈ {format_number(m.horizon)} steps)" if math.isfinite(m.horizon) else ""
    return f"The gradient stays above ε = {eps:g} of its lag-0 size across all {k} steps{extrapolated}."


def _subtitle(entries: list[_Entry]) -> str:
    audited = [e for e in entries if e.report is not None]
    if not audited:
        return f"{len(entries)} inputs, none could be audited"
    cfg = audited[0].report.config if audited[0].report is not None else {}
    parts = [f"K = {cfg.get('seq_len')}", f"task {cfg.get('task')}", f"ε = {cfg.get('eps')}"]
    if len(entries) == 1 and audited[0].report is not None:
        parameters = format_number(audited[0].report.model.get("parameters"))
        parts.insert(0, f"{audited[0].label} ({parameters} parameters)")
    else:
        parts.insert(0, f"{len(entries)} models")
    return " · ".join(parts)


def _badge(verdict: str) -> str:
    fg, bg = _VERDICT_COLORS.get(verdict, ("#1f2328", "#eaeef2"))
    return f'<span class="badge" style="color:{fg};background:{bg}">{escape(verdict.upper())}</span>'


def _horizon(result: DirectionResult | Report) -> str:
    m = result.metrics
    text = format_horizon(m.horizon, reached=m.horizon_reached, censored=m.horizon_censored)
    return escape(text + interval_suffix(m, "horizon"))


def _metric_cells(result: DirectionResult | Report) -> str:
    m = result.metrics
    return (
        f'<td>{_badge(result.verdict)}</td><td class="num">{_horizon(result)}</td>'
        f'<td class="num">{escape(format_number(m.decay_rate, "/step") + interval_suffix(m, "decay_rate"))}</td>'
        f'<td class="num">{escape(format_number(m.half_life, " steps") + interval_suffix(m, "half_life"))}</td>'
        f'<td class="num">{escape(format_number(m.fit_r2))}</td>'
        f'<td class="spark">{escape(sparkline(result.profile.g, width=40))}</td>'
    )


_METRIC_HEAD = (
    "<th>verdict</th><th>horizon</th><th>decay rate</th><th>half-life</th><th>fit R²</th><th>g(k), log scale</th>"
)


def _summary_table(entries: list[_Entry]) -> str:
    has_gates = any(e.gates for e in entries)
    rows = []
    for e in entries:
        gates = f"<td>{_gate_cell(e.gates)}</td>" if has_gates else ""
        if e.report is None:
            cells = f'<td>{_badge("error")}</td><td colspan="6">{escape(e.error or "not audited")}</td>'
        else:
            cells = _metric_cells(e.report)
        rows.append(f"<tr><td>{escape(e.label)}</td>{cells}{gates}</tr>")
    head = f"<tr><th>model</th>{_METRIC_HEAD}{'<th>gates</th>' if has_gates else ''}</tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _headline(entries: list[_Entry]) -> str:
    counts: dict[str, int] = {}
    for e in entries:
        key = e.report.verdict if e.report is not None else "error"
        counts[key] = counts.get(key, 0) + 1
    order = ["non_finite", "exploding", "vanishing", "finite_memory", "inconclusive", "healthy", "error"]
    return "Verdicts: " + " ".join(f"{_badge(v)} × {counts[v]}" for v in order if v in counts)


def _gate_cell(gates: list[GateResult]) -> str:
    if not gates:
        return "—"
    failed = [g for g in gates if not g.passed]
    borderline = _badge("borderline") if any(g.borderline for g in gates) else ""
    return (_badge("fail") if failed else _badge("pass")) + borderline


def _entry_section(entry: _Entry, images: _Images, *, heading: bool, color: int) -> str:
    parts = [f"<section><h2>{escape(entry.label)}</h2>" if heading else "<section>"]
    report = entry.report
    if report is None:
        parts.append(
            f'<div class="verdict" style="border-color:#cf222e;background:#ffebe9"><span class="label" '
            f'style="color:#cf222e">NOT AUDITED</span><p>{escape(entry.error or "no report")}</p></div></section>'
        )
        return "\n".join(parts)
    cfg = report.config
    eps = float(cfg.get("eps", 1e-2))
    seq_len = cfg.get("seq_len")
    fg, bg = _VERDICT_COLORS.get(report.verdict, ("#1f2328", "#eaeef2"))
    worst = f" (worst of {len(report.directions)} directions: {report.primary_direction})"
    parts.append(
        f'<div class="verdict" style="border-color:{fg};background:{bg}"><span class="label" style="color:{fg}">'
        f"{escape(report.verdict.upper())}</span>{escape(worst if len(report.directions) > 1 else '')}"
        f"<p>{escape(verdict_sentence(report, seq_len, eps))}</p></div>"
    )
    rows = "".join(f"<tr><td>{escape(d.name)}</td>{_metric_cells(d)}</tr>" for d in report.directions)
    parts.append(f"<table><thead><tr><th>direction</th>{_METRIC_HEAD}</tr></thead><tbody>{rows}</tbody></table>")
    parts.append(_gates(entry.gates))
    parts.append("<h3>Plots</h3>")
    parts.append(images.profiles({entry.label: report}, _profile_caption(report), first_color=color))
    parts.append(images.panels(report))
    parts.append(_findings(report))
    parts.append(_settings(report))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _gates(gates: list[GateResult]) -> str:
    if not gates:
        return ""
    rows = "".join(
        f"<tr><td>{_badge('pass' if g.passed else 'fail')}{_badge('borderline') if g.borderline else ''}</td>"
        f"<td>{escape(g.gate)}</td>"
        f"<td>{escape(g.direction)}</td><td>{escape(g.message)}</td></tr>"
        for g in gates
    )
    return f"<h3>Gates</h3><table><tbody>{rows}</tbody></table>"


def _profile_caption(report: Report) -> str:
    directions = " Dashed: the backward direction." if len(report.directions) > 1 else ""
    return (
        "g(k): gradient reaching the input k steps back, relative to lag 0, on a log scale. Band: 10th-90th "
        f"percentile over probe samples; dotted line: horizon; dashed grey: ε.{directions}"
    )


def _findings(report: Report) -> str:
    if not report.findings:
        return '<h3>Findings</h3><p class="note">No findings.</p>'
    items = []
    for f in report.findings:
        where = f" ({escape(f.direction)})" if f.direction and len(report.directions) > 1 else ""
        advice = f'<p class="advice"><b>What to do:</b> {escape(f.advice)}</p>' if f.advice else ""
        items.append(
            f'<div class="finding sev-{escape(f.severity)}"><span class="code">{escape(f.code)}</span>'
            f"<b>{escape(f.title)}</b>{where} · {escape(f.severity)}<p>{escape(f.message)}</p>{advice}</div>"
        )
    return "<h3>Findings</h3>" + "".join(items)


def _settings(report: Report) -> str:
    def table(data: Mapping[str, Any]) -> str:
        rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_plain(v))}</td></tr>" for k, v in data.items())
        return f"<table><tbody>{rows}</tbody></table>"

    parts = ["<h3>Settings</h3>", table(report.config), "<h3>Model</h3>", table(report.model)]
    if report.inputs is not None:
        parts += ["<h3>Probe inputs</h3>", table(asdict(report.inputs))]
    if report.skipped_probes:
        parts += ["<h3>Probes not run</h3>", table(report.skipped_probes)]
    return "".join(parts)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items() if v not in (None, [], {}, ())) or "—"
    return "—" if value is None else str(value)


class _Images:
    """Makes the embedded figures, or says once why there are none."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.missing: str | None = None
        if enabled:
            from gradhealth.plot import MissingExtraError, require_matplotlib

            try:
                require_matplotlib()
            except MissingExtraError as exc:
                self.missing = str(exc)

    def _unavailable(self) -> str | None:
        if not self.enabled:
            return ""
        if self.missing is not None:
            return f'<p class="note">No plots: {escape(self.missing)}.</p>'
        return None

    def profiles(self, reports: dict[str, Report], caption: str, *, first_color: int = 0) -> str:
        fallback = self._unavailable()
        if fallback is not None:
            return fallback
        from gradhealth.plot import plot_profiles

        ax = plot_profiles(reports, first_color=first_color)
        return _figure_html(ax.figure, "lag profile g(k) on a log scale", caption)

    def panels(self, report: Report) -> str:
        if self._unavailable() is not None:
            return ""
        from gradhealth.plot import plot_parameter_gradients, plot_spectrum

        parts = []
        ax = plot_parameter_gradients(report)
        if ax is not None:
            caption = "Gradient norm of each parameter (per gate where the cell has gates), log scale."
            parts.append(_figure_html(ax.figure, "parameter gradients by layer and gate", caption))
        ax = plot_spectrum(report)
        if ax is not None:
            caption = "Eigenvalues of each recurrent weight matrix; outside the unit circle, linear dynamics grow."
            parts.append(_figure_html(ax.figure, "recurrent spectrum and the unit circle", caption))
        return "".join(parts)


def _figure_html(fig: Any, alt: str, caption: str) -> str:
    from gradhealth.plot import figure_png

    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return (
        f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )
