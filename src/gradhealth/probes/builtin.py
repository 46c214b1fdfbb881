"""Registers the built-in probes through the same hook as third-party plugins."""

from __future__ import annotations

from gradhealth.hookspecs import hookimpl
from gradhealth.probes.base import Probe
from gradhealth.probes.lag_profile import LagProfile


@hookimpl
def gradhealth_register_probes() -> list[type[Probe]]:
    return [LagProfile]
