"""Contract: every probe gives the batch-first numbers on a model's time-major twin, in every probe dtype; the two
input-gradient probes agree with plain autograd written here; each dtype resolves the analytic references.

The matrix:

- families: ``nn.RNN`` (tanh), ``nn.LSTM`` (2 layers, ``proj_size``) and ``nn.GRU``, each uni- and bidirectional
  (the module's own ``batch_first``); an ``LSTMCell`` and a bidirectional pair of ``GRUCell`` driven in a loop by a
  module with a declared :class:`gradhealth.Layout`; a token-id model (Embedding -> GRU -> Linear, gradient at the
  embedding output); ``reference.LinearRecurrence`` behind a module that transposes;
- layouts: a batch-first and a time-major twin sharing one ``state_dict``;
- directions: forward, and backward for the bidirectional families;
- dtypes: float64, float32, float16, bfloat16 (every probe runs in each: a probe that could not would have to
  skip with a reason or raise a gradhealth error, and the twin test would show which);
- probes: the thorough preset, i.e. every built-in probe, with a short length-scan ladder.

Every number of every probe result (and of the lag profile of each direction) is compared, walking the report's
JSON, with a tolerance that follows from the dtype (:data:`TWIN_TOLERANCE`, :func:`dtype_tolerance`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradhealth
from gradhealth import reference
from gradhealth.probes.lag_profile import lag_norms
from gradhealth.probes.length_scan import LengthScan
from gradhealth.probes.lyapunov import Lyapunov

from .conftest import probe_context

DTYPES = ("float64", "float32", "float16", "bfloat16")

#: Unit roundoff u (half the machine epsilon) of each probe dtype.
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}

#: The length-scan ladder the short_ladder fixture installs: 32 steps is the longest chain an audit here runs.
LADDER = (8, 16, 32)

SEQ_LEN, BATCH = 8, 3


@pytest.fixture(autouse=True, scope="module")
def one_intra_op_thread() -> Iterator[None]:
    """These tensors are a few hundred numbers: torch's intra-op threads only contend with the other xdist worker
    for the same cores (the module took 70 s on 2 idle cores with 2 threads per worker, 18 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# -- twin models -------------------------------------------------------------------------------------------------
class CellLoop(nn.Module):
    """Drives a ``*Cell`` over time in either layout; with ``bidirectional`` a second cell reads the sequence
    backwards and its states follow the first's in the features (PyTorch's bidirectional output layout)."""

    def __init__(self, cell: type[nn.RNNCellBase], *, batch_first: bool, bidirectional: bool = False) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.input_size = 3
        self.cell = cell(3, 4)
        self.cell_reverse = cell(3, 4) if bidirectional else None

    @staticmethod
    def _run(cell: nn.Module, steps: list[torch.Tensor]) -> list[torch.Tensor]:
        state: Any = None
        outputs = []
        for x in steps:
            state = cell(x, state)
            outputs.append(state[0] if isinstance(state, tuple) else state)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time = 1 if self.batch_first else 0
        steps = list(x.unbind(time))
        outputs = self._run(self.cell, steps)
        if self.cell_reverse is not None:
            backward = self._run(self.cell_reverse, steps[::-1])[::-1]
            outputs = [torch.cat(pair, dim=-1) for pair in zip(outputs, backward, strict=True)]
        return torch.stack(outputs, dim=time)


class TokenGRU(nn.Module):
    """Token ids -> Embedding -> GRU -> Linear, in either layout."""

    def __init__(self, *, batch_first: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.rnn = nn.GRU(4, 6, batch_first=batch_first)
        self.head = nn.Linear(6, 11)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.from_embedding(self.embed(ids))

    def from_embedding(self, embedded: torch.Tensor) -> torch.Tensor:
        """The model after its embedding (what the reference differentiates)."""
        return self.head(self.rnn(embedded)[0])


class Transposing(nn.Module):
    """``reference.LinearRecurrence`` (batch-first by construction) driven in either layout."""

    def __init__(self, *, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.input_size = 4
        self.recurrence = reference.LinearRecurrence(4, 0.9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_first:
            return self.recurrence(x)
        return self.recurrence(x.transpose(0, 1)).transpose(0, 1)


ALL_PROBES = {"parameter_gradients", "spectrum", "gates", "state_gradients", "length_scan", "lyapunov"}


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family: how to build it in a layout, whether a Layout must be declared, and what applies."""

    name: str
    build: Callable[[bool], nn.Module]
    declares_layout: bool = False
    is_bidirectional: bool = False
    is_tokens: bool = False
    probes: frozenset[str] = frozenset(ALL_PROBES)

    def layout(self, batch_first: bool) -> gradhealth.Layout | None:
        if not self.declares_layout:
            return None  # nn.RNN/LSTM/GRU say their layout themselves
        return gradhealth.Layout(batch_first=batch_first, bidirectional=self.is_bidirectional)

    def twins(self) -> tuple[nn.Module, nn.Module]:
        """A batch-first model and its time-major twin with the same weights."""
        torch.manual_seed(0)
        batch_first = self.build(True)
        time_major = self.build(False)
        time_major.load_state_dict(batch_first.state_dict())
        return batch_first, time_major


def _families() -> list[Family]:
    no_gates = frozenset(ALL_PROBES - {"gates"})
    found = []
    for bi in (False, True):
        suffix = "_bi" if bi else ""
        found += [
            Family(f"rnn{suffix}", lambda bf, bi=bi: nn.RNN(3, 5, bidirectional=bi, batch_first=bf),
                   is_bidirectional=bi, probes=no_gates),
            Family(f"lstm{suffix}", lambda bf, bi=bi: nn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=bi,
                                                              batch_first=bf), is_bidirectional=bi),
            Family(f"gru{suffix}", lambda bf, bi=bi: nn.GRU(3, 5, bidirectional=bi, batch_first=bf),
                   is_bidirectional=bi),
        ]  # fmt: skip
    return [
        *found,
        Family("lstm_cell", lambda bf: CellLoop(nn.LSTMCell, batch_first=bf), declares_layout=True),
        Family("gru_cell_bi", lambda bf: CellLoop(nn.GRUCell, batch_first=bf, bidirectional=True),
               declares_layout=True, is_bidirectional=True),
        Family("tokens", lambda bf: TokenGRU(batch_first=bf), declares_layout=True, is_tokens=True),
        Family("linear_recurrence", lambda bf: Transposing(batch_first=bf), declares_layout=True,
               probes=frozenset({"parameter_gradients", "length_scan"})),
    ]  # fmt: skip


FAMILIES = _families()


# -- comparing two reports ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far two measurements of the same quantity may differ.

    Attributes:
        rtol: relative, for norms, gains, ratios, timescales, losses and every other magnitude.
        atol: absolute, for numbers on a log scale or bounded by 1 (rates, exponents, log10 quantiles, R²,
            gate fractions and means, eigenvalue parts): a relative error r of a norm is an absolute error
            of about r in its logarithm.
        horizon: steps a horizon reached within K may move (an extrapolated one is held to ``rtol``).
        per_step: relative error of one step (one Jacobian), for the eigenvalues of one matrix.
    """

    rtol: float
    atol: float
    horizon: float = 0.0
    per_step: float = 0.0


#: Twins run the same weights through kernels that differ only in memory layout (a GEMM over a transposed
#: operand may sum in another order), so each rounding may differ by one u, along a chain of at most
#: max(LADDER) = 32 dependent steps of a few roundings each (4 allowed): 4·32·u relative in the worst case.
#: float64: that is 3e-14; 1e-10 is the analytic tolerance DESIGN.md sets, still 1e9 times below an O(1) layout
#: error (a lost or shifted step). float32: 7.6e-6, so 1e-5. float16 and bfloat16: 0.0625 and 0.5, which is
#: what 11 and 8 significant bits resolve over 32 steps; a half-precision horizon may move by one step (the
#: profile crosses ε between two lags), and verdicts, tags and every non-numeric field must still agree exactly.
TWIN_TOLERANCE = {
    "float64": Tolerance(1e-10, 1e-10),
    "float32": Tolerance(1e-5, 1e-5),
    "float16": Tolerance(4 * 32 * UNIT_ROUNDOFF["float16"], 4 * 32 * UNIT_ROUNDOFF["float16"], horizon=1),
    "bfloat16": Tolerance(4 * 32 * UNIT_ROUNDOFF["bfloat16"], 4 * 32 * UNIT_ROUNDOFF["bfloat16"], horizon=1),
}

_LOG_SCALE = frozenset(
    {"quantiles", "decay_rate", "decay_rate_tail", "growth_rate", "total_growth_rate", "exponents", "top_exponent",
     "fit_r2", "growth_r2", "mean", "saturated", "saturated_low", "saturated_high", "over_time", "dead_fraction",
     "eigenvalues"}
)  # fmt: skip
_HORIZONS = frozenset({"horizon", "horizon_1e3"})


def differences(a: Any, b: Any, tol: Tolerance, path: tuple[Any, ...] = (), *, skip: frozenset[str] = frozenset(),
                eigenvalues_as_sets: bool = False) -> list[str]:  # fmt: skip
    """Every leaf where two JSON values disagree beyond ``tol`` (keys in ``skip`` are left out)."""
    where = "/".join(map(str, path))
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        found = []
        for key in a:
            if key in skip:
                continue
            if key == "eigenvalues" and eigenvalues_as_sets and a[key] is not None and b[key] is not None:
                found += _eigenvalue_differences(a[key], b[key], tol, (*path, key))
            else:
                found += differences(a[key], b[key], tol, (*path, key), skip=skip,
                                     eigenvalues_as_sets=eigenvalues_as_sets)  # fmt: skip
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and not all(isinstance(x, str) for x in a):
        found = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found += differences(x, y, tol, (*path, i), skip=skip, eigenvalues_as_sets=eigenvalues_as_sets)
        return found
    if isinstance(a, float) and isinstance(b, (float, int)) and not isinstance(b, bool):
        names = {p for p in path if isinstance(p, str)}
        allowed = tol.rtol * max(abs(a), abs(b))
        if names & _LOG_SCALE:
            allowed = max(allowed, tol.atol)
        if names & _HORIZONS and a.is_integer() and float(b).is_integer():
            allowed = tol.horizon  # a horizon reached within K is a lag count; an extrapolated one is relative
        if abs(a - b) <= allowed:
            return []
        return [f"{where}: {a!r} != {b!r} (|diff| {abs(a - b):.3g} > {allowed:.3g})"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def _eigenvalue_differences(
    a: list[list[float]], b: list[list[float]], tol: Tolerance, path: tuple[Any, ...]
) -> list[str]:
    """Eigenvalues as multisets: the order of eigenvalues of equal magnitude (all of ρQ's) is arbitrary, but
    each must lie within the perturbation bound of one of the other's (Bauer-Fike for a normal W)."""
    ca, cb = (np.array([complex(*p) for p in pairs]) for pairs in (a, b))
    radius = max(float(np.abs(ca).max(initial=0.0)), float(np.abs(cb).max(initial=0.0)))
    allowed = tol.per_step * radius + 1e-12
    far = [z for z in ca if np.abs(cb - z).min() > allowed] + [z for z in cb if np.abs(ca - z).min() > allowed]
    return [f"{'/'.join(map(str, path))}: {z} has no counterpart within {allowed:.3g}" for z in far]


def _report_data(report: gradhealth.Report) -> dict[str, Any]:
    data = json.loads(report.to_json())
    return {"probes": data["probes"], "directions": data["directions"]}


def _audit(model: nn.Module, layout: gradhealth.Layout | None, dtype: str) -> gradhealth.Report:
    return gradhealth.audit(model, seq_len=SEQ_LEN, batch_size=BATCH, probes="thorough", dtype=dtype, layout=layout)


# -- 1. twins ----------------------------------------------------------------------------------------------------
@pytest.fixture
def one_lyapunov_exponent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The twins share one trajectory per layer, so the top exponent tests the layout as well as four would (the
    QR method costs one forward-mode pass per exponent and step, half of a thorough audit)."""
    monkeypatch.setattr(Lyapunov, "top_k", 1)


@pytest.mark.usefixtures("short_ladder", "one_lyapunov_exponent")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_time_major_twin_gives_the_batch_first_numbers(family: Family, dtype: str) -> None:
    batch_first, time_major = family.twins()
    first = _audit(batch_first, family.layout(True), dtype)
    second = _audit(time_major, family.layout(False), dtype)
    assert first.model["batch_first"] and not second.model["batch_first"]  # the twins really are both layouts
    assert first.config["dtype"] == second.config["dtype"] == dtype
    assert set(first.probes) == set(second.probes) == family.probes, "a probe did not run in this dtype"
    assert first.skipped_probes == second.skipped_probes
    assert all(len(reason) > 20 for reason in first.skipped_probes.values())
    expected_directions = ["forward", "backward"] if family.is_bidirectional else ["forward"]
    assert [d.name for d in first.directions] == [d.name for d in second.directions] == expected_directions
    found = differences(_report_data(first), _report_data(second), TWIN_TOLERANCE[dtype])
    assert not found, f"{len(found)} numbers differ between the twins:\n" + "\n".join(found[:12])
    assert [(f.code, f.probe, f.direction) for f in first.findings] == [
        (f.code, f.probe, f.direction) for f in second.findings
    ]


def test_differences_sees_a_lost_step() -> None:
    """The comparison is not vacuous: a profile shifted by one lag (the kind of error a layout bug makes) differs
    beyond every twin tolerance. bfloat16 resolves only what 8 bits do over 32 steps, so there the profile must
    decay faster than 0.9 per lag for a lost step to show (0.3^k here); a verdict or tag never hides."""
    for dtype, tol in TWIN_TOLERANCE.items():
        rho = 0.3 if dtype == "bfloat16" else 0.9
        g = [rho**k for k in range(9)]
        assert differences({"g": g}, {"g": g}, tol) == []
        assert differences({"g": g}, {"g": [1.0, *g[:-1]]}, tol), dtype
        assert differences({"tags": ["neutral"]}, {"tags": []}, tol)
        assert differences({"metrics": {"horizon": 5.0}}, {"metrics": {"horizon": 7.0}}, tol)


# -- 2. the input-gradient probes against plain autograd ----------------------------------------------------------
def _plain_output(
    family: Family, model: nn.Module, inputs: torch.Tensor, *, batch_first: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(leaf, y): the batch-first tensor the gradient is taken at (the inputs, or the embedding output of token
    ids) and the batch-first output, calling the model in its own layout."""
    if family.is_tokens:
        assert isinstance(model, TokenGRU)
        leaf = model.embed(inputs).detach().requires_grad_(True)
        own = leaf if batch_first else leaf.transpose(0, 1)
        y = model.from_embedding(own)
    else:
        leaf = inputs.detach().clone().requires_grad_(True)
        own = leaf if batch_first else leaf.transpose(0, 1)
        value = model(own)
        y = value[0] if isinstance(value, tuple) else value
    return leaf, y if batch_first else y.transpose(0, 1)


def _plain_directions(family: Family, y: torch.Tensor) -> list[tuple[str, torch.Tensor, bool]]:
    """(name, output features, is_reverse) per direction of time: the loss sits at the last step for the
    forward direction and at step 0 for the backward one."""
    if not family.is_bidirectional:
        return [("forward", y, False)]
    width = y.shape[-1] // 2
    return [("forward", y[..., :width], False), ("backward", y[..., width:], True)]


def _plain_norms(grad: torch.Tensor, steps: list[int]) -> torch.Tensor:
    return torch.stack([grad[:, t].norm(dim=-1) for t in steps], dim=1)


def _float64_twin(family: Family, batch_first: bool) -> nn.Module:
    model = family.twins()[0 if batch_first else 1]
    return copy.deepcopy(model).to(torch.float64).eval()


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_lag_norms_match_plain_autograd(family: Family, batch_first: bool) -> None:
    """N_b(k) = ||∂L/∂x_b[t_out - k]|| of every direction, per sample, and the report's G(k), to 1e-10 in
    float64 (the same seeded inputs and seed vectors v as the probe; everything else written here)."""
    model = _float64_twin(family, batch_first)
    ctx = probe_context(model, layout=family.layout(batch_first), seq_len=SEQ_LEN, batch_size=BATCH)
    measured = {m.direction: m for m in lag_norms(ctx)}
    leaf, y = _plain_output(family, model, ctx.make_batch("lag_profile").inputs, batch_first=batch_first)
    total = y.shape[1]
    report = gradhealth.audit(model, seq_len=SEQ_LEN, batch_size=BATCH, probes="quick",
                              layout=family.layout(batch_first))  # fmt: skip
    assert [d.name for d in report.directions] == [name for name, _, _ in _plain_directions(family, y)]
    for name, part, is_reverse in _plain_directions(family, y):
        t_out = 0 if is_reverse else total - 1
        y_t = part[:, t_out]
        v = ctx.randn(f"lag_profile/{name}", tuple(y_t.shape), like=y_t)
        (grad,) = torch.autograd.grad((y_t * v).sum(), leaf, retain_graph=True)
        lags = range(SEQ_LEN + 1)
        expected = _plain_norms(grad, [k if is_reverse else t_out - k for k in lags])
        torch.testing.assert_close(measured[name].norms, expected, rtol=1e-10, atol=0)
        big_g = expected.pow(2).mean(0).sqrt().tolist()
        assert report.direction(name).profile.grad_norm == pytest.approx(big_g, rel=1e-10, abs=0)


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_length_scan_matches_plain_autograd(family: Family, batch_first: bool) -> None:
    """N_first(T) = sqrt(mean_b ||∂L/∂x_b[0]||²) and N_total(T) at each length, and the growth rates as
    least-squares slopes (numpy's polyfit), to 1e-10 in float64. The scan measures the forward direction of
    time (the loss at the last step, on the forward half of a bidirectional output)."""
    model = _float64_twin(family, batch_first)
    ctx = probe_context(model, layout=family.layout(batch_first), seq_len=SEQ_LEN, batch_size=BATCH)
    result = LengthScan(ladder=LADDER).run(ctx)
    assert [p.length for p in result.points] == list(LADDER) and result.stopped == "complete"
    firsts, totals = [], []
    for length, point in zip(LADDER, result.points, strict=True):
        inputs = ctx.make_batch(f"length_scan/{length}", total_len=length).inputs
        leaf, y = _plain_output(family, model, inputs, batch_first=batch_first)
        _, forward, _ = _plain_directions(family, y)[0]
        y_t = forward[:, length - 1]
        v = ctx.randn("length_scan/v/forward", tuple(y_t.shape), like=y_t)
        (grad,) = torch.autograd.grad((y_t * v).sum(), leaf)
        per_step = _plain_norms(grad, list(range(length)))
        firsts.append(float(per_step[:, 0].pow(2).mean().sqrt()))
        totals.append(float(per_step.pow(2).sum(1).mean().sqrt()))
        assert point.first_input_norm == pytest.approx(firsts[-1], rel=1e-10, abs=0)
        assert point.total_norm == pytest.approx(totals[-1], rel=1e-10, abs=0)
    lengths = np.array(LADDER, dtype=float)
    assert result.growth_rate == pytest.approx(np.polyfit(lengths, np.log(firsts), 1)[0], rel=1e-10, abs=1e-12)
    assert result.total_growth_rate == pytest.approx(np.polyfit(lengths, np.log(totals), 1)[0], rel=1e-10, abs=1e-12)


# -- 3. dtypes on the analytic references --------------------------------------------------------------------------
#: name -> (factory, input scale): g(k) = 0.9^k exactly (LinearRecurrence) or in the near-linear regime (tanh RNN
#: with W_hh = 0.9Q and a GRU with constant update gate z = 0.9, tiny inputs); horizon 44 at ε = 1e-2.
REFERENCES: dict[str, tuple[Callable[[], nn.Module], float]] = {
    "linear_recurrence": (lambda: reference.LinearRecurrence(8, 0.9), 1.0),
    "scaled_orthogonal_rnn": (lambda: reference.scaled_orthogonal_rnn(8, 0.9), 1e-4),
    "constant_update_gru": (lambda: reference.constant_update_gru(8, 0.9), 1e-4),
}
REFERENCE_SEQ_LEN, REFERENCE_BURN_IN = 50, 10
#: The longest chain of steps in these audits: T = burn-in + K + 1.
REFERENCE_STEPS = REFERENCE_BURN_IN + REFERENCE_SEQ_LEN + 1

#: Numbers derived from the tail decay rate, compared in their own test (bfloat16 zeroes that rate).
TAIL_KEYS = frozenset({"decay_rate_tail", "timescale", "half_life", "horizon_1e3", "tags"})
#: The floor relative to G(0) is tiny/eps of the dtype by definition: it differs between dtypes on purpose.
DTYPE_DEFINED_KEYS = frozenset({"relative_floor"})


def dtype_tolerance(dtype: str) -> Tolerance:
    """How far a dtype's numbers may be from float64's on the references.

    Rounding W = 0.9Q (8 x 8) to the dtype perturbs it by ||ΔW||_F <= u·||W||_F = 0.9·sqrt(8)·u; W is normal, so
    each |eigenvalue| moves by at most that (Bauer-Fike) and ln ρ by sqrt(8)·u; the step's own arithmetic adds
    about one u. So one step is known to (sqrt(8) + 1)·u, and a chain of T = 61 steps (the longest here) to T
    times that: 1.4e-5 in float32, 0.11 in float16 and 0.91 in bfloat16, which is what 24, 11 and 8 significant
    bits resolve over 61 steps. Half-precision horizons may move by one step (the brief's resolution; float16's
    bound is 0.9 step at lag 44).
    """
    per_step = (math.sqrt(8) + 1) * UNIT_ROUNDOFF[dtype]
    horizon = 0.0 if dtype in ("float64", "float32") else 1.0
    return Tolerance(per_step * REFERENCE_STEPS, per_step * REFERENCE_STEPS, horizon=horizon, per_step=per_step)


@functools.cache
def reference_report(name: str, dtype: str) -> dict[str, Any]:
    factory, scale = REFERENCES[name]
    report = gradhealth.audit(factory(), seq_len=REFERENCE_SEQ_LEN, burn_in=REFERENCE_BURN_IN, batch_size=BATCH,
                              input_scale=scale, probes="thorough", dtype=dtype)  # fmt: skip
    data = _report_data(report)
    data["verdict"], data["ran"] = report.verdict, sorted(report.probes)
    return data


@pytest.mark.usefixtures("short_ladder")
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_float64_is_the_analytic_answer(name: str) -> None:
    """The baseline the other dtypes are held to: g(k) = 0.9^k, horizon 44 (exact for the linear recurrence;
    within the tanh/sigmoid curvature at 1e-4 inputs for the other two)."""
    data = reference_report(name, "float64")
    forward = data["directions"][0]
    rtol = 1e-10 if name == "linear_recurrence" else 1e-5
    np.testing.assert_allclose(forward["profile"]["g"], 0.9 ** np.arange(REFERENCE_SEQ_LEN + 1), rtol=rtol)
    assert forward["metrics"]["horizon"] == 44 and data["verdict"] == "vanishing"
    assert data["probes"]["length_scan"]["growth_rate"] == pytest.approx(math.log(0.9), rel=rtol)


@pytest.mark.usefixtures("short_ladder")
@pytest.mark.parametrize("dtype", DTYPES[1:])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_every_dtype_agrees_with_float64(name: str, dtype: str) -> None:
    """Every probe's numbers in float32/float16/bfloat16 against float64, within :func:`dtype_tolerance`
    (eigenvalues as multisets; the tail-rate numbers in the next test)."""
    baseline, measured = reference_report(name, "float64"), reference_report(name, dtype)
    assert measured["ran"] == baseline["ran"] and measured["verdict"] == baseline["verdict"]
    found = differences(baseline, measured, dtype_tolerance(dtype), skip=TAIL_KEYS | DTYPE_DEFINED_KEYS,
                        eigenvalues_as_sets=True)  # fmt: skip
    assert not found, f"{len(found)} numbers differ from float64:\n" + "\n".join(found[:12])


@pytest.mark.usefixtures("short_ladder")
@pytest.mark.parametrize("dtype", DTYPES[1:])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_every_dtype_resolves_the_tail_rate(name: str, dtype: str) -> None:
    """decay_rate_tail, timescale, half-life, the extrapolated 1e-3 horizon and the tags against float64."""
    baseline, measured = reference_report(name, "float64"), reference_report(name, dtype)
    tol = dtype_tolerance(dtype)
    found = []
    for a, b in zip(baseline["directions"], measured["directions"], strict=True):
        found += differences({k: a["metrics"][k] for k in TAIL_KEYS - {"tags"}},
                             {k: b["metrics"][k] for k in TAIL_KEYS - {"tags"}}, tol, ("lag_profile",))  # fmt: skip
        found += differences(a["tags"], b["tags"], tol, ("lag_profile", "tags"))
    for a, b in zip(baseline["probes"].get("state_gradients", {}).get("profiles", []),
                    measured["probes"].get("state_gradients", {}).get("profiles", []), strict=True):  # fmt: skip
        found += differences(a["decay_rate_tail"], b["decay_rate_tail"], tol, ("state_gradients", "decay_rate_tail"))
    assert not found, "\n".join(found)
