"""A training history over steps: horizon (with its interval) and decay rate, and the lag profiles overlaid at
chosen steps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gradhealth.formatting import VERDICT_COLORS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gradhealth.history import HistoryRecord

from gradhealth.plot._common import COLORS, Y_FLOOR, require_matplotlib


def plot_history(records: Sequence[HistoryRecord], *, profiles_at: Sequence[int] = ()) -> Figure:
    """Three panels: the horizon over training steps (band: its interval, marker colour: the verdict; a horizon
    not reached within K is drawn as a triangle at K), the decay rate over steps, and g(k) at ``profiles_at``.

    Args:
        records: the history, in step order.
        profiles_at: steps whose profiles are overlaid (each must be in the history).
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 9.0), layout="constrained")
    horizon_ax, rate_ax, profile_ax = fig.subplots(3, 1)
    steps = [r.step for r in records]
    seq_len = max(r.seq_len for r in records)
    reached = [r.horizon if r.horizon_reached and math.isfinite(r.horizon) else math.nan for r in records]
    horizon_ax.plot(steps, [min(r.horizon, seq_len) for r in records], color="#59636e", lw=1)
    for verdict, (color, _) in VERDICT_COLORS.items():
        xs = [r.step for r, h in zip(records, reached, strict=True) if r.verdict == verdict and not math.isnan(h)]
        ys = [h for r, h in zip(records, reached, strict=True) if r.verdict == verdict and not math.isnan(h)]
        beyond = [r.step for r in records if r.verdict == verdict and not r.horizon_reached]
        if xs:
            horizon_ax.scatter(xs, ys, color=color, label=verdict, zorder=3)
        if beyond:
            horizon_ax.scatter(
                beyond,
                [seq_len] * len(beyond),
                color=color,
                marker="^",
                zorder=3,
                label=f"{verdict} (beyond K)" if not xs else None,
            )
    with_interval = [r for r in records if r.horizon_interval is not None]
    if with_interval:
        horizon_ax.fill_between(
            [r.step for r in with_interval],
            [min(r.horizon_interval[0], seq_len) for r in with_interval],  # type: ignore[index]
            [min(r.horizon_interval[1], seq_len) for r in with_interval],  # type: ignore[index]
            color="#0969da",
            alpha=0.15,
            label="interval",
        )
    horizon_ax.axhline(seq_len, color="#59636e", ls=":", lw=1)
    horizon_ax.set(ylabel="horizon (steps)", title="Gradient horizon over training (dotted: K)")
    horizon_ax.legend(fontsize="small")
    rates = [(r.step, r.decay_rate) for r in records if r.decay_rate is not None]
    rate_ax.plot([s for s, _ in rates], [v for _, v in rates], marker="o", color=COLORS[0])
    rate_ax.axhline(0.0, color="#59636e", ls=":", lw=1)
    rate_ax.set(ylabel="decay rate (per step)", xlabel="training step")
    by_step = {r.step: r for r in records}
    for i, step in enumerate(profiles_at):
        record = by_step[step]
        values = [v if math.isfinite(v) and v > 0 else math.nan for v in record.g]
        profile_ax.plot(record.lags, values, color=COLORS[i % len(COLORS)], label=f"step {step}")
    profile_ax.axhline(records[-1].eps, color="#59636e", ls="--", lw=1)
    profile_ax.set_yscale("log")
    profile_ax.set_ylim(bottom=Y_FLOOR)
    profile_ax.set(xlabel="lag k (steps)", ylabel="g(k)", title="Lag profiles at chosen steps (dashed: ε)")
    if profiles_at:
        profile_ax.legend(fontsize="small")
    return fig
