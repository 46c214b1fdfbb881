"""The HTML renderer: one self-contained file per audit run, readable on its own.

Order on the page: the verdict (with one sentence saying what it means), then the plots, then the findings with
their advice, then the settings and the model description. Plots are PNGs embedded as base64 ``data:`` URIs and
the styles are inline, so the file opens offline and can be attached to a CI run or mailed as is; nothing is
fetched from the network. Without matplotlib the plots are replaced by a text sparkline and a note naming the
``gradhealth[plot]`` extra.

Registered as format ``html`` through the ``gradhealth_register_renderers`` hook.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from gradhealth.hookspecs import hookimpl
from gradhealth.render.text import format_number, sparkline

if TYPE_CHECKING:
    from gradhealth.report import DirectionResult, Report

__all__ = ["gradhealth_register_renderers", "render_html", "verdict_sentence"]

_VERDICT_COLORS = {
    "healthy": ("#1a7f37", "#dafbe1"),
    "vanishing": ("#9a6700", "#fff8c5"),
    "exploding": ("#cf222e", "#ffebe9"),
    "non_finite": ("#82071e", "#ffebe9"),
}

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0;
       background: #f6f8fa; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; min-height: 100vh; }
h1 { font-size: 1.6rem; margin: 0 0 4px; } h2 { font-size: 1.3rem; margin: 32px 0 8px; border-bottom: 1px solid #d0d7de;
     padding-bottom: 4px; } h3 { font-size: 1.05rem; margin: 20px 0 8px; }
.sub { color: #59636e; margin: 0 0 16px; }
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


@hookimpl
def gradhealth_register_renderers() -> dict[str, Any]:
    """Register this renderer as format ``html``."""
    return {"html": render_html}


def render_html(
    reports: Report | Sequence[Report] | Mapping[str, Report],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    plots: bool = True,
    **options: Any,
) -> str:
    """Render one or more reports as one self-contained HTML page.

    Args:
        reports: one report, a sequence of reports, or reports by label.
        labels: names for the reports (default: the mapping keys, else the model class).
        title: page title.
        plots: embed matplotlib plots (when matplotlib is installed).
        **options: options meant for other renderers are accepted and ignored.

    Returns:
        The HTML document.
    """
    from gradhealth.plot import label_reports

    pairs = label_reports(reports)
    if labels is not None:
        pairs = [(str(label), report) for label, (_, report) in zip(labels, pairs, strict=True)]
    if not pairs:
        raise ValueError("render_html needs at least one report")
    page_title = title or ("gradhealth report" if len(pairs) == 1 else f"gradhealth report: {len(pairs)} models")
    images = _Images(enabled=plots)
    body = [f"<h1>{escape(page_title)}</h1>", f'<p class="sub">{escape(_subtitle(pairs))}</p>']
    if len(pairs) > 1:
        body.append(_summary_table(pairs))
        body.append(images.profiles(dict(pairs), "Lag profiles of every model, overlaid."))
    for label, report in pairs:
        body.append(_report_section(label, report, images, heading=len(pairs) > 1))
    version = pairs[0][1].gradhealth_version
    body.append(
        f"<footer>gradhealth {escape(version)} · report schema version {pairs[0][1].schema_version} · "
        "self-contained: no network access needed to view this file.</footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(page_title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


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
    if result.verdict == "vanishing":
        return (
            f"The gradient falls below ε = {eps:g} of its lag-0 size after {format_number(m.horizon)} steps, short of "
            f"the dependency length {k}: inputs further back barely influence learning."
        )
    extrapolated = f" (extrapolated horizon ≈ {format_number(m.horizon)} steps)" if math.isfinite(m.horizon) else ""
    return f"The gradient stays above ε = {eps:g} of its lag-0 size across all {k} steps{extrapolated}."


def _subtitle(pairs: list[tuple[str, Report]]) -> str:
    cfg = pairs[0][1].config
    parts = [f"K = {cfg.get('seq_len')}", f"task {cfg.get('task')}", f"ε = {cfg.get('eps')}"]
    if len(pairs) == 1:
        model = pairs[0][1].model
        parts.insert(0, f"{pairs[0][0]} ({format_number(model.get('parameters'))} parameters)")
    else:
        parts.insert(0, f"{len(pairs)} models")
    return " · ".join(parts)


def _badge(verdict: str) -> str:
    fg, bg = _VERDICT_COLORS.get(verdict, ("#1f2328", "#eaeef2"))
    return f'<span class="badge" style="color:{fg};background:{bg}">{escape(verdict.upper())}</span>'


def _horizon(result: DirectionResult | Report) -> str:
    m = result.metrics
    text = format_number(m.horizon, " steps")
    return text if m.horizon_reached else f"&gt; K (≈ {escape(format_number(m.horizon))} extrapolated)"


def _metric_cells(result: DirectionResult | Report) -> str:
    m = result.metrics
    return (
        f'<td>{_badge(result.verdict)}</td><td class="num">{_horizon(result)}</td>'
        f'<td class="num">{escape(format_number(m.decay_rate, "/step"))}</td>'
        f'<td class="num">{escape(format_number(m.half_life, " steps"))}</td>'
        f'<td class="num">{escape(format_number(m.fit_r2))}</td>'
        f'<td class="spark">{escape(sparkline(result.profile.g, width=40))}</td>'
    )


_METRIC_HEAD = (
    "<th>verdict</th><th>horizon</th><th>decay rate</th><th>half-life</th><th>fit R²</th><th>g(k), log scale</th>"
)


def _summary_table(pairs: list[tuple[str, Report]]) -> str:
    rows = "".join(f"<tr><td>{escape(label)}</td>{_metric_cells(r)}</tr>" for label, r in pairs)
    return f"<table><thead><tr><th>model</th>{_METRIC_HEAD}</tr></thead><tbody>{rows}</tbody></table>"


def _report_section(label: str, report: Report, images: _Images, *, heading: bool) -> str:
    cfg = report.config
    eps = float(cfg.get("eps", 1e-2))
    seq_len = cfg.get("seq_len")
    fg, bg = _VERDICT_COLORS.get(report.verdict, ("#1f2328", "#eaeef2"))
    worst = f" (worst of {len(report.directions)} directions: {report.primary_direction})"
    parts = [f"<section><h2>{escape(label)}</h2>" if heading else "<section>"]
    parts.append(
        f'<div class="verdict" style="border-color:{fg};background:{bg}"><span class="label" style="color:{fg}">'
        f"{escape(report.verdict.upper())}</span>{escape(worst if len(report.directions) > 1 else '')}"
        f"<p>{escape(verdict_sentence(report, seq_len, eps))}</p></div>"
    )
    rows = "".join(f"<tr><td>{escape(d.name)}</td>{_metric_cells(d)}</tr>" for d in report.directions)
    parts.append(f"<table><thead><tr><th>direction</th>{_METRIC_HEAD}</tr></thead><tbody>{rows}</tbody></table>")
    parts.append("<h3>Plots</h3>")
    parts.append(images.profiles({label: report}, _profile_caption(report)))
    parts.append(images.panels(report))
    parts.append(_findings(report))
    parts.append(_settings(report))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


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
    if report.skipped_probes:
        parts += ["<h3>Probes not run</h3>", table(report.skipped_probes)]
    return "".join(parts)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
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

    def profiles(self, reports: dict[str, Report], caption: str) -> str:
        fallback = self._unavailable()
        if fallback is not None:
            return fallback
        from gradhealth.plot import plot_profiles

        ax = plot_profiles(reports)
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
