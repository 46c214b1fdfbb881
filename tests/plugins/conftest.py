"""Fixtures for the plugin tests: a fresh plugin manager per test, and throwaway plugins.

Every test starts from the environment's plugins with no GRADHEALTH_*_PLUGINS variables, and leaves the
process-wide manager as it found it (rebuilt lazily on next use), so the rest of the suite is unaffected.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from gradhealth import plugins

REQUIRE_ENV = "GRADHEALTH_REQUIRE_EXAMPLE_PLUGIN"


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh manager, configured from a clean environment; restored afterwards."""
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    monkeypatch.delenv(plugins.STRICT_ENV, raising=False)
    plugins.configure()
    yield
    plugins.configure()


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[dict[str, str]], list[EntryPoint]]:
    """Install throwaway plugin modules (name -> source) as entry points of group ``gradhealth``.

    The real installed entry points stay listed after the fake ones' names; modules are imported from tmp_path.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    real = plugins._manager._entry_points

    def install(sources: dict[str, str]) -> list[EntryPoint]:
        fakes = []
        for name, source in sources.items():
            module = f"gh_fake_{name}"
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            monkeypatch.delitem(sys.modules, module, raising=False)
            fakes.append(EntryPoint(name=name, value=module, group=plugins.ENTRY_POINT_GROUP))
        monkeypatch.setattr(plugins._manager, "_entry_points", lambda: [*fakes, *real()])
        plugins.reset_plugin_manager()
        return fakes

    return install


@pytest.fixture
def example_plugin() -> str:
    """The name of the installed example plugin's module; skips when it is not installed, unless CI requires it."""
    if importlib.util.find_spec("gradhealth_example_plugin") is None:
        message = "the example plugin is not installed: pip install ./examples/plugin"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1 requires it)")
        pytest.skip(message)
    return "gradhealth_example_plugin"
