"""The settings of one audit, validated once, recorded in every Report.

:class:`AuditConfig` is the single option bag every face (Python API, pytest plugin, CLI) fills in; the engine
reads nothing else. Validation errors name the setting and where its value came from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gradhealth.errors import ConfigError

__all__ = ["DTYPES", "PRESETS", "AuditConfig"]

#: dtype names the probes accept; ``None`` means "float64 where the model allows it on CPU, else float32".
DTYPES = ("float64", "float32", "bfloat16", "float16")

#: Named probe sets. Probes not registered (or not applicable to the model) are skipped.
PRESETS: dict[str, tuple[str, ...]] = {
    "quick": ("lag_profile",),
    "standard": ("lag_profile", "parameter_gradients", "spectrum", "gates"),
    "thorough": (
        "lag_profile",
        "parameter_gradients",
        "spectrum",
        "gates",
        "state_gradients",
        "length_scan",
        "lyapunov",
    ),
}


@dataclass(frozen=True)
class AuditConfig:
    """Every setting that produced a Report.

    Attributes:
        seq_len: the dependency length K; lags 0..K are probed.
        input_size: features per step fed to the model (``None``: inferred from the model).
        batch_size: number of independent probe sequences.
        task: name of the synthetic input task (``"noise"`` by default).
        input_scale: standard deviation s of the inputs.
        burn_in: steps run before the probed window (``None``: K, so lags are measured in steady state).
        eps: the horizon threshold ε on the normalised profile g(k).
        eps_secondary: the second horizon threshold reported (1e-3).
        explode_threshold: g(k) at or above this is exploding (100).
        seed: seeds every random draw of the probes.
        dtype: probe dtype name, or ``None`` for automatic.
        device: device name, or ``None`` for the model's own device.
        probes: probe names to run, or a preset name.
    """

    seq_len: int
    input_size: int | None = None
    batch_size: int = 32
    task: str = "noise"
    input_scale: float = 1.0
    burn_in: int | None = None
    eps: float = 1e-2
    eps_secondary: float = 1e-3
    explode_threshold: float = 100.0
    seed: int = 0
    dtype: str | None = None
    device: str | None = None
    probes: tuple[str, ...] | str = "standard"
    source: str = field(default="argument", compare=False, repr=False)

    def __post_init__(self) -> None:
        self._check_int("seq_len", self.seq_len, minimum=1)
        if self.input_size is not None:
            self._check_int("input_size", self.input_size, minimum=1)
        self._check_int("batch_size", self.batch_size, minimum=1)
        if self.burn_in is not None:
            self._check_int("burn_in", self.burn_in, minimum=0)
        self._check_int("seed", self.seed, minimum=0)
        self._check_float("input_scale", self.input_scale, low=0.0, high=math.inf)
        self._check_float("eps", self.eps, low=0.0, high=1.0)
        self._check_float("eps_secondary", self.eps_secondary, low=0.0, high=1.0)
        self._check_float("explode_threshold", self.explode_threshold, low=1.0, high=math.inf)
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError("dtype", self.dtype, f"use one of {', '.join(DTYPES)} or None", source=self.source)
        if not isinstance(self.task, str) or not self.task:
            raise ConfigError("task", self.task, "must be a task name such as 'noise'", source=self.source)
        if isinstance(self.probes, str):
            if self.probes not in PRESETS:
                raise ConfigError(
                    "probes",
                    self.probes,
                    f"use a preset ({', '.join(PRESETS)}) or a list of probe names",
                    source=self.source,
                )
        elif not all(isinstance(p, str) for p in self.probes):
            raise ConfigError("probes", self.probes, "must be a list of probe names", source=self.source)

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
        data["burn_in"] = self.effective_burn_in
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditConfig:
        """Rebuild from :meth:`to_dict` output, ignoring keys written by later versions."""
        known = {f.name for f in fields(cls)} - {"source"}
        kwargs = {k: v for k, v in data.items() if k in known}
        if isinstance(kwargs.get("probes"), list):
            kwargs["probes"] = tuple(kwargs["probes"])
        return cls(**kwargs)

    def _check_int(self, name: str, value: object, *, minimum: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(name, value, f"must be an integer >= {minimum}", source=self.source)

    def _check_float(self, name: str, value: object, *, low: float, high: float) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (low < float(value) < high):  # type: ignore[arg-type]
            bounds = f"in ({low:g}, {high:g})" if math.isfinite(high) else f"> {low:g}"
            raise ConfigError(name, value, f"must be a finite number {bounds}", source=self.source)
