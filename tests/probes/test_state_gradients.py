"""State-gradient profiles against closed forms that hold for any input."""

from __future__ import annotations

import math

import pytest
import torch

import gradhealth
from gradhealth.probes.state_gradients import StateGradients
from gradhealth.reference import constant_forget_lstm, constant_update_gru, random_orthogonal

from .conftest import linear_unrolled, probe_context


def _sigmoid(bias: torch.Tensor) -> float:
    return float(torch.sigmoid(bias.detach().double()))


def test_constant_update_gru_gives_z_to_the_k_for_any_input() -> None:
    gru = constant_update_gru(5, 0.9)
    z = _sigmoid(gru.bias_ih_l0[5])
    result = StateGradients().run(probe_context(gru, seq_len=30, input_scale=1.0))
    (profile,) = result.profiles
    assert (profile.layer, profile.state, profile.direction) == ("GRU.l0", "h", "forward")
    assert profile.ratio == pytest.approx([z**k for k in range(31)], rel=1e-10)
    assert profile.decay_rate_tail == pytest.approx(math.log(z), rel=1e-9)


def test_constant_forget_lstm_cell_state_gives_f_to_the_k() -> None:
    lstm = constant_forget_lstm(4, 0.8)
    f = _sigmoid(lstm.bias_ih_l0[4])
    result = StateGradients().run(probe_context(lstm, seq_len=20, input_scale=1.0))
    by_state = {p.state: p for p in result.profiles}
    assert sorted(by_state) == ["c", "h"]
    assert by_state["c"].ratio == pytest.approx([f**k for k in range(21)], rel=1e-10)


def test_linear_step_function_gives_rho_to_the_k() -> None:
    model = linear_unrolled(0.7 * random_orthogonal(4, seed=1))
    (profile,) = StateGradients().run(probe_context(model, seq_len=25)).profiles
    assert profile.layer == "step"
    assert profile.ratio == pytest.approx([0.7**k for k in range(26)], rel=1e-10)


def test_bidirectional_stacked_module_profiles_every_layer_and_direction() -> None:
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    result = StateGradients().run(probe_context(gru, seq_len=8))
    assert [(p.layer, p.direction) for p in result.profiles] == [
        ("GRU.l0", "forward"), ("GRU.l1", "forward"), ("GRU.l0_reverse", "backward"), ("GRU.l1_reverse", "backward"),
    ]  # fmt: skip
    top = result.profiles[1]
    assert top.ratio[0] == 1.0
    assert len(top.ratio) == 9


def test_growing_state_gradient_raises_gh403() -> None:
    report = gradhealth.audit(linear_unrolled(1.3 * torch.eye(2, dtype=torch.float64)), seq_len=20, batch_size=2,
                              probes=["state_gradients"])  # fmt: skip
    assert "GH403" in [f.code for f in report.findings]


def test_plain_sequence_modules_are_skipped() -> None:
    report = gradhealth.audit(gradhealth.reference.DelayLine(3, 2), seq_len=4, batch_size=2, probes=["state_gradients"])
    assert "step" in report.skipped_probes["state_gradients"]


@pytest.mark.parametrize("stepped", ["module", "unrolled"])
def test_float16_profile_is_not_cut_by_an_absolute_floor(stepped: str) -> None:
    """float16's floor tiny/eps is 1/16 of a unit gradient: the loss is scaled (by a power of two, exact) so the
    state gradients sit far above it, as the lag profile's recipe does. Before: horizon 37 for 0.9^k (true 44)."""
    model = constant_update_gru(8, 0.9) if stepped == "module" else linear_unrolled(0.9 * random_orthogonal(8))
    result = StateGradients().run(probe_context(model, dtype=torch.float16, seq_len=50, batch_size=3,
                                                input_scale=1e-4 if stepped == "module" else 1.0))  # fmt: skip
    (profile,) = result.profiles
    # float16 rounds z = 0.9 (or W = 0.9Q) by at most its unit roundoff 2^-11: 0.9^k moves by under 3% at k = 50
    assert profile.ratio == pytest.approx([0.9**k for k in range(51)], rel=0.03)
    assert profile.horizon == 44 and profile.horizon_reached
