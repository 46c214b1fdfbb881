"""Gradient health as a property of the models, asserted like any other."""

from __future__ import annotations

import pytest
import torch

import gradhealth.testing as ght


def test_encoder_remembers(encoder: torch.nn.LSTM) -> None:
    ght.assert_memory_horizon(encoder, at_least=40)


@pytest.mark.gradhealth(seq_len=128, min_horizon=60, max_horizon=120)
def test_decoder(gradhealth: ght.Auditor, decoder: torch.nn.GRU) -> None:
    gradhealth.check(decoder)  # the marker's seq_len and horizon bounds apply


def test_vanilla_rnn_forgets_quickly(vanilla_rnn: torch.nn.RNN) -> None:
    report = ght.assert_memory_horizon(vanilla_rnn, at_most=20, seq_len=32)
    assert report.verdict == "vanishing"


def test_vanilla_rnn_is_stable(vanilla_rnn: torch.nn.RNN) -> None:
    ght.assert_no_exploding(vanilla_rnn, over=64)
    ght.assert_finite_gradients(vanilla_rnn, seq_len=16)


@pytest.mark.gradhealth(seq_len=48, fail_on="exploding,non_finite")
def test_unstable_recurrence_is_caught(gradhealth: ght.Auditor, unstable_recurrence: torch.nn.Module) -> None:
    report = gradhealth.audit(unstable_recurrence)
    assert report.verdict == "healthy"  # 1.05^48 = 10: grows, but not yet past 100
    with pytest.raises(AssertionError, match=r"\(first at lag 95\)"):
        gradhealth.check(unstable_recurrence, seq_len=128)


def test_saved_report(gradhealth: ght.Auditor, decoder: torch.nn.GRU) -> None:
    baseline = gradhealth.audit(decoder, seq_len=128, name="decoder@baseline")
    ght.assert_report(baseline, min_horizon=60, baseline=baseline, max_horizon_drop="10%")
