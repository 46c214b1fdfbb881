"""Start-up cost: the package root and the data-only modules import neither torch nor numpy."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "statement",
    [
        "import gradhealth",
        "import gradhealth.report, gradhealth.gates, gradhealth.errors, gradhealth.config, gradhealth.settings",
        "import gradhealth; gradhealth.Report; gradhealth.ConfigError",
        "import gradhealth.render.text",
        "import gradhealth.pytest_plugin, gradhealth.formatting",
    ],
)
def test_no_torch_or_numpy_on_import(statement: str) -> None:
    code = f"{statement}; import sys; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_resolves_lazily() -> None:
    code = "import gradhealth, sys; gradhealth.audit; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_unknown_attribute_is_an_attribute_error() -> None:
    import gradhealth

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        gradhealth.nope  # noqa: B018
    assert "audit" in dir(gradhealth)
