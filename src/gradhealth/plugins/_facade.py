"""The process-wide plugin manager and the typed calls the engine and the faces make through it.

One :class:`~gradhealth.plugins._manager.GradhealthPluginManager` per process, built lazily on first use and rebuilt
after :func:`configure`. Everything above the domain packages (the engine, the CLI, the pytest plugin) asks for
adapters, tasks, probes, renderers, checkpoints and models through the functions here; the domain packages
themselves never import this module.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradhealth.plugins._info as _info
from gradhealth.errors import AdapterError, CheckpointError, ConfigError
from gradhealth.plugins._info import PluginInfo, PluginWarning, split_names
from gradhealth.plugins._manager import GradhealthPluginManager

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

    from gradhealth.adapters.base import Adapter, Layout
    from gradhealth.probes.base import Probe
    from gradhealth.render.registry import Renderer
    from gradhealth.report import Finding, Report
    from gradhealth.tasks import Task

__all__ = [
    "adapt",
    "adapt_model",
    "build_model",
    "configure",
    "contributions",
    "disabled_plugins",
    "extra_findings",
    "get_plugin_manager",
    "get_renderer",
    "get_task",
    "is_strict",
    "load_checkpoint",
    "models_to_audit",
    "open_checkpoint",
    "plugin_infos",
    "probe_classes",
    "register",
    "registered",
    "renderer_registry",
    "reset_plugin_manager",
    "task_registry",
    "unregister",
]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})

_REGISTRY_HOOKS = {
    "probes": "gradhealth_register_probes",
    "tasks": "gradhealth_register_tasks",
    "renderers": "gradhealth_register_renderers",
}


@dataclass
class _State:
    disabled: frozenset[str] = frozenset()
    strict: bool | None = None
    pm: GradhealthPluginManager | None = None
    registries: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[str, dict[str, str]] = field(default_factory=dict)


_state = _State()
_lock = threading.RLock()


# -- settings -------------------------------------------------------------------------------------------------------
def configure(*, disabled: Iterable[str] | None = None, strict: bool | None = None) -> None:
    """Set which plugins to skip and whether a broken plugin is fatal; rebuilds the manager on next use.

    What the CLI's ``--disable-plugin``/``--strict-plugins`` and the pytest plugin call. ``configure()`` with no
    arguments goes back to the environment alone.

    Args:
        disabled: plugin names (entry-point or distribution names) to skip, on top of ``GRADHEALTH_DISABLE_PLUGINS``.
        strict: make a broken plugin raise :class:`PluginError`; ``None`` reads ``GRADHEALTH_STRICT_PLUGINS``.
    """
    with _lock:
        _state.disabled = frozenset(split_names(disabled or ()))
        _state.strict = strict
        reset_plugin_manager()


def disabled_plugins() -> frozenset[str]:
    """Names to skip: those given to :func:`configure` and those in ``GRADHEALTH_DISABLE_PLUGINS`` (comma-separated)."""
    return _state.disabled | frozenset(split_names([os.environ.get(_info.DISABLE_ENV, "")]))


def is_strict() -> bool:
    """Whether a broken plugin is fatal: :func:`configure` ``strict``, else ``GRADHEALTH_STRICT_PLUGINS``.

    Raises:
        ConfigError: the environment variable holds something other than a yes/no value.
    """
    if _state.strict is not None:
        return _state.strict
    raw = os.environ.get(_info.STRICT_ENV, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    source = f"environment variable {_info.STRICT_ENV}"
    raise ConfigError("strict plugins", raw, "expected 1/0, true/false, yes/no or on/off", source=source)


# -- the manager ----------------------------------------------------------------------------------------------------
def get_plugin_manager() -> GradhealthPluginManager:
    """The process-wide plugin manager, built on first call.

    Raises:
        PluginError: in strict mode, a third-party plugin is broken.
    """
    with _lock:
        if _state.pm is None:
            pm = GradhealthPluginManager(disabled=disabled_plugins(), is_strict=is_strict)
            deferred = pm.load()
            _state.pm = pm
            for message in deferred:
                warnings.warn(message, PluginWarning, stacklevel=3)
        return _state.pm


def reset_plugin_manager() -> None:
    """Forget the manager, the plugin records and the registries (tests, or after installing a plugin)."""
    with _lock:
        _state.pm = None
        _forget_registries()


def _forget_registries() -> None:
    _state.registries.clear()
    _state.owners.clear()


def _call(hook: str, **kwargs: Any) -> Any:
    pm = get_plugin_manager()
    failed_before = _failed_names(pm)
    try:
        return pm.call(hook, **kwargs)
    finally:
        if _failed_names(pm) != failed_before:
            _forget_registries()  # a plugin broke: what it registered must go too


def _failed_names(pm: GradhealthPluginManager) -> frozenset[str]:
    return frozenset(name for name, info in pm.infos.items() if info.status == "failed")


def plugin_infos() -> list[PluginInfo]:
    """Every plugin known to this process, built-in first, with its origin, hooks and status."""
    return list(get_plugin_manager().infos.values())


def register(plugin: object, *, name: str) -> bool:
    """Register a plugin object (a module, class or instance with hook implementations) at run time.

    It goes through the same checks as an installed plugin: if it is broken it is reported and skipped (or, in
    strict mode, :class:`PluginError` is raised).

    Args:
        plugin: the object holding the ``@hookimpl`` functions.
        name: the name it is listed and disabled under.

    Returns:
        ``True`` if it is registered, ``False`` if it was disabled or skipped as broken.
    """
    pm = get_plugin_manager()
    info = PluginInfo(name, "runtime", getattr(plugin, "__name__", type(plugin).__qualname__))
    if name in pm.infos:
        return pm.fail(info, None, f"the name {name!r} is already taken by {pm.infos[name].origin}")
    pm.infos[name] = info
    if name in disabled_plugins():
        info.status = "disabled"
        return False
    _forget_registries()
    return pm.register_checked(plugin, info)


def unregister(name: str) -> None:
    """Remove a plugin registered under ``name`` (and its record); nothing happens if there is none."""
    with _lock:
        pm = get_plugin_manager()
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)
        pm.infos.pop(name, None)
        _forget_registries()


@contextlib.contextmanager
def registered(plugin: object, *, name: str) -> Iterator[bool]:
    """Register a plugin for the duration of a ``with`` block (tests, notebooks, trying a plugin out).

    Args:
        plugin: the object holding the ``@hookimpl`` functions.
        name: the name it is registered under.

    Yields:
        Whether it was registered (``False``: disabled, or skipped as broken).
    """
    is_taken = name in get_plugin_manager().infos  # then the name belongs to another plugin, which must stay
    is_registered = register(plugin, name=name)
    try:
        yield is_registered
    finally:
        if not is_taken:
            unregister(name)


# -- registries -----------------------------------------------------------------------------------------------------
def _registry(kind: str, items_of: Callable[[Any], Iterable[tuple[str, Any]]]) -> dict[str, Any]:
    """Merge the named objects every plugin registers: built-ins first, then plugins in registration order.

    A plugin that reuses a name another plugin registered is reported as broken, and nothing of it is kept.
    """
    with _lock:
        if kind in _state.registries:
            return _state.registries[kind]
        pm = get_plugin_manager()
        hook = _REGISTRY_HOOKS[kind]
        batches = [(pm.origin_of(value) or "?", value) for value in reversed(_call(hook))]
        batches.sort(key=lambda batch: not (pm.infos.get(batch[0]) or PluginInfo("", "", "")).is_builtin)
        found: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for plugin_name, value in batches:
            items = list(items_of(value))
            taken = [name for name, obj in items if name in found and found[name] is not obj]
            if taken:
                info = pm.infos[plugin_name]
                pm.fail(info, hook, f"registers {taken[0]!r}, a name {owners[taken[0]]} already registered")
                pm.unregister(name=plugin_name)
                continue
            for name, obj in items:
                found[name], owners[name] = obj, plugin_name
        _state.registries[kind], _state.owners[kind] = found, owners
        return found


def probe_classes() -> dict[str, type[Probe]]:
    """Every registered probe class by name; a plugin may not take a name another plugin registered."""
    return _registry("probes", lambda classes: ((c.name, c) for c in classes))


def task_registry() -> dict[str, Task]:
    """Every registered input task by name."""
    return _registry("tasks", lambda tasks: ((t.name, t) for t in tasks))


def renderer_registry() -> dict[str, Renderer]:
    """Every registered renderer by format name (``(reports, **options) -> str``)."""
    return _registry("renderers", lambda mapping: mapping.items())


def get_task(name: str) -> Task:
    """The registered task called ``name``.

    Raises:
        ConfigError: no task has that name; the message lists the known ones.
    """
    tasks = task_registry()
    if name not in tasks:
        raise ConfigError("task", name, f"unknown task; known tasks: {', '.join(sorted(tasks))}")
    return tasks[name]


def get_renderer(name: str, *, source: str = "--format") -> Renderer:
    """The renderer for a format name.

    Raises:
        ConfigError: no renderer has that name; the message lists the known ones.
    """
    known = renderer_registry()
    if name not in known:
        raise ConfigError("format", name, f"known formats: {', '.join(sorted(known))}", source=source)
    return known[name]


def contributions() -> dict[str, dict[str, list[str]]]:
    """What each plugin registers, by plugin name: ``{"probes": [...], "tasks": [...], "renderers": [...]}``.

    Calls the registration hooks (so a plugin that breaks in them shows up as failed afterwards).
    """
    probe_classes(), task_registry(), renderer_registry()
    found: dict[str, dict[str, list[str]]] = {}
    for kind in _REGISTRY_HOOKS:
        for name, plugin_name in _state.owners.get(kind, {}).items():
            found.setdefault(plugin_name, {}).setdefault(kind, []).append(name)
    return found


# -- per-audit hooks ------------------------------------------------------------------------------------------------
def adapt_model(model: Any, layout: Layout) -> Adapter | None:
    """The first adapter the ``gradhealth_adapt_model`` hook offers, or ``None``."""
    adapter: Adapter | None = _call("gradhealth_adapt_model", model=model, layout=layout)
    return adapter


def adapt(model: Any, layout: Layout | None = None) -> Adapter:
    """The adapter that drives ``model``.

    Raises:
        AdapterError: no adapter accepts the model; the message lists what was tried and what to pass.
    """
    from gradhealth.adapters import Layout
    from gradhealth.adapters.builtin import BUILTIN_ADAPTERS

    layout = layout or Layout()
    adapter = adapt_model(model, layout)
    if adapter is not None:
        return adapter
    if layout.token_input:
        raise AdapterError(
            f"layout.token_input=True but {type(model).__name__} contains no nn.Embedding; pass "
            "layout=gradhealth.Layout(embedding='dotted.name') or token_input=False",
            model=model,
        )
    tried = "; ".join(f"{name} ({accepts})" for name, accepts in BUILTIN_ADAPTERS)
    raise AdapterError(
        f"no adapter can drive an object of type {type(model).__qualname__}; tried: {tried}. Pass an nn.Module "
        "or a callable taking [B, T, D], or wrap a step function in gradhealth.Unrolled(step)",
        model=model,
    )


def extra_findings(report: Report) -> list[Finding]:
    """Findings that plugins add to a finished report, built-ins' first."""
    batches = reversed(_call("gradhealth_add_findings", report=report))
    return [finding for batch in batches for finding in batch]


