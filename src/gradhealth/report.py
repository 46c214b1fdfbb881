"""The Report: plain data from one audit, with a versioned JSON form.

Everything here is standard library only, so reading a report back (``Report.from_json``), comparing two, or
rendering one never imports torch or numpy.

JSON conventions (schema version 2, docs/schema.md): non-finite floats are written as the strings ``"inf"``,
``"-inf"`` and ``"nan"`` (plain JSON has no such numbers) and read back as floats.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "GATE_METRICS",
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "VERDICTS",
    "VERDICT_SEVERITY",
    "DirectionResult",
    "Finding",
    "InputInfo",
    "LagMetrics",
    "Profile",
    "Report",
    "decode_floats",
    "encode_floats",
]

SCHEMA_VERSION = 2

#: Schema versions :meth:`Report.from_dict` reads (version 1 has no intervals: they read back empty).
READABLE_SCHEMA_VERSIONS = (1, 2)

#: Verdicts from best to worst. ``inconclusive``: the probe dtype could not resolve the profile down to ε
#: within K (the horizon is censored), so neither healthy nor vanishing can be told.
VERDICTS = ("healthy", "inconclusive", "finite_memory", "vanishing", "exploding", "non_finite")
VERDICT_SEVERITY = {name: rank for rank, name in enumerate(VERDICTS)}

#: The gates that decide on a metric with an interval: ``{gate: (metric, passes when the metric is at least the
#: threshold)}``. ``max_decay_rate`` is given as a positive rate and checked against ``-|threshold|``.
GATE_METRICS: dict[str, tuple[str, bool]] = {
    "min_horizon": ("horizon", True),
    "max_horizon": ("horizon", False),
    "max_decay_rate": ("decay_rate", True),
}

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_floats(value: Any) -> Any:
    """Recursively replace non-finite floats by ``"inf"``, ``"-inf"`` or ``"nan"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: encode_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_floats(v) for v in value]
    return value


def decode_floats(value: Any) -> Any:
    """Inverse of :func:`encode_floats`."""
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, dict):
        return {k: decode_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_floats(v) for v in value]
    return value


