"""Probes: each measures one property of gradient flow through time and returns plain data.

Built-in probes register through the ``gradhealth_register_probes`` hook like any plugin's; presets name sets
of them (:data:`gradhealth.config.PRESETS`).
"""

from __future__ import annotations

from gradhealth.probes.base import Probe, ProbeContext, input_gradients_only
from gradhealth.probes.gate_activity import GateActivity, GateActivityResult
from gradhealth.probes.lag_profile import LagProfile, LagProfileResult
from gradhealth.probes.length_scan import LengthScan, LengthScanResult
from gradhealth.probes.lyapunov import Lyapunov, LyapunovResult
from gradhealth.probes.parameter_gradients import ParameterGradients, ParameterGradientsResult
from gradhealth.probes.spectrum import Spectrum, SpectrumResult
from gradhealth.probes.state_gradients import StateGradients, StateGradientsResult

__all__ = [
    "GateActivity",
    "GateActivityResult",
    "LagProfile",
    "LagProfileResult",
    "LengthScan",
    "LengthScanResult",
    "Lyapunov",
    "LyapunovResult",
    "ParameterGradients",
    "ParameterGradientsResult",
    "Probe",
    "ProbeContext",
    "Spectrum",
    "SpectrumResult",
    "StateGradients",
    "StateGradientsResult",
    "input_gradients_only",
]
