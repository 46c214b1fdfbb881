"""The pluggy hook specifications of gradhealth (project name ``gradhealth``).

Built-in probes, tasks, adapters, loaders and renderers register through these same hooks as third-party
plugins, which are discovered through the entry-point group ``gradhealth``. Hooks are always called with keyword
arguments; an implementation may accept any subset of a hook's arguments, in any order. Implement them with
:data:`hookimpl`::

    from gradhealth.hookspecs import hookimpl

    @hookimpl
    def gradhealth_register_probes():
        return [MyProbe]

Contract shared by every hook (enforced by :mod:`gradhealth.plugins`, see docs/plugins.md):

- an implementation that raises, or returns something of the wrong type, marks its plugin as broken: the plugin
  is reported once (naming it and the hook), unregistered, and the call goes on without it; in strict mode
  (``GRADHEALTH_STRICT_PLUGINS=1``) it raises :class:`~gradhealth.errors.PluginError` instead;
- raising one of gradhealth's own errors (``AdapterError``, ``ConfigError``, ``CheckpointError``...) is how an
  implementation reports a problem with the user's input: that error reaches the user unchanged;
- hook wrappers (``wrapper=True``/``hookwrapper=True``) are not supported;
- keep module-level imports light (no torch at import time): import heavy modules inside the hook.
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

    Called once per audit, before anything runs. The first non-``None`` result wins. Order: ``tryfirst``
    implementations (the built-in ``torch.nn`` RNN/LSTM/GRU, ``*Cell``, ``Unrolled`` and token-id adapters), then
    plain ones (the plugin registered last first), then ``trylast`` (the built-in generic sequence adapter). So a
    plugin's plain implementation beats the generic adapter but not the built-in one for ``nn.LSTM``; mark it
    ``tryfirst=True`` to take a model the built-ins would otherwise claim.

    Args:
        model: whatever the user passed to :func:`gradhealth.audit` (module, callable, ...).
        layout: the user's :class:`~gradhealth.adapters.base.Layout` (defaults when none was given).
    """


@hookspec
def gradhealth_register_probes() -> list[type[Probe]]:
    """Return probe classes (subclasses of :class:`~gradhealth.probes.base.Probe`) to make available.

    Called once per process (the result is cached); each class's ``name`` is how users select it
    (``probes=["name"]``) and the key of its result in ``Report.probes``. A name another plugin (or a built-in)
    already registered makes the later plugin broken.
    """


@hookspec
def gradhealth_register_tasks() -> list[Task]:
    """Return :class:`~gradhealth.tasks.Task` instances to make available by name (``task="name"``).

    Called once per process; names must not clash with a built-in or another plugin's task.
    """


@hookspec
def gradhealth_add_findings(report: Report) -> list[Finding]:
    """Return extra :class:`~gradhealth.report.Finding` objects for a finished report.

    Called once per audit, after every probe ran; the report is complete but for these findings (do not modify
    it). Use a code prefix of your own (e.g. ``MYPKG001``) so findings stay distinguishable from gradhealth's.
    """


@hookspec(firstresult=True)
def gradhealth_load_checkpoint(path: Path, options: dict[str, Any]) -> Any | None:
    """Load a checkpoint file or folder and return a loaded checkpoint object, or ``None`` to pass.

    Called by the CLI once per input path; the first non-``None`` result wins, and the built-in loader is
    ``trylast``. ``options`` holds ``trust`` (bool), ``allow_globals``, ``memory_limit`` (bytes or ``None``)
    and ``metadata_only`` (``inspect``: shapes and dtypes suffice, meta tensors will do); never execute code from
    the file unless ``options["trust"]`` is true. Return an object with at least ``path`` and ``state_dict``
    attributes (as :class:`gradhealth.loaders.load.Checkpoint` has) so the built-in model builders can read it.
    """


@hookspec(firstresult=True)
def gradhealth_build_model(checkpoint: Any, options: dict[str, Any]) -> Any | None:
    """Build the model(s) to audit from a loaded checkpoint: ``[(name, module), ...]``, or ``None`` to pass.

    Called by the CLI once per loaded checkpoint; the first non-``None`` result wins, and the built-in builder
    (``--model`` factory, a whole module the file held, a Hugging Face folder built by ``transformers``, or
    standard recurrent layers rebuilt from parameter names) is ``trylast``. ``options`` holds ``model`` (the
    ``--model`` spec, if given: pass then), ``model_kwargs``, ``nonlinearity`` (``None``: not given) and ``layout``
    (the command line's Layout fields). A builder may record in ``checkpoint.metadata`` a ``Layout`` per model
    name under ``"layouts"`` and a sentence per model name under ``"assumptions"`` (reported as GH903).
    """


@hookspec
def gradhealth_register_renderers() -> dict[str, Any]:
    """Return a mapping of format name to a renderer callable ``(reports, **options) -> str``.

    ``reports`` is a sequence of :class:`gradhealth.render.registry.NamedReport` (one per audited model, with its
    gate results or the error that stopped it); ``options`` are keyword extras to use or ignore (``color``,
    ``title``).

    Called once per process; the names are what ``--format`` accepts. A name already registered makes the later
    plugin broken.
    """