def load_checkpoint(path: Path, options: dict[str, Any]) -> Any | None:
    """The first checkpoint the ``gradhealth_load_checkpoint`` hook loads from ``path``, or ``None``."""
    return _call("gradhealth_load_checkpoint", path=path, options=options)


def build_model(checkpoint: Any, options: dict[str, Any]) -> list[tuple[str, nn.Module]] | None:
    """The first ``[(name, module), ...]`` the ``gradhealth_build_model`` hook builds, or ``None``."""
    models: list[tuple[str, nn.Module]] | None = _call("gradhealth_build_model", checkpoint=checkpoint, options=options)
    return models


def open_checkpoint(path: Path, options: dict[str, Any]) -> Any:
    """Load a checkpoint through the hook (options: ``trust``, ``allow_globals``).

    Raises:
        CheckpointError: missing, corrupt, refused as unsafe, or no loader accepted it.
    """
    checkpoint = load_checkpoint(path, options)
    if checkpoint is None:
        raise CheckpointError(f"{path}: no loader accepted this checkpoint", path=path)
    return checkpoint


def models_to_audit(checkpoint: Any, options: dict[str, Any]) -> list[tuple[str, nn.Module]]:
    """The named models to audit in a loaded checkpoint (options: ``model``, ``model_kwargs``, ``nonlinearity``,
    ``layout``).

    Raises:
        CheckpointError: no recurrent layer found and no ``--model`` given.
    """
    models = build_model(checkpoint, options)
    if not models:
        raise CheckpointError(
            f"{checkpoint.path}: no standard RNN/LSTM/GRU layer or cell found among {len(checkpoint.state_dict)} "
            "tensors; pass --model package.module:factory to build the architecture",
            path=checkpoint.path,
        )
    return list(models)
