"""Issue 12: recurrent models as people write them, audited through the API with no declaration or one.

Each profile is compared with an independent autograd reference written here: the probe's own inputs and seed
vector (drawn from the same named streams), the loss at one output step by hand, one ``torch.autograd.grad``,
plain ``torch.linalg.vector_norm`` per lag, g(k) = G(k) / G(0) in float64 to 1e-10.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth.config import AuditConfig
from gradhealth.errors import AdapterError, ModelCallError
from gradhealth.plugins import adapt, get_task
from gradhealth.probes.base import ProbeContext

from . import patterns as p

K = 10
SETTINGS: dict[str, Any] = {"seq_len": K, "batch_size": 3, "dtype": "float64"}


def probe_inputs(input_size: int, model: nn.Module | None = None) -> tuple[torch.Tensor, ProbeContext]:
    """The lag-profile batch the probe draws (same seed, stream and settings; token ids for a token model),
    and a context for its seeds."""
    config = AuditConfig(**{k: v for k, v in SETTINGS.items() if k != "dtype"})
    adapter = adapt(model if model is not None else nn.Identity())
    ctx = ProbeContext(adapter, config, get_task(config.task), torch.float64, torch.device("cpu"), input_size)
    return ctx.make_batch("lag_profile").inputs, ctx


def reference_g(
    loss_output: Callable[[torch.Tensor], torch.Tensor],
    input_size: int,
    embed: nn.Embedding | None = None,
    token_model: nn.Module | None = None,
) -> list[float]:
    """g(k) from autograd: ``loss_output(x)`` is the model's output at the loss step, ``[B, O]``; for a token
    model, ``x`` is the embedding's output on the probe's token ids."""
    inputs, ctx = probe_inputs(input_size, token_model)
    x = (embed(inputs) if embed is not None else inputs).detach().clone().requires_grad_(True)
    y = loss_output(x)
    stream = "lag_profile/forward"
    if y.is_complex():
        v = torch.complex(
            ctx.randn(stream, tuple(y.shape), like=y.real), ctx.randn(stream + "/imag", tuple(y.shape), like=y.real)
        )
        loss = (y * v.conj()).real.sum()
    else:
        loss = (y * ctx.randn(stream, tuple(y.shape), like=y)).sum()
    (grad,) = torch.autograd.grad(loss, x)
    last = x.shape[1] - 1
    per_lag = torch.stack([torch.linalg.vector_norm(grad[:, last - k].flatten(1), dim=1) for k in range(K + 1)], 1)
    big_g = per_lag.pow(2).mean(0).sqrt()
    return (big_g / big_g[0]).tolist()


def audit(model: Any, layout: gradhealth.Layout | None = None, **extra: Any) -> gradhealth.Report:
    return gradhealth.audit(model, probes="quick", layout=layout, **{**SETTINGS, **extra})


def fresh(model: nn.Module) -> nn.Module:
    """The reference runs on its own float64 eval copy (the audit never touches the user's model)."""
    return copy.deepcopy(model).double().eval()


def test_sequence_to_one_classifier_needs_no_declaration() -> None:
    torch.manual_seed(0)
    model = p.LastStepClassifier()
    report = audit(model)
    assert report.model["output"] == "sequence-to-one"
    assert "output: sequence-to-one" in str(report)
    ref = fresh(model)
    assert report.profile.g == pytest.approx(reference_g(ref, 3), rel=1e-10)


def test_encoder_returning_its_final_state_needs_no_declaration() -> None:
    torch.manual_seed(1)
    model = p.FinalStateEncoder()
    report = audit(model)
    assert report.model["output"] == "sequence-to-one"
    assert report.profile.g == pytest.approx(reference_g(fresh(model), 3), rel=1e-10)


def test_char_rnn_on_token_ids_returning_the_last_logits() -> None:
    class CharRNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(11, 4)
            self.rnn = nn.LSTM(4, 6, batch_first=True)
            self.head = nn.Linear(6, 11)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(self.embed(ids))[0][:, -1])

    torch.manual_seed(2)
    model = CharRNN()
    report = audit(model)
    assert report.model["output"] == "sequence-to-one"
    assert report.model["adapter"] == "token-ids"
    # the gradient is taken at the embedding output
    ref = fresh(model)
    g = reference_g(lambda e: ref.head(ref.rnn(e)[0][:, -1]), 4, embed=ref.embed, token_model=model)
    assert report.profile.g == pytest.approx(g, rel=1e-10)


