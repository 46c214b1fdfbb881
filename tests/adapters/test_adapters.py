"""Adapters: selection, layouts, output selection, and the error messages users see."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth import reference
from gradhealth.adapters.recurrent import CellAdapter, RecurrentModuleAdapter, UnrolledAdapter
from gradhealth.adapters.sequence import SequenceAdapter, TokenAdapter
from gradhealth.errors import AdapterError, ConfigError, ModelCallError
from gradhealth.plugins import adapt


def quick(model: object, **kwargs: object) -> gradhealth.Report:
    kwargs.setdefault("seq_len", 10)
    kwargs.setdefault("batch_size", 2)
    return gradhealth.audit(model, probes="quick", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "adapter_type"),
    [
        (nn.LSTM(2, 3), RecurrentModuleAdapter),
        (nn.GRUCell(2, 3), CellAdapter),
        (gradhealth.Unrolled(lambda x, h: (x, h)), UnrolledAdapter),
        (nn.Sequential(nn.Embedding(5, 2), nn.GRU(2, 3, batch_first=True)), TokenAdapter),
        (nn.Linear(2, 3), SequenceAdapter),
        (lambda x: x, SequenceAdapter),
    ],
)
def test_adapter_selection(model: object, adapter_type: type) -> None:
    assert type(adapt(model)) is adapter_type


def test_token_input_false_treats_embedding_model_as_features() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Embedding(5, 2))
    assert type(adapt(model, gradhealth.Layout(token_input=False))) is SequenceAdapter


def test_not_callable_says_what_was_tried() -> None:
    with pytest.raises(AdapterError, match=r"no adapter can drive an object of type int; tried: torch\.nn\.RNN"):
        adapt(3)


def test_token_input_without_embedding_explains() -> None:
    with pytest.raises(AdapterError, match="contains no nn.Embedding"):
        adapt(nn.Linear(2, 2), gradhealth.Layout(token_input=True))


def test_embedding_name_must_exist_and_be_an_embedding() -> None:
    model = nn.Sequential(nn.Embedding(5, 2), nn.GRU(2, 3, batch_first=True))
    with pytest.raises(AdapterError, match="has no such submodule"):
        adapt(model, gradhealth.Layout(embedding="nope"))
    with pytest.raises(AdapterError, match="is a GRU, not an nn.Embedding"):
        adapt(model, gradhealth.Layout(embedding="1"))


def test_last_step_only_output_is_probed_as_sequence_to_one() -> None:
    class LastStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(2, 3, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0][:, -1]

    torch.manual_seed(0)
    model = LastStep()
    report = quick(model)
    assert report.model["output"] == "sequence-to-one"
    # the same numbers as the full-sequence model with the loss at its last step
    full = quick(model.rnn)
    assert report.profile.g == full.profile.g


def test_time_major_output_suggests_batch_first_false() -> None:
    with pytest.raises(AdapterError, match=r"looks time-major; pass layout=gradhealth.Layout\(batch_first=False\)"):
        quick(lambda x: x.transpose(0, 1), input_size=2, batch_size=3)


def test_declared_time_major_layout_works_for_callables() -> None:
    rnn = nn.RNN(2, 3)  # time-major module driven through a plain callable
    report = quick(lambda x: rnn(x)[0], input_size=2, layout=gradhealth.Layout(batch_first=False))
    assert report.profile.g[0] == 1.0


@pytest.mark.parametrize("module_batch_first", [True, False])
def test_layout_batch_first_contradicting_the_module_is_refused(module_batch_first: bool) -> None:
    """An nn.RNN/LSTM/GRU reads its input in its own layout: fed the other one, its recurrence runs over the batch
    axis (it reported g = [1, 0, 0, ...], finite memory, horizon 1, without an error)."""
    gru = nn.GRU(2, 3, batch_first=module_batch_first)
    with pytest.raises(AdapterError, match=rf"layout.batch_first={not module_batch_first} contradicts GRU"):
        quick(gru, layout=gradhealth.Layout(batch_first=not module_batch_first))
    agreeing = quick(gru, layout=gradhealth.Layout(batch_first=module_batch_first))
    assert agreeing.profile.g == quick(gru).profile.g


def test_output_selectors_index_key_attribute_callable() -> None:
    lin = reference.LinearRecurrence(2, 0.5)

    @dataclasses.dataclass
    class Out:
        aux: torch.Tensor
        seq: torch.Tensor

    expected = quick(lin).profile.g
    for fn, selector in [
        (lambda x: ("ignored", lin(x)), 1),
        (lambda x: {"state": x[:, -1], "seq": lin(x)}, "seq"),
        (lambda x: Out(x[:, -1], lin(x)), "seq"),
        (lambda x: [lin(x)], lambda value: value[0]),
        (lambda x: {"h": x[:, 0], "output": lin(x)}, None),  # automatic: known key
        (lambda x: (x[:, 0], lin(x)), None),  # automatic: first 3-D tensor
    ]:
        report = quick(fn, input_size=2, layout=gradhealth.Layout(output=selector))
        assert report.profile.g == pytest.approx(expected, rel=1e-12)


def test_output_selector_errors_show_what_the_model_returned() -> None:
    with pytest.raises(AdapterError, match=r"returned \{'a': Tensor\(4,\)\}, which holds no 3-D"):
        quick(lambda x: {"a": x[0, 0]}, input_size=4, seq_len=2, burn_in=0)
    with pytest.raises(AdapterError, match=r"output selector 'missing' does not fit"):
        quick(lambda x: {"a": x}, input_size=2, layout=gradhealth.Layout(output="missing"))


def test_input_arg_keyword_and_forward_kwargs() -> None:
    lin = reference.LinearRecurrence(2, 0.5)

    def model(mask: object = None, *, inputs: torch.Tensor, scale: float) -> torch.Tensor:
        return lin(inputs) * scale

    layout = gradhealth.Layout(input_arg="inputs", forward_kwargs={"scale": 3.0})
    report = quick(model, input_size=2, layout=layout)
    assert report.profile.g == pytest.approx(quick(lin).profile.g, rel=1e-12)


def test_model_error_is_one_line_with_input_shape_and_hint() -> None:
    weight = torch.ones(3, 2, dtype=torch.float64)
    with pytest.raises(ModelCallError) as info:
        quick(lambda x: x @ weight, input_size=4, seq_len=3, dtype="float64")
    message = str(info.value)
    assert "\n" not in message
    # three steps first, then the probe length (burn-in 3 + K 3 + 1), whose failure is reported
    assert message.startswith("calling function on input of shape [2, 7, 4] (float64) failed: RuntimeError: ")
    assert "check input_size" in message


def test_input_size_mismatch_and_missing() -> None:
    # the user's value wins over the model's own (issue 12): a wrong one fails with the model's error
    with pytest.raises(
        ModelCallError, match=r"Expected 4, got 5; the model.s input size reads 4 \(from LSTM.input_size\)"
    ):
        quick(nn.LSTM(4, 3), input_size=5)
    with pytest.raises(ConfigError, match=r"cannot infer the input size of function; pass input_size="):
        quick(lambda x: x)


class _CapturedFloat32(nn.Module):
    """A float64 model (so auto probes it in float64) that multiplies by a captured float32 tensor: it cannot
    run in float64, only in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))
        self.weight = torch.randn(3, 3) * 0.3  # not a buffer: not cast with the module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x @ self.weight, dim=1) * self.scale.to(x.dtype)


