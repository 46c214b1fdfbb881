"""Registers the built-in probes through the same hook as third-party plugins."""

from __future__ import annotations

from gradhealth.hookspecs import hookimpl
from gradhealth.probes.base import Probe
from gradhealth.probes.gate_activity import GateActivity
from gradhealth.probes.lag_profile import LagProfile
from gradhealth.probes.length_scan import LengthScan
from gradhealth.probes.lyapunov import Lyapunov
from gradhealth.probes.parameter_gradients import ParameterGradients
from gradhealth.probes.spectrum import Spectrum
from gradhealth.probes.state_gradients import StateGradients


@hookimpl
def gradhealth_register_probes() -> list[type[Probe]]:
    return [LagProfile, ParameterGradients, Spectrum, GateActivity, StateGradients, LengthScan, Lyapunov]