def _build(cls: type[Any], data: dict[str, Any]) -> Any:
    """Instantiate a dataclass from a dict, ignoring keys a later schema minor revision may have added."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class LagMetrics:
    """The scalar metrics of one lag profile (definitions in :mod:`gradhealth.metrics`).

    ``horizon`` is in steps; when ``horizon_reached`` is False it is the extrapolation beyond K (``inf`` if the
    profile does not decay); when ``horizon_censored`` is True the profile fell below the resolution floor
    while still above ε, and the horizon is a lower bound. Rates are per step (natural log); ``None`` means too
    few resolved lags to fit. g(k) is normalised at ``reference_lag``: lag 0 (``normalization="lag0"``) or the
    first lag with a resolved, positive gradient (``"first_positive"``, for outputs that see the input only
    after a delay). ``relative_floor`` is the resolution floor as a fraction of G(reference_lag): g values at or
    below it cannot be resolved. ``intervals`` maps a metric's name (``horizon``, ``horizon_1e3``,
    ``decay_rate``, ``decay_rate_tail``, ``timescale``, ``half_life``, ``peak_lag``, ``peak_gain``) to its
    ``[low, high]`` interval at ``interval_level`` (see :mod:`gradhealth.uncertainty`). When the profile shows a
    direct input-to-output path, ``horizon_recurrent`` is the horizon of g normalised at
    ``recurrent_reference_lag`` (the first lag after the direct path) and decides between vanishing and healthy
    (``verdict_basis = "recurrent"``; otherwise ``"reference"``: the horizon at ``reference_lag`` decides).
    """

    horizon: float
    horizon_reached: bool
    horizon_1e3: float
    horizon_1e3_reached: bool
    decay_rate: float | None
    decay_rate_tail: float | None
    fit_r2: float | None
    timescale: float | None
    half_life: float | None
    peak_lag: int
    peak_gain: float
    first_explode_lag: int | None
    first_nonfinite_lag: int | None
    normalization: str = "lag0"
    resolved_lags: int = 0
    max_lag: int = 0
    reference_lag: int = 0
    horizon_censored: bool = False
    horizon_1e3_censored: bool = False
    relative_floor: float = 0.0
    intervals: dict[str, list[float]] = field(default_factory=dict)
    interval_level: float | None = None
    horizon_recurrent: float | None = None
    horizon_recurrent_reached: bool = True
    recurrent_reference_lag: int | None = None
    verdict_basis: str = "reference"
    samples: int = 0

    @property
    def horizon_ci(self) -> tuple[float, float] | None:
        """The interval of ``horizon`` at ``interval_level`` (``None`` when none was computed)."""
        return self.interval("horizon")

    def interval(self, name: str) -> tuple[float, float] | None:
        """The interval of one metric at ``interval_level`` (``None`` when none was computed)."""
        pair = self.intervals.get(name)
        return (pair[0], pair[1]) if pair else None

    def is_borderline(self, gate: str, threshold: float) -> bool:
        """Whether a gate's outcome differs between the two ends of its metric's interval (see
        :meth:`Report.is_borderline`); False when the metric has no interval."""
        metric, at_least = _gate_metric(gate)
        pair = self.interval(metric)
        if pair is None:
            return False
        limit = -abs(threshold) if gate == "max_decay_rate" else threshold
        low, high = pair
        return low < limit <= high if at_least else low <= limit < high


def _gate_metric(gate: str) -> tuple[str, bool]:
    try:
        return GATE_METRICS[gate]
    except KeyError:
        known = ", ".join(GATE_METRICS)
        raise ValueError(f"no interval decides gate {gate!r}; gates with intervals: {known}") from None


@dataclass
class Profile:
    """The per-lag profile: G(k), g(k), G(k)/max G, resolution flags and per-sample log10-ratio quantiles."""

    lags: list[int]
    grad_norm: list[float]
    g: list[float]
    g_peak: list[float]
    resolved: list[bool]
    quantiles: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class DirectionResult:
    """The lag profile of one direction of time."""

    name: str
    verdict: str
    metrics: LagMetrics
    profile: Profile
    tags: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DirectionResult:
        return cls(
            name=data["name"],
            verdict=data["verdict"],
            metrics=_build(LagMetrics, data["metrics"]),
            profile=_build(Profile, data["profile"]),
            tags=list(data.get("tags", [])),
        )


@dataclass
class Finding:
    """One observation with its cause and a remedy.

    Attributes:
        code: stable identifier (``GH001``...), documented in docs/findings.md.
        severity: ``"info"``, ``"warning"`` or ``"error"``.
        title: one line naming the problem.
        message: what was measured, with the numbers.
        advice: what to do about it, from the literature.
        probe: the probe that raised it.
        direction: the direction of time it concerns, if any.
        data: the numbers behind it, for tools.
    """

    code: str
    severity: str
    title: str
    message: str
    advice: str = ""
    probe: str = "lag_profile"
    direction: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class InputInfo:
    """Where the probe inputs came from, when the user gave their own: a description, never the data.

    Attributes:
        source: what was given (``tensor``, ``numpy array``, ``list of 3``, ``DataLoader``, ``val.npz:x``).
        shape: the shape of the sequences used: ``[N, T, D]`` features or ``[N, T]`` token ids.
        dtype: their dtype as given (``float32``, ``int64``).
        kind: ``features`` or ``token_ids``.
        sha256: the first 16 hex digits of the sha256 of dtype, shape and content: the same data, the same hash.
    """

    source: str
    shape: list[int]
    dtype: str
    kind: str
    sha256: str


@dataclass
class Report:
    """The result of one audit.

    Attributes:
        verdict: ``healthy``, ``inconclusive``, ``finite_memory``, ``vanishing``, ``exploding`` or
            ``non_finite``; the worst over directions.
        metrics: lag metrics of the deciding direction (``primary_direction``).
        profile: lag profile of the deciding direction.
        tags: tags of the deciding direction.
        directions: one result per direction of time (one for unidirectional models).
        findings: observations with advice, worst first.
        probes: results of the other probes by name (plain data).
        config: every setting that produced the report.
        model: what the adapter found (class, parameters, input size, directions, ...).
        skipped_probes: probes asked for but not run, with the reason.
        inputs: the user's probe inputs (``None``: the synthetic ``task`` of ``config``).
    """

    verdict: str
    metrics: LagMetrics
    profile: Profile
    tags: list[str]
    directions: list[DirectionResult]
    findings: list[Finding] = field(default_factory=list)
    probes: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    skipped_probes: dict[str, str] = field(default_factory=dict)
    primary_direction: str = "forward"
    gradhealth_version: str = ""
    schema_version: int = SCHEMA_VERSION
    inputs: InputInfo | None = None

    @property
    def is_healthy(self) -> bool:
        """True when the verdict is ``healthy``."""
        return self.verdict == "healthy"

    def is_borderline(self, gate: str, threshold: float) -> bool:
        """Whether ``threshold`` lies inside the interval of the metric a gate decides on, in any direction:
        the point estimate passes (or fails) the gate but another probe seed could well decide otherwise.

        Args:
            gate: ``"min_horizon"``, ``"max_horizon"`` or ``"max_decay_rate"`` (see :data:`GATE_METRICS`).
            threshold: the gate's threshold (steps, or a rate per step for ``max_decay_rate``).

        Raises:
            ValueError: no interval decides that gate.

        Example:
            >>> import torch, gradhealth
            >>> report = gradhealth.audit(torch.nn.GRU(4, 8, batch_first=True), seq_len=30, probes="quick")
            >>> low, high = report.metrics.horizon_ci
            >>> report.is_borderline("min_horizon", high + 1)
            False
        """
        _gate_metric(gate)
        return any(d.metrics.is_borderline(gate, threshold) for d in self.directions)

    def direction(self, name: str) -> DirectionResult:
        """The result for one direction (``"forward"`` or ``"backward"``)."""
        for result in self.directions:
            if result.name == name:
                return result
        raise KeyError(f"no direction {name!r}; this report has {[d.name for d in self.directions]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (schema version 2); non-finite floats stay floats (see :meth:`to_json`)."""
        data = dataclasses.asdict(self)
        ordered = {"schema_version": data.pop("schema_version"), "verdict": data.pop("verdict")}
        ordered.update(data)
        return ordered

    def to_json(self, *, indent: int | None = 2) -> str:
        """Versioned JSON; non-finite floats are written as ``"inf"``/``"-inf"``/``"nan"``."""
        return json.dumps(encode_floats(self.to_dict()), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a report from :meth:`to_dict` output (or decoded JSON).

        Raises:
            ValueError: the data is not a gradhealth report of a schema this version reads.
        """
        if not isinstance(data, dict) or "verdict" not in data or "metrics" not in data:
            raise ValueError("not a gradhealth report: expected an object with 'verdict' and 'metrics'")
        version = data.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS:
            raise ValueError(
                f"report schema_version {version!r} is not supported by this gradhealth "
                f"(reads versions {', '.join(map(str, READABLE_SCHEMA_VERSIONS))}); upgrade gradhealth or re-run "
                "the audit"
            )
        return cls(
            verdict=data["verdict"],
            metrics=_build(LagMetrics, data["metrics"]),
            profile=_build(Profile, data["profile"]),
            tags=list(data.get("tags", [])),
            directions=[DirectionResult.from_dict(d) for d in data.get("directions", [])],
            findings=[_build(Finding, f) for f in data.get("findings", [])],
            probes=dict(data.get("probes", {})),
            config=dict(data.get("config", {})),
            model=dict(data.get("model", {})),
            skipped_probes=dict(data.get("skipped_probes", {})),
            primary_direction=data.get("primary_direction", "forward"),
            gradhealth_version=data.get("gradhealth_version", ""),
            schema_version=version,
            inputs=_build(InputInfo, data["inputs"]) if data.get("inputs") else None,
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        """Read a report written by :meth:`to_json`.

        Raises:
            ValueError: the text is not JSON, or not a report this version reads.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a gradhealth report: invalid JSON ({exc})") from exc
        return cls.from_dict(decode_floats(data))

    def plot(self, path: Any = None, **kw: Any) -> Any:
        """Plot this report with matplotlib (the ``gradhealth[plot]`` extra): see :func:`gradhealth.plot.plot_report`.

        Args:
            path: where to save the figure (format from the suffix); not saved when ``None``.
            **kw: passed to :func:`gradhealth.plot.plot_report`.

        Returns:
            The matplotlib figure.

        Raises:
            MissingExtraError: matplotlib is not installed.
        """
        from gradhealth.plot import plot_report

        return plot_report(self, path, **kw)

    def __str__(self) -> str:
        from gradhealth.formatting import format_report

        return format_report(self)
