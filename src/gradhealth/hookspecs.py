"""The pluggy hook specifications of gradhealth (project name ``gradhealth``).

Built-in probes, tasks, adapters, loaders and renderers register through these same hooks as third-party
plugins, which are discovered through the entry-point group ``gradhealth``. Hooks are always called with keyword
arguments. Implement them with :data:`hookimpl`::

    from gradhealth.hookspecs import hookimpl

    @hookimpl
    def gradhealth_register_probes():
        return [MyProbe]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from gradhealth.adapters.base import Adapter, Layout
    from gradhealth.probes.base import Probe
    from gradhealth.report import Finding, Report
    from gradhealth.tasks import Task

PROJECT_NAME = "gradhealth"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]


@hookspec(firstresult=True)
def gradhealth_adapt_model(model: Any, layout: Layout) -> Adapter | None:
    """Return an :class:`~gradhealth.adapters.base.Adapter` that drives ``model``, or ``None`` to pass.

    The first non-``None`` result wins. Built-in adapters for ``torch.nn`` recurrent modules run first; the
    generic sequence adapter is ``trylast``, so a plugin's ordinary implementation is asked before it.
    """


@hookspec
def gradhealth_register_probes() -> list[type[Probe]]:
    """Return probe classes (subclasses of :class:`~gradhealth.probes.base.Probe`) to make available."""


@hookspec
def gradhealth_register_tasks() -> list[Task]:
    """Return :class:`~gradhealth.tasks.Task` instances to make available by name."""


@hookspec
def gradhealth_add_findings(report: Report) -> list[Finding]:
    """Return extra findings for a finished report (called once per audit, after every probe ran)."""


@hookspec(firstresult=True)
def gradhealth_load_checkpoint(path: Path, options: dict[str, Any]) -> Any | None:
    """Load a checkpoint file or folder and return a loaded checkpoint object, or ``None`` to pass."""


@hookspec(firstresult=True)
def gradhealth_build_model(checkpoint: Any, options: dict[str, Any]) -> Any | None:
    """Build model(s) from a loaded checkpoint, or return ``None`` to pass."""


@hookspec
def gradhealth_register_renderers() -> dict[str, Any]:
    """Return a mapping of format name to a renderer callable ``(reports, **options) -> str``."""