@pytest.mark.parametrize("step", [0, 2, -1])
def test_forecaster_with_a_horizon_axis_puts_the_loss_at_the_chosen_forecast_step(step: int) -> None:
    torch.manual_seed(3)
    model = p.HorizonForecaster(horizon=5)
    report = audit(model, gradhealth.Layout(forecast_step=step))
    assert report.model["output"] == f"forecast step {step % 5} of 5"
    ref = fresh(model)
    assert report.profile.g == pytest.approx(reference_g(lambda x: ref(x)[:, step], 1), rel=1e-10)


def test_forecaster_without_a_forecast_step_is_told_how_to_declare_it() -> None:
    with pytest.raises(AdapterError, match=r"forecast horizon\?\); pass layout=gradhealth.Layout\(forecast_step="):
        audit(p.HorizonForecaster(horizon=5))
    with pytest.raises(AdapterError, match="outside the forecast horizon of 5 steps"):
        audit(p.HorizonForecaster(horizon=5), gradhealth.Layout(forecast_step=5))


def test_dict_input_forecaster_through_layout_call() -> None:
    torch.manual_seed(4)
    model = p.DictForecaster()

    def windows(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"insample_y": x, "insample_mask": torch.ones_like(x)}

    layout = gradhealth.Layout(call=lambda x: ((windows(x),), {}), output="forecast", forecast_step=1)
    report = audit(model, layout, input_size=1)
    assert report.model["output"] == "forecast step 1 of 4"
    ref = fresh(model)
    assert report.profile.g == pytest.approx(reference_g(lambda x: ref(windows(x))["forecast"][:, 1], 1), rel=1e-10)


def test_packed_sequence_model_needing_lengths() -> None:
    torch.manual_seed(5)
    model = p.PackedGRU()

    def lengths(x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), x.shape[1], dtype=torch.long)

    report = audit(model, gradhealth.Layout(call=lambda x: ((x, lengths(x)), {})))
    assert report.model["output"] == "sequence-to-one"
    assert report.model["input_size_source"] == "inner layer 'rnn' (GRU).input_size"
    ref = fresh(model)
    assert report.profile.g == pytest.approx(reference_g(lambda x: ref(x, lengths(x)), 3), rel=1e-10)


