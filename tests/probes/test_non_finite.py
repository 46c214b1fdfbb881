"""NaN and Inf weights are what the tool exists to report: every probe returns, the verdict is non_finite, and
the spectrum and Lyapunov probes say GH204 instead of raising LAPACK's errors. Also: the caller's anomaly mode,
meta-device models and devices this machine lacks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth.errors import AdapterError, ConfigError
from gradhealth.probes.lyapunov import lyapunov_exponents
from gradhealth.probes.spectrum import matrix_spectrum

FAST = {"seq_len": 6, "batch_size": 2, "length_scan_lengths": [4, 8], "lyapunov_top_k": 2}


def _poisoned(cls: type[nn.Module], value: float) -> nn.Module:
    torch.manual_seed(0)
    model = cls(3, 4, batch_first=True)
    with torch.no_grad():
        model.weight_hh_l0[0, 0] = value
    return model


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_thorough_audit_of_non_finite_weights_reports_non_finite(
    cls: type[nn.Module], value: float, capfd: pytest.CaptureFixture[str]
) -> None:
    report = gradhealth.audit(_poisoned(cls, value), probes="thorough", **FAST)
    assert report.verdict == "non_finite"
    by_probe = {(f.code, f.probe) for f in report.findings}
    assert ("GH204", "spectrum") in by_probe
    spectrum = report.probes["spectrum"]["layers"][0]["recurrent"]
    assert spectrum["is_finite"] is False and math.isnan(spectrum["sigma_max"])
    assert spectrum["eigenvalues"] is None
    # LAPACK prints "Intel oneMKL ERROR" on stdout for non-finite input: nothing may reach the user's stream.
    assert "ERROR" not in capfd.readouterr().out


def test_lyapunov_of_a_nan_model_is_nan_with_gh204() -> None:
    report = gradhealth.audit(_poisoned(nn.RNN, math.nan), probes=["lyapunov"], **FAST)
    result = report.probes["lyapunov"]
    assert all(math.isnan(x) for x in result["layers"][0]["exponents"])
    assert math.isnan(result["top_exponent"]) and math.isnan(result["timescale"])
    assert [f.code for f in report.findings if f.probe == "lyapunov"] == ["GH204"]


def test_lyapunov_exponents_stop_at_a_non_finite_jacobian() -> None:
    # A linear map with one NaN entry: the first Jacobian-vector product is already NaN.
    w = torch.tensor([[0.5, 0.0], [math.nan, 0.5]], dtype=torch.float64)
    inputs = torch.zeros(1, 5, 2, dtype=torch.float64)
    states = torch.zeros(1, 5, 2, dtype=torch.float64)
    frame = torch.eye(2, dtype=torch.float64).unsqueeze(0)
    exps = lyapunov_exponents(lambda x, s: s @ w.T + x, inputs, states, frame, burn_in=0)
    assert exps.shape == (2,) and bool(torch.isnan(exps).all())


def test_finite_matrix_spectrum_is_unchanged() -> None:
    w = torch.tensor([[3.0, 0.0], [0.0, -1.0]])
    result = matrix_spectrum("W", w)
    assert result.is_finite and result.sigma_max == pytest.approx(3.0, rel=1e-12)
    assert result.spectral_radius == pytest.approx(3.0, rel=1e-12)
    nan_result = matrix_spectrum("W", torch.tensor([[1.0, math.inf]]))
    assert not nan_result.is_finite and math.isnan(nan_result.sigma_max) and nan_result.spectral_radius is None


def test_callers_anomaly_mode_does_not_turn_non_finite_into_an_error() -> None:
    model = _poisoned(nn.RNN, math.nan)
    with torch.autograd.set_detect_anomaly(True):
        report = gradhealth.audit(model, probes="standard", **FAST)
        assert torch.is_anomaly_enabled()
    assert report.verdict == "non_finite"
    assert not torch.is_anomaly_enabled()


def test_meta_device_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="meta tensors hold no values"):
        gradhealth.audit(nn.GRU(3, 4, batch_first=True), device="meta", **FAST)
    with pytest.raises(AdapterError, match="meta device.*to_empty"):
        gradhealth.audit(nn.GRU(3, 4, batch_first=True, device="meta"), **FAST)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_absent_cuda_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="invalid device 'cuda'.*not usable here.*use cpu"):
        gradhealth.audit(nn.GRU(3, 4, batch_first=True), device="cuda", **FAST)


def test_bfloat16_thorough_runs() -> None:
    torch.manual_seed(0)
    report = gradhealth.audit(nn.LSTM(3, 4, batch_first=True), dtype="bfloat16", probes="thorough", **FAST)
    assert report.config["dtype"] == "bfloat16"
    assert set(report.probes) == {"parameter_gradients", "spectrum", "lyapunov", "gates", "length_scan",
                                  "state_gradients"}  # fmt: skip
    # A default LSTM's tail decays: λ1 < 0 in any precision that resolves a few steps.
    assert report.probes["lyapunov"]["top_exponent"] < 0
