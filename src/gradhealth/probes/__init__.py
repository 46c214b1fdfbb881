"""Probes: each measures one property of gradient flow through time and returns plain data.

Built-in probes register through the ``gradhealth_register_probes`` hook like any plugin's; presets name sets
of them (:data:`gradhealth.config.PRESETS`).
"""

from __future__ import annotations

from gradhealth.probes.base import Probe, ProbeContext, input_gradients_only
from gradhealth.probes.lag_profile import LagProfile, LagProfileResult

__all__ = ["LagProfile", "LagProfileResult", "Probe", "ProbeContext", "input_gradients_only"]