def test_float64_failure_falls_back_to_float32_with_a_finding() -> None:
    report = quick(_CapturedFloat32(), input_size=3)
    assert report.config["dtype"] == "float32"
    assert report.model["probe_dtype_reason"].startswith("auto: the model failed in float64 (")
    assert any(f.code == "GH901" for f in report.findings)


def test_explicit_dtype_failure_is_not_silently_changed() -> None:
    weight = torch.randn(3, 3)
    with pytest.raises(ModelCallError, match="float64"):
        quick(lambda x: x @ weight, input_size=3, dtype="float64")


def test_token_model_gradient_at_embedding_output() -> None:
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(7, 2)
            self.lin = reference.LinearRecurrence(2, 0.8)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.lin(self.embed(ids))

    report = quick(Tokens(), seq_len=30, dtype="float64")
    assert report.model["adapter"] == "token-ids" and report.model["vocab_size"] == 7
    assert report.metrics.decay_rate == pytest.approx(math.log(0.8), rel=1e-9)
    assert report.metrics.horizon == 21  # 0.8^20 = 0.0115 >= 1e-2 > 0.8^21


def test_time_major_token_model() -> None:
    class TimeMajorTokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(7, 2)
            self.rnn = nn.RNN(2, 3)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.rnn(self.embed(ids))[0]

    report = quick(TimeMajorTokens(), layout=gradhealth.Layout(batch_first=False))
    assert report.profile.g[0] == 1.0 and report.metrics.decay_rate < 0


def test_other_tasks_refuse_token_models_clearly() -> None:
    model = nn.Sequential(nn.Embedding(5, 2), nn.GRU(2, 3, batch_first=True))
    with pytest.raises(ConfigError, match="cannot feed a token-id model; use task='noise'"):
        quick(model, task="copy")


def test_declared_bidirectional_layout_splits_halves() -> None:
    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(2, 3, bidirectional=True, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[0]

    model = Wrapped()
    direct = quick(model.lstm)
    wrapped = quick(model, layout=gradhealth.Layout(bidirectional=True))
    assert [d.name for d in wrapped.directions] == ["forward", "backward"]
    for a, b in zip(direct.directions, wrapped.directions, strict=True):
        assert a.profile.g == pytest.approx(b.profile.g, rel=1e-12)


def test_unrolled_callable_init_state_and_tensor_state() -> None:
    w = 0.5 * torch.eye(2, dtype=torch.float64)

    def step(x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = h @ w.to(x) + x
        return h, h

    zeros = gradhealth.Unrolled(step, init_state=lambda b, dtype, device: torch.zeros(b, 2, dtype=dtype), input_size=2)
    tensor = gradhealth.Unrolled(step, init_state=torch.zeros(1, 2), input_size=2)
    for model in (zeros, tensor):
        report = quick(model, seq_len=20)
        assert report.metrics.decay_rate == pytest.approx(math.log(0.5), rel=1e-9)


def test_unrolled_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="needs a callable step"):
        gradhealth.Unrolled(3)  # type: ignore[arg-type]


def test_layout_reset_must_exist() -> None:
    with pytest.raises(AdapterError, match="layout.reset names 'clear'"):
        quick(reference.LinearRecurrence(2), layout=gradhealth.Layout(reset="clear"))
