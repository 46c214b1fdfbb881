"""The ``gradhealth`` command line."""

from __future__ import annotations


def main() -> None:
    """Console-script entry point."""
    raise SystemExit("gradhealth CLI: not yet available")
