"""Contract: the engine drives every built-in adapter family and leaves no trace on the model or the process."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth import plugins
from gradhealth.hookspecs import hookimpl
from gradhealth.probes.base import Probe, ProbeContext


def snapshot(model: Any) -> dict[str, Any]:
    module = model if isinstance(model, nn.Module) else getattr(model, "step", None)
    if not isinstance(module, nn.Module):
        return {}
    return {
        "params": {n: (p.detach().clone(), p.dtype, p.requires_grad) for n, p in module.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()},
        "training": [m.training for m in module.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in module.modules()],
        "state": {k: v for k, v in vars(module).items() if isinstance(v, torch.Tensor) or v is None},
    }


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    if not before:
        return
    for name, (value, dtype, flag) in before["params"].items():
        new_value, new_dtype, new_flag = after["params"][name]
        assert torch.equal(value, new_value) and dtype == new_dtype and flag == new_flag, name
    for name, grad in before["grads"].items():
        new = after["grads"][name]
        assert (grad is None and new is None) or torch.equal(grad, new), name
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert before["state"].keys() == after["state"].keys()


def prime(model: Any) -> None:
    """Give the model non-default state the audit must preserve: train mode, a stored .grad, a frozen param."""
    module = model if isinstance(model, nn.Module) else None
    if module is None:
        return
    module.train()
    params = list(module.parameters())
    params[0].grad = torch.full_like(params[0], 0.25)
    params[-1].requires_grad_(False)


def test_every_adapter_family_is_audited_without_trace(table_model: tuple[str, Any, dict[str, Any]]) -> None:
    name, model, kwargs = table_model
    prime(model)
    before = snapshot(model)
    rng = torch.get_rng_state()
    grad_mode = torch.is_grad_enabled()
    with torch.no_grad():  # the user's grad mode must come back as it was
        report = gradhealth.audit(model, seq_len=12, batch_size=3, probes="quick", **kwargs)
    assert torch.is_grad_enabled() == grad_mode
    assert torch.equal(torch.get_rng_state(), rng), name
    assert_unchanged(before, snapshot(model))
    assert report.verdict in {"healthy", "vanishing", "exploding"}, name
    assert len(report.profile.g) == 13 and report.profile.g[0] == 1.0
    assert all(math.isfinite(v) for v in report.profile.grad_norm)
    assert report.model["parameters"] >= 0
    # auto follows the model and keeps float32 only when it resolved every lag
    dtype, reason = report.config["dtype"], report.model["probe_dtype_reason"]
    own = (
        next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        if isinstance(model, nn.Module)
        else None
    )
    if own == torch.float64:
        assert (dtype, reason) == ("float64", "auto: the model's own dtype"), name
    elif dtype == "float32":
        assert all(report.profile.resolved) and reason.startswith("auto: the model"), (name, reason)
    else:
        assert dtype == "float64" and "measured again in float64" in reason, (name, reason)


def test_bidirectional_table_models_get_two_directions(table_model: tuple[str, Any, dict[str, Any]]) -> None:
    name, model, kwargs = table_model
    report = gradhealth.audit(model, seq_len=8, batch_size=2, probes="quick", **kwargs)
    expected = 2 if getattr(model, "bidirectional", False) else 1
    assert len(report.directions) == expected


class _Exploding(Probe):
    name = "explodes_on_purpose"

    def run(self, ctx: ProbeContext) -> Any:
        module = ctx.module
        assert module is not None
        module.train()  # on the copy; must not leak
        ctx.adapter.run(ctx.make_batch("x").inputs)
        raise RuntimeError("probe failed on purpose")


class _Plugin:
    @staticmethod
    @hookimpl
    def gradhealth_register_probes() -> list[type[Probe]]:
        return [_Exploding]


@pytest.fixture
def failing_probe() -> Any:
    plugins.reset_plugin_manager()
    assert plugins.register(_Plugin, name="failing-probe")
    yield
    plugins.reset_plugin_manager()


@pytest.mark.usefixtures("failing_probe")
def test_state_restored_when_a_probe_fails() -> None:
    model = nn.LSTM(3, 4)
    prime(model)
    before = snapshot(model)
    rng = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="on purpose"):
        gradhealth.audit(model, seq_len=6, batch_size=2, probes=["explodes_on_purpose"])
    assert torch.equal(torch.get_rng_state(), rng)
    assert_unchanged(before, snapshot(model))


def test_stateful_model_is_reset_before_and_after_each_run() -> None:
    from tests.conftest import StatefulModel  # type: ignore[import-not-found]

    calls: list[str] = []

    class Counting(StatefulModel):
        def reset_state(self) -> None:
            calls.append("reset")
            super().reset_state()

    model = Counting()
    model.state = torch.ones(2, 3)  # the user's streaming state
    first = gradhealth.audit(model, seq_len=10, batch_size=2, probes="quick")
    assert torch.equal(model.state, torch.ones(2, 3))  # probed on a copy: the user's state is untouched
    assert calls and calls.count("reset") % 2 == 0  # before and after every call of the copy
    second = gradhealth.audit(model, seq_len=10, batch_size=2, probes="quick")
    assert first.profile.g == second.profile.g  # no state carried over between audits


def test_same_arguments_give_bitwise_identical_reports() -> None:
    model = nn.GRU(3, 6, num_layers=2, batch_first=True)
    a = gradhealth.audit(model, seq_len=20, batch_size=4, probes="quick")
    b = gradhealth.audit(model, seq_len=20, batch_size=4, probes="quick")
    assert a.to_json() == b.to_json()
    c = gradhealth.audit(model, seq_len=20, batch_size=4, probes="quick", seed=1)
    assert c.profile.grad_norm != a.profile.grad_norm


def test_user_model_dtype_and_device_untouched_by_float64_probe() -> None:
    model = nn.LSTM(3, 4)
    report = gradhealth.audit(model, seq_len=5, batch_size=2, probes="quick", dtype="float64")
    assert report.config["dtype"] == "float64"
    assert all(p.dtype == torch.float32 for p in model.parameters())
