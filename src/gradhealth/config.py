"""The settings of one audit, validated once, recorded in every Report.

:class:`AuditConfig` is the single option bag every face (Python API, pytest plugin, CLI) fills in; the engine
reads nothing else. Its fields and their defaults are the audit and probe settings of the settings table
(:mod:`gradhealth.settings`), so every face has the same defaults. Validation errors name the setting and where
its value came from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gradhealth.errors import ConfigError
from gradhealth.settings import AUDIT, DTYPES, PRESETS, PROBE, SETTINGS, TABLE

__all__ = ["DTYPES", "PRESETS", "AuditConfig"]

#: The table's audit and probe settings: each is a field of AuditConfig with the table's default.
_TABLE_FIELDS = tuple(s.name for s in TABLE if s.group in (AUDIT, PROBE))


def _default(name: str) -> Any:
    return SETTINGS[name].default


@dataclass(frozen=True)
class AuditConfig:
    """Every setting that produced a Report.

    Attributes:
        seq_len: the dependency length K; lags 0..K are probed.
        input_size: features per step fed to the model (``None``: inferred from the model).
        batch_size: number of independent probe sequences.
        task: name of the synthetic input task.
        input_scale: standard deviation s of the inputs.
        burn_in: steps run before the probed window (``None``: K, so lags are measured in steady state).
        eps: the horizon threshold ε on the normalised profile g(k).
        eps_secondary: the second horizon threshold reported (1e-3; fixed by the metric contract).
        explode_threshold: g(k) at or above this is exploding (100; fixed by the metric contract).
        seed: seeds every random draw of the probes.
        dtype: probe dtype name, or ``None`` for automatic.
        device: device name, or ``None`` for the model's own device.
        probes: probe names to run, or a preset name.
        length_scan_lengths: sequence lengths of the ``length_scan`` probe.
        lyapunov_top_k: exponents computed by the ``lyapunov`` probe (at most the state size).
        gradient_splits: sub-batches of the ``parameter_gradients`` probe.
        probe_vectors: random seed vectors per probe sample.
        probe_mode: ``random`` or ``exact`` (the Frobenius norm through every output basis vector).
        summary: ``rms`` or ``median``: how per-sample norms are summarised into the lag profile.
        interval_level: level of the intervals on the lag metrics (see :mod:`gradhealth.uncertainty`).
        bootstrap_samples: bootstrap resamples behind each interval (0: none).
        target_horizon_precision: relative half-width of the horizon interval to reach by adding probe batches.
        max_probe_batches: the most probe batches ``target_horizon_precision`` may use.
        checkpoint_chunks: chunks of the lag profile's checkpointed backward over the window (1: one piece).

    Defaults are the settings table's (see :mod:`gradhealth.settings`).
    """

    seq_len: int = _default("seq_len")
    input_size: int | None = _default("input_size")
    batch_size: int = _default("batch_size")
    task: str = _default("task")
    input_scale: float = _default("input_scale")
    burn_in: int | None = _default("burn_in")
    eps: float = _default("eps")
    eps_secondary: float = 1e-3
    explode_threshold: float = 100.0
    seed: int = _default("seed")
    dtype: str | None = _default("dtype")
    device: str | None = _default("device")
    probes: tuple[str, ...] | str = _default("probes")
    length_scan_lengths: tuple[int, ...] = _default("length_scan_lengths")
    lyapunov_top_k: int = _default("lyapunov_top_k")
    gradient_splits: int = _default("gradient_splits")
    summary: str = _default("summary")
    probe_vectors: int = _default("probe_vectors")
    probe_mode: str = _default("probe_mode")
    interval_level: float = _default("interval_level")
    bootstrap_samples: int = _default("bootstrap_samples")
    target_horizon_precision: float | None = _default("target_horizon_precision")
    max_probe_batches: int = _default("max_probe_batches")
    checkpoint_chunks: int = _default("checkpoint_chunks")
    source: str = field(default="argument", compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in _TABLE_FIELDS:
            object.__setattr__(self, name, SETTINGS[name].check(getattr(self, name), source=self.source))
        self._check_float("eps_secondary", self.eps_secondary, low=0.0, high=1.0)
        self._check_float("explode_threshold", self.explode_threshold, low=1.0, high=math.inf)

    @property
    def effective_burn_in(self) -> int:
        """Burn-in steps actually used: K unless set."""
        return self.seq_len if self.burn_in is None else self.burn_in

    @property
    def total_len(self) -> int:
        """Sequence length T = burn-in + K + 1 fed to the model."""
        return self.effective_burn_in + self.seq_len + 1

    @property
    def probe_names(self) -> tuple[str, ...]:
        """The probe names asked for, with a preset expanded."""
        return PRESETS[self.probes] if isinstance(self.probes, str) else tuple(self.probes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form recorded in the Report (``source`` is bookkeeping, not a setting)."""
        data = asdict(self)
        data.pop("source")
        data["probes"] = list(self.probes) if not isinstance(self.probes, str) else self.probes
        data["length_scan_lengths"] = list(self.length_scan_lengths)
        data["burn_in"] = self.effective_burn_in
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditConfig:
        """Rebuild from :meth:`to_dict` output, ignoring keys written by later versions."""
        known = {f.name for f in fields(cls)} - {"source"}
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**kwargs)

    def _check_float(self, name: str, value: object, *, low: float, high: float) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (low < float(value) < high):  # type: ignore[arg-type]
            bounds = f"in ({low:g}, {high:g})" if math.isfinite(high) else f"> {low:g}"
            raise ConfigError(name, value, f"must be a finite number {bounds}", source=self.source)
