"""The gradhealth pytest plugin (entry point ``pytest11``). Imports nothing heavy at module level."""

from __future__ import annotations

import pytest

MARKER_HELP = (
    "gradhealth(**settings): gradient-health audit settings for this test (seq_len, min_horizon, ...); "
    "they override command-line options, environment variables and ini keys."
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
