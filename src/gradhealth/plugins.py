"""The plugin manager and the typed facade over the hooks.

One :class:`pluggy.PluginManager` per process, built lazily on first use: the built-in modules register first,
then third-party plugins from the entry-point group ``gradhealth``. Everything else in gradhealth calls hooks
through the functions here, never through ``pm.hook`` directly, so the call sites stay typed and keyword-only.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import TYPE_CHECKING, Any

import pluggy

from gradhealth import hookspecs
from gradhealth.errors import PluginError

if TYPE_CHECKING:
    from gradhealth.adapters.base import Adapter, Layout
    from gradhealth.probes.base import Probe
    from gradhealth.report import Finding, Report
    from gradhealth.tasks import Task

__all__ = [
    "BUILTIN_PLUGINS",
    "adapt_model",
    "extra_findings",
    "get_plugin_manager",
    "probe_classes",
    "reset_plugin_manager",
    "task_registry",
]

#: Modules holding the built-in hook implementations, registered under these names.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "gradhealth.adapters.builtin",
    "gradhealth.adapters.fallback",
    "gradhealth.tasks",
    "gradhealth.probes.builtin",
)

DISABLE_ENV = "GRADHEALTH_DISABLE_PLUGINS"


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, building it on first call."""
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    _load_entry_points(pm)
    pm.check_pending()
    return pm


def reset_plugin_manager() -> None:
    """Forget the cached manager (tests, or after installing a plugin at run time)."""
    get_plugin_manager.cache_clear()
    probe_classes.cache_clear()
    task_registry.cache_clear()


def _disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from importlib.metadata import entry_points

    disabled = _disabled_names()
    for ep in entry_points(group=hookspecs.PROJECT_NAME):
        if ep.name in disabled or pm.get_plugin(ep.name) is not None:
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not break unrelated runs
            warnings.warn(
                f"gradhealth plugin {ep.name!r} ({ep.value}) failed to load and was skipped: "
                f"{type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )


def adapt_model(model: Any, layout: Layout) -> Adapter | None:
    """Ask the ``gradhealth_adapt_model`` hook for an adapter (first non-None result)."""
    return get_plugin_manager().hook.gradhealth_adapt_model(model=model, layout=layout)


@functools.lru_cache(maxsize=1)
def probe_classes() -> dict[str, type[Probe]]:
    """Every registered probe class by name; a later plugin may not silently shadow an earlier name."""
    found: dict[str, type[Probe]] = {}
    for batch in reversed(get_plugin_manager().hook.gradhealth_register_probes()):
        for cls in batch:
            if cls.name in found and found[cls.name] is not cls:
                raise PluginError(
                    f"two plugins register a probe named {cls.name!r}: {found[cls.name].__module__} and "
                    f"{cls.__module__}; rename one",
                    hook="gradhealth_register_probes",
                )
            found[cls.name] = cls
    return found


@functools.lru_cache(maxsize=1)
def task_registry() -> dict[str, Task]:
    """Every registered input task by name."""
    found: dict[str, Task] = {}
    for batch in reversed(get_plugin_manager().hook.gradhealth_register_tasks()):
        for task in batch:
            found[task.name] = task
    return found


def extra_findings(report: Report) -> list[Finding]:
    """Findings that plugins add to a finished report."""
    batches = get_plugin_manager().hook.gradhealth_add_findings(report=report)
    return [f for batch in reversed(batches) for f in batch]