def test_dataclass_and_several_tensor_inputs_through_layout_call() -> None:
    torch.manual_seed(6)
    rnn = nn.GRU(3, 4, batch_first=True)

    class TwoTensors(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = rnn

        def forward(self, batch: p.Batch, offset: torch.Tensor, *, gain: float) -> torch.Tensor:
            return self.rnn(batch.values * batch.scale + offset)[0] * gain

    layout = gradhealth.Layout(
        call=lambda x: ((p.Batch(x, 0.5), torch.zeros_like(x)), {}), forward_kwargs={"gain": 2.0}
    )
    report = audit(TwoTensors(), layout)
    ref = fresh(rnn)
    assert report.profile.g == pytest.approx(reference_g(lambda x: ref(x * 0.5)[0][:, -1] * 2.0, 3), rel=1e-10)


def test_complex_diagonal_recurrence_keeps_its_complex_dtype_and_decays_as_its_radius() -> None:
    radius = 0.9
    model = p.ComplexDiagonal(modes=4, radius=radius)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Casting complex values to real discards the imaginary part"
        report = gradhealth.audit(model, probes=("lag_profile", "parameter_gradients"), **SETTINGS)
    analytic = p.radius_profile(radius, K)
    assert report.profile.g == pytest.approx(analytic, rel=1e-10)
    assert report.profile.g == pytest.approx(reference_g(lambda x: model(x)[:, -1], 8), rel=1e-10)
    stats = {s["name"]: s for s in report.probes["parameter_gradients"]["parameters"]}
    assert stats["lam"]["grad_norm"] > 0
    assert stats["lam"]["param_norm"] == pytest.approx(radius * 2.0, rel=1e-6)  # 4 modes of modulus 0.9


@pytest.mark.parametrize(
    ("probe_dtype", "expected"),
    [(torch.float64, torch.complex128), (torch.float32, torch.complex64)],
)
def test_complex_parameters_take_the_complex_dtype_of_the_probe_precision(
    probe_dtype: torch.dtype, expected: torch.dtype
) -> None:
    model = p.ComplexDiagonal()
    model.lam.data = model.lam.data.to(torch.complex64)
    copy_ = adapt(model).materialize(probe_dtype, torch.device("cpu"))
    assert copy_.model.lam.dtype == expected
    assert torch.equal(copy_.model.lam.detach().to(torch.complex64), model.lam.detach())  # imaginary part kept


def _streaming_reference(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def last(x: torch.Tensor) -> torch.Tensor:
        model.reset_states()
        for t in range(x.shape[1]):
            y = model(x[:, t], 16000)
        model.reset_states()
        return y

    return last


@pytest.mark.parametrize("scripted", [False, True], ids=["module", "torchscript"])
def test_streaming_module_one_call_per_step(scripted: bool) -> None:
    torch.manual_seed(7)
    eager = p.StreamingCell()
    model = torch.jit.script(eager) if scripted else eager
    layout = gradhealth.Layout(step_per_call=True, forward_kwargs={"sr": 16000})
    report = audit(model, layout, input_size=3)
    assert model.state.numel() == 0  # the user's model never ran
    assert report.model["architecture"] == "recurrent"
    ref = fresh(eager)
    assert report.profile.g == pytest.approx(reference_g(_streaming_reference(ref), 3), rel=1e-10)
    assert report.verdict in ("vanishing", "healthy")


def test_streaming_module_without_a_reset_is_refused_in_one_line() -> None:
    class NoReset(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(AdapterError, match=r"carries its state between calls.*reset=\.\.\."):
        audit(NoReset(), gradhealth.Layout(step_per_call=True), input_size=2)


def test_zero_initialised_norm_scale_in_the_standard_preset() -> None:
    torch.manual_seed(8)
    model = p.ZeroScaleNorm()
    report = gradhealth.audit(model, probes="standard", **SETTINGS)
    statuses = {g["group"]: g["status"] for g in report.probes["parameter_gradients"]["groups"]}
    assert statuses["norm"] == "zero_weight"
    assert not any(f.code == "GH102" for f in report.findings)
    ref = fresh(model)
    assert report.profile.g == pytest.approx(reference_g(lambda x: ref(x)[:, -1], 3), rel=1e-10)


@pytest.mark.parametrize("cls", [p.TimeMajorSRU, p.TimeMajorCfC], ids=["detected", "own_attribute"])
def test_time_major_model_is_read_along_its_time_axis(cls: type[nn.Module]) -> None:
    torch.manual_seed(9)
    model = cls()
    report = audit(model)
    assert report.model["batch_first"] is False
    expected = "detected from a short probe call" if cls is p.TimeMajorSRU else "TimeMajorCfC.batch_first"
    assert report.model["batch_first_source"] == expected
    ref = fresh(model)
    assert report.profile.g == pytest.approx(reference_g(lambda x: ref(x.transpose(0, 1))[-1], 3), rel=1e-10)
    # the same model declared batch-first is probed along the batch axis: no memory at all
    wrong = audit(model, gradhealth.Layout(batch_first=True))
    assert wrong.profile.g[1:] == [0.0] * K


def test_a_model_mixing_both_axes_is_refused() -> None:
    def mixer(x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(torch.cumsum(x, dim=0), dim=1)

    with pytest.raises(AdapterError, match=r"cannot tell the time axis of function"):
        audit(mixer, input_size=2)
    report = audit(mixer, gradhealth.Layout(batch_first=True), input_size=2)
    assert report.profile.g[0] == 1.0


def test_input_size_from_an_inner_layer_is_named_and_the_users_value_wins() -> None:
    class Frontend(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(8, 5, batch_first=True)  # registered first, takes 8 features
            self.proj = nn.Linear(1, 8)  # the model's own input: 1 feature

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(self.proj(x))[0]

    torch.manual_seed(10)
    model = Frontend()
    with pytest.raises(ModelCallError, match=r"input size reads 8 \(from inner layer 'lstm' \(LSTM\).input_size\)"):
        audit(model)
    report = audit(model, input_size=1)
    assert report.config["input_size"] == 1
    model.n_features = 1  # the model's own interface is read before any inner layer
    told = audit(model)
    assert told.model["input_size_source"] == "Frontend.n_features"
    assert told.profile.g == report.profile.g
    ref = fresh(model)
    assert report.profile.g == pytest.approx(reference_g(lambda x: ref(x)[:, -1], 1), rel=1e-10)


def test_smoke_test_honours_a_minimum_length() -> None:
    rnn = nn.GRU(2, 3, batch_first=True).double()  # a closure is run as it is: it must be float64 already

    def needs_eight_steps(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < 8:
            raise ValueError("need at least 8 steps")
        return rnn(x)[0]

    report = audit(needs_eight_steps, input_size=2)
    assert report.profile.g == pytest.approx(audit(rnn).profile.g, rel=1e-12)


class TrainModeStep(nn.Module):
    """A step module with dropout, left in train mode by its user, and a counter of resets."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(2, 2)
        self.drop = nn.Dropout(0.5)
        self.resets = 0

    def reset_state(self) -> None:
        self.resets += 1

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.drop(self.w(h)) + x)
        return h, h


def test_unrolled_bound_method_is_copied_cast_and_put_in_eval_mode_with_its_reset() -> None:
    torch.manual_seed(11)
    owner = TrainModeStep().train()
    model = gradhealth.Unrolled(
        owner.step, init_state=lambda b, dtype, device: torch.zeros(b, 2, dtype=dtype, device=device), input_size=2
    )
    first = audit(model)
    torch.manual_seed(123)  # the global RNG must not matter (dropout off in eval mode)
    second = audit(model)
    assert first.profile.g == second.profile.g
    assert owner.training and owner.resets == 0 and owner.w.weight.dtype == torch.float32  # user's model untouched
    ref = fresh(owner)

    def last(x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], 2, dtype=x.dtype)
        for t in range(x.shape[1]):
            y, h = ref.step(x[:, t], h)
        return y

    assert first.profile.g == pytest.approx(reference_g(last, 2), rel=1e-10)
    calls: list[str] = []
    audit(model, gradhealth.Layout(reset=lambda m: calls.append(type(m).__name__)))
    assert calls and set(calls) == {"TrainModeStep"}  # Layout(reset=...) is honoured with Unrolled


def test_a_module_holding_graph_carrying_state_is_copied_with_the_state_detached() -> None:
    class KeepsState(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(2, 3, batch_first=True)
            self.last: torch.Tensor | None = None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.rnn(x)[0]
            self.last = out[:, -1]  # kept with its graph after a training step
            return out

    torch.manual_seed(12)
    model = KeepsState()
    model(torch.randn(2, 4, 2)).sum().backward()
    assert model.last is not None and model.last.grad_fn is not None
    report = audit(model)
    assert model.last.grad_fn is not None  # the user's attribute is left as it was
    assert report.profile.g == pytest.approx(audit(model.rnn).profile.g, rel=1e-12)


def test_forward_accepting_use_cache_gets_false() -> None:
    rnn = nn.GRU(2, 3, batch_first=True)
    seen: list[bool] = []

    class Cached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = rnn

        def forward(self, x: torch.Tensor, use_cache: bool = True) -> torch.Tensor:
            seen.append(use_cache)
            return self.rnn(x)[0]

    audit(Cached())
    assert seen and not any(seen)


def test_an_opaque_closure_over_a_train_mode_model_still_repeats_bit_for_bit() -> None:
    torch.manual_seed(13)
    inner = nn.Sequential(nn.Dropout(0.3), nn.GRU(2, 4, batch_first=True)).double().train()

    def closure(x: torch.Tensor) -> torch.Tensor:
        return inner(x)[0]

    torch.manual_seed(1)
    first = audit(closure, input_size=2)
    torch.manual_seed(2)
    second = audit(closure, input_size=2)
    assert first.profile.g == second.profile.g
    assert inner.training  # run as it is, and left as it was


def test_a_model_that_cannot_be_copied_is_refused_in_one_line() -> None:
    import threading

    class HoldsALock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(2, 3, batch_first=True)
            self.lock = threading.Lock()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]

    with pytest.raises(AdapterError, match=r"^cannot make a probe copy of HoldsALock: TypeError: .*lock") as info:
        audit(HoldsALock())
    assert "\n" not in str(info.value)


def test_time_major_model_returning_its_final_state_is_detected() -> None:
    class FinalTimeMajor(p.TimeMajorSRU):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x)[-1]  # [B, hidden]

    torch.manual_seed(14)
    model = FinalTimeMajor()
    report = audit(model)
    assert report.model["batch_first"] is False
    assert report.model["output"] == "sequence-to-one"
    ref = fresh(model)
    assert report.profile.g == pytest.approx(reference_g(lambda x: ref(x.transpose(0, 1)), 3), rel=1e-10)
