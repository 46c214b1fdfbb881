"""The plugin manager and the typed facade over the hooks.

One :class:`pluggy.PluginManager` per process, built lazily on first use: the built-in modules register first,
then third-party plugins from the entry-point group ``gradhealth`` (scanned once). Everything else in gradhealth
calls hooks through the functions here, never through ``pm.hook`` directly, so the call sites stay typed and
keyword-only, and a broken plugin is contained here:

- a plugin that fails to import, declares a hook with a bad signature, implements a misspelled hook (caught by
  ``check_pending``), uses a hook wrapper, or raises or returns garbage inside a hook is reported once (a
  :class:`PluginWarning` naming the plugin and the hook), unregistered, and the call goes on without it;
- in strict mode (:func:`configure` ``strict=True`` or ``GRADHEALTH_STRICT_PLUGINS=1``) the same failure raises
  :class:`~gradhealth.errors.PluginError` naming the plugin and the hook;
- the built-in plugins are ours: their exceptions propagate unchanged.

A plugin that raises one of gradhealth's own error types (``AdapterError``, ``ConfigError``, ...) is reporting a
problem with the user's input, not a bug of its own: that error propagates too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from gradhealth import hookspecs
from gradhealth.errors import ConfigError, GradhealthError, PluginError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint
    from pathlib import Path

    from gradhealth.adapters.base import Adapter, Layout
    from gradhealth.probes.base import Probe
    from gradhealth.report import Finding, Report
    from gradhealth.tasks import Task

__all__ = [
    "BUILTIN_PLUGINS",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "STRICT_ENV",
    "PluginInfo",
    "PluginWarning",
    "adapt_model",
    "build_model",
    "configure",
    "contributions",
    "disabled_plugins",
    "extra_findings",
    "get_plugin_manager",
    "is_strict",
    "load_checkpoint",
    "plugin_infos",
    "probe_classes",
    "register",
    "registered",
    "renderer_registry",
    "reset_plugin_manager",
    "task_registry",
    "unregister",
]

#: Modules holding the built-in hook implementations, registered under these names.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "gradhealth.adapters.builtin",
    "gradhealth.adapters.fallback",
    "gradhealth.tasks",
    "gradhealth.probes.builtin",
    "gradhealth.loaders.builtin",
    "gradhealth.render.builtin",
)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
DISABLE_ENV = "GRADHEALTH_DISABLE_PLUGINS"
STRICT_ENV = "GRADHEALTH_STRICT_PLUGINS"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class PluginWarning(UserWarning):
    """A third-party plugin failed and was skipped (filter it with ``-W ignore::gradhealth.plugins.PluginWarning``)."""


@dataclass
class PluginInfo:
    """Where a plugin came from and how it fared; what ``gradhealth plugins`` lists.

    Attributes:
        name: the registered name (the entry-point name for third-party plugins).
        source: ``"builtin"``, ``"entry point"`` or ``"runtime"`` (registered with :func:`register`).
        module: the module (or ``module:attr`` entry-point value) holding the hook implementations.
        distribution: the installed distribution that provides it, when known.
        version: that distribution's version.
        status: ``"active"``, ``"disabled"`` or ``"failed"``.
        hooks: the hooks it implements.
        error: why it failed, in one line.
        failed_hook: the hook it failed in (``None`` when it failed to import).
    """

    name: str
    source: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: str = "active"
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    failed_hook: str | None = None

    @property
    def origin(self) -> str:
        """Human-readable origin, e.g. ``entry point 'example' (pkg.mod) from gradhealth-example-plugin 0.1.0``."""
        if self.source == "builtin":
            return f"built-in module {self.module}"
        where = f"{self.source} {self.name!r} ({self.module})"
        if self.distribution:
            where += f" from {self.distribution} {self.version or ''}".rstrip()
        return where

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for ``gradhealth plugins --json``)."""
        return dataclasses.asdict(self)


@dataclass
class _Settings:
    disabled: frozenset[str] = frozenset()
    strict: bool | None = None


@dataclass
class _State:
    pm: pluggy.PluginManager | None = None
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    reported: set[tuple[str, str | None]] = field(default_factory=set)
    cache: dict[str, Any] = field(default_factory=dict)
    #: warnings held back while the manager is built, emitted once it is complete (so ``-W error`` cannot leave a
    #: half-built manager behind that would be rebuilt, and the failure reported again, on every call)
    deferred: list[str] | None = None


_settings = _Settings()
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
        _settings.disabled = frozenset(_split_names(disabled or ()))
        _settings.strict = strict
        reset_plugin_manager()


def disabled_plugins() -> frozenset[str]:
    """Names to skip: those given to :func:`configure` and those in ``GRADHEALTH_DISABLE_PLUGINS`` (comma-separated)."""
    return _settings.disabled | frozenset(_split_names([os.environ.get(DISABLE_ENV, "")]))


def is_strict() -> bool:
    """Whether a broken plugin is fatal: :func:`configure` ``strict``, else ``GRADHEALTH_STRICT_PLUGINS``.

    Raises:
        ConfigError: the environment variable holds something other than a yes/no value.
    """
    if _settings.strict is not None:
        return _settings.strict
    raw = os.environ.get(STRICT_ENV, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        "strict plugins", raw, "expected 1/0, true/false, yes/no or on/off", source=f"environment variable {STRICT_ENV}"
    )


def _split_names(values: Iterable[str]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- the manager ----------------------------------------------------------------------------------------------------
def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, building it on first call.

    Raises:
        PluginError: in strict mode, a third-party plugin is broken.
    """
    with _lock:
        if _state.pm is None:
            _state.deferred = []
            try:
                _build()
            except BaseException:
                reset_plugin_manager()
                raise
            deferred, _state.deferred = _state.deferred, None
            for message in deferred:
                warnings.warn(message, PluginWarning, stacklevel=3)
        assert _state.pm is not None
        return _state.pm


def reset_plugin_manager() -> None:
    """Forget the manager, the plugin records and the caches (tests, or after installing a plugin at run time)."""
    with _lock:
        _state.pm = None
        _state.infos.clear()
        _state.reported.clear()
        _state.cache.clear()
        _state.deferred = None


def plugin_infos() -> list[PluginInfo]:
    """Every plugin known to this process, built-in first, with its origin, hooks and status."""
    get_plugin_manager()
    return list(_state.infos.values())


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
    module = getattr(plugin, "__name__", type(plugin).__qualname__)
    info = PluginInfo(name, "runtime", module)
    if name in _state.infos:
        return _fail(info, None, f"the name {name!r} is already taken by {_state.infos[name].origin}")
    _state.infos[name] = info
    if name in disabled_plugins():
        info.status = "disabled"
        return False
    _state.cache.clear()
    return _register_checked(pm, plugin, info)


def unregister(name: str) -> None:
    """Remove a plugin registered under ``name`` (and its record); nothing happens if there is none."""
    with _lock:
        pm = get_plugin_manager()
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)
        _state.infos.pop(name, None)
        _state.cache.clear()


@contextlib.contextmanager
def registered(plugin: object, *, name: str) -> Iterator[bool]:
    """Register a plugin for the duration of a ``with`` block (tests, notebooks, trying a plugin out).

    Args:
        plugin: the object holding the ``@hookimpl`` functions.
        name: the name it is registered under.

    Yields:
        Whether it was registered (``False``: disabled, or skipped as broken).
    """
    get_plugin_manager()
    is_taken = name in _state.infos  # then the name belongs to another plugin, which must stay
    is_registered = register(plugin, name=name)
    try:
        yield is_registered
    finally:
        if not is_taken:
            unregister(name)


def _build() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    _state.pm = pm
    from gradhealth._version import __version__

    for name in BUILTIN_PLUGINS:
        module = importlib.import_module(name)
        pm.register(module, name=name)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(module) or [])
        _state.infos[name] = PluginInfo(name, "builtin", name, "gradhealth", __version__, hooks=hooks)
    pm.check_pending()  # a built-in implementing an unknown hook is our bug: fail loudly
    _load_entry_points(pm)


def _entry_points() -> list[EntryPoint]:
    from importlib.metadata import entry_points

    unique: dict[tuple[str, str], EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        unique.setdefault((ep.name, ep.value), ep)  # a distribution on sys.path twice lists its entry points twice
    return list(unique.values())


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    disabled = {_normalize(n) for n in disabled_plugins()}
    builtins = set(BUILTIN_PLUGINS)
    for name in sorted(disabled & {_normalize(b) for b in builtins}):
        _warn(f"built-in plugin {name} cannot be disabled; ignoring it")
    for ep in _entry_points():
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        info = PluginInfo(ep.name, "entry point", ep.value, dist_name, dist.version if dist is not None else None)
        if ep.name in _state.infos:
            _fail(info, None, f"the name {ep.name!r} is already taken by {_state.infos[ep.name].origin}")
            continue
        _state.infos[ep.name] = info
        if _normalize(ep.name) in disabled or (dist_name is not None and _normalize(dist_name) in disabled):
            info.status = "disabled"
            continue
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not break unrelated runs (nor exit them)
            _fail(info, None, f"failed to import: {_describe(exc)}", exc)
            continue
        _register_checked(pm, plugin, info)


def _register_checked(pm: pluggy.PluginManager, plugin: object, info: PluginInfo) -> bool:
    try:
        pm.register(plugin, name=info.name)
    except pluggy.PluginValidationError as exc:
        found = re.search(r"hook '([^']+)'", str(exc))
        detail = " ".join(str(exc).split("\n")[1:]) or str(exc)
        return _fail(info, found.group(1) if found else None, f"invalid hook implementation: {detail}", exc)
    except ValueError as exc:  # the same object registered twice under two names
        return _fail(info, None, str(exc).splitlines()[0], exc)
    callers = pm.get_hookcallers(plugin) or []
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        unknown = [c.name for c in callers if not c.has_spec()]
        pm.unregister(plugin)
        hook = unknown[0] if unknown else None
        return _fail(info, hook, f"implements {hook!r}, which is not a gradhealth hook (misspelled?)", exc)
    for caller in callers:
        if any(impl.plugin is plugin and (impl.wrapper or impl.hookwrapper) for impl in caller.get_hookimpls()):
            pm.unregister(plugin)
            return _fail(info, caller.name, "hook wrappers are not supported on gradhealth hooks")
    info.hooks = sorted(c.name for c in callers)
    return True


def _describe(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def _warn(message: str) -> None:
    if _state.deferred is not None:
        _state.deferred.append(message)
    else:
        warnings.warn(message, PluginWarning, stacklevel=5)


def _fail(info: PluginInfo, hook: str | None, problem: str, exc: BaseException | None = None) -> bool:
    """Record a broken plugin, then warn once (or raise in strict mode). Returns ``False`` (not registered)."""
    info.status, info.error, info.failed_hook = "failed", problem, hook
    key_name = info.name if _state.infos.setdefault(info.name, info) is info else f"{info.name} ({info.module})"
    _state.infos.setdefault(key_name, info)
    _state.cache.clear()
    where = f" in hook {hook}" if hook else ""
    message = f"gradhealth plugin {info.name!r} ({info.origin}) is broken{where}: {problem}"
    if is_strict():
        raise PluginError(f"{message}; strict plugin mode makes this fatal", plugin=info.name, hook=hook) from exc
    key = (info.name, hook)
    if key not in _state.reported:
        _state.reported.add(key)
        hint = f"fix or uninstall it, or set {DISABLE_ENV}={info.name}"
        _warn(f"{message}; it was skipped ({hint})")
    return False


# -- calling hooks --------------------------------------------------------------------------------------------------
def _is_builtin(plugin_name: str) -> bool:
    return plugin_name in BUILTIN_PLUGINS


def _plugin_failed(plugin_name: str, hook: str, problem: str, exc: BaseException | None = None) -> None:
    """A plugin broke inside a hook: unregister it, then report it."""
    pm = get_plugin_manager()
    if pm.get_plugin(plugin_name) is not None:
        pm.unregister(name=plugin_name)
    info = _state.infos.get(plugin_name) or PluginInfo(plugin_name, "runtime", plugin_name)
    _fail(info, hook, problem, exc)


def _call(hook: str, kwargs: dict[str, Any], *, firstresult: bool) -> list[tuple[str, Any]]:
    """Call every implementation of ``hook`` in pluggy's order, one at a time, so a failure names its plugin.

    Returns (plugin name, result) for each non-``None`` result; only the first with ``firstresult``.
    """
    pm = get_plugin_manager()
    results: list[tuple[str, Any]] = []
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        if pm.get_plugin(impl.plugin_name) is None:
            continue  # unregistered by an earlier failure during this call
        try:
            value = impl.function(*[kwargs[name] for name in impl.argnames])
        except GradhealthError:
            raise
        except Exception as exc:
            if _is_builtin(impl.plugin_name):
                raise
            _plugin_failed(impl.plugin_name, hook, f"raised {_describe(exc)}", exc)
            continue
        if value is not None:
            results.append((impl.plugin_name, value))
            if firstresult:
                break
    return results


def _bad_result(plugin_name: str, hook: str, problem: str) -> None:
    if _is_builtin(plugin_name):
        raise PluginError(f"built-in plugin {plugin_name} {problem} (a gradhealth bug)", plugin=plugin_name, hook=hook)
    _plugin_failed(plugin_name, hook, problem)


def _first_valid(hook: str, kwargs: dict[str, Any], check: Callable[[Any], bool], expected: str) -> Any | None:
    """The first non-``None`` result that passes ``check``; a plugin returning anything else is skipped."""
    while True:
        found = _call(hook, kwargs, firstresult=True)
        if not found:
            return None
        plugin_name, value = found[0]
        if check(value):
            return value
        _bad_result(plugin_name, hook, f"returned {type(value).__name__}, expected {expected}")


def _named_registry(hook: str, items_of: Callable[[Any], list[tuple[str, Any]] | None], expected: str) -> dict:
    """Merge the named objects every plugin registers; built-ins first, then plugins in registration order.

    A plugin whose result is malformed, or that reuses a name already taken, is skipped as a whole.
    """
    batches = list(reversed(_call(hook, {}, firstresult=False)))
    batches.sort(key=lambda batch: not _is_builtin(batch[0]))
    found: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for plugin_name, value in batches:
        items = items_of(value)
        if items is None:
            _bad_result(plugin_name, hook, f"returned {type(value).__name__}, expected {expected}")
            continue
        taken = [name for name, obj in items if name in found and found[name] is not obj]
        if taken:
            _bad_result(plugin_name, hook, f"registers {taken[0]!r}, a name {owner[taken[0]]} already registered")
            continue
        for name, obj in items:
            found[name], owner[name] = obj, plugin_name
    _state.cache[f"{hook}:owners"] = owner
    return found


def _cached(key: str, build: Callable[[], Any]) -> Any:
    with _lock:
        get_plugin_manager()
        if key not in _state.cache:
            value = build()
            _state.cache[key] = value
        return _state.cache[key]


def _listed(value: Any, check: Callable[[Any], bool], name_of: Callable[[Any], Any]) -> list[tuple[str, Any]] | None:
    if not isinstance(value, (list, tuple)) or not all(check(v) for v in value):
        return None
    names = [name_of(v) for v in value]
    return list(zip(names, value, strict=True)) if all(isinstance(n, str) and n for n in names) else None


# -- the facade -----------------------------------------------------------------------------------------------------
def adapt_model(model: Any, layout: Layout) -> Adapter | None:
    """Ask the ``gradhealth_adapt_model`` hook for an adapter (first non-``None`` result)."""
    from gradhealth.adapters.base import Adapter

    checked = _first_valid(
        "gradhealth_adapt_model", {"model": model, "layout": layout}, lambda v: isinstance(v, Adapter), "an Adapter"
    )
    return checked


def probe_classes() -> dict[str, type[Probe]]:
    """Every registered probe class by name; a plugin may not take a name another plugin registered."""
    from gradhealth.probes.base import Probe

    def items(value: Any) -> list[tuple[str, Any]] | None:
        return _listed(
            value, lambda c: isinstance(c, type) and issubclass(c, Probe), lambda c: getattr(c, "name", None)
        )

    return _cached("probes", lambda: _named_registry("gradhealth_register_probes", items, "a list of Probe subclasses"))


def task_registry() -> dict[str, Task]:
    """Every registered input task by name."""
    from gradhealth.tasks.base import Task

    def items(value: Any) -> list[tuple[str, Any]] | None:
        return _listed(value, lambda t: isinstance(t, Task), lambda t: getattr(t, "name", None))

    return _cached("tasks", lambda: _named_registry("gradhealth_register_tasks", items, "a list of Task instances"))


def renderer_registry() -> dict[str, Callable[..., str]]:
    """Every registered renderer by format name (``(reports, **options) -> str``)."""

    def items(value: Any) -> list[tuple[str, Any]] | None:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) and callable(v) for k, v in value.items()):
            return None
        return list(value.items())

    return _cached(
        "renderers",
        lambda: _named_registry("gradhealth_register_renderers", items, "a dict of format name to callable"),
    )


def contributions() -> dict[str, dict[str, list[str]]]:
    """What each plugin registers, by plugin name: ``{"probes": [...], "tasks": [...], "renderers": [...]}``.

    Calls the registration hooks (so a plugin that breaks in them shows up as failed afterwards).
    """
    kinds = {
        "probes": ("gradhealth_register_probes", probe_classes),
        "tasks": ("gradhealth_register_tasks", task_registry),
        "renderers": ("gradhealth_register_renderers", renderer_registry),
    }
    found: dict[str, dict[str, list[str]]] = {}
    for kind, (hook, registry) in kinds.items():
        registry()
        for name, plugin_name in _state.cache.get(f"{hook}:owners", {}).items():
            found.setdefault(plugin_name, {}).setdefault(kind, []).append(name)
    return found


def extra_findings(report: Report) -> list[Finding]:
    """Findings that plugins add to a finished report, built-ins' first."""
    from gradhealth.report import Finding

    batches = list(reversed(_call("gradhealth_add_findings", {"report": report}, firstresult=False)))
    findings: list[Finding] = []
    for plugin_name, batch in batches:
        if not isinstance(batch, (list, tuple)) or not all(isinstance(f, Finding) for f in batch):
            _bad_result(plugin_name, "gradhealth_add_findings", f"returned {batch!r:.60}, expected a list of Finding")
            continue
        findings.extend(batch)
    return findings


def load_checkpoint(path: Path, options: dict[str, Any]) -> Any | None:
    """Ask the ``gradhealth_load_checkpoint`` hook to load ``path`` (first non-``None`` result)."""
    return _first_valid("gradhealth_load_checkpoint", {"path": path, "options": options}, lambda v: True, "")


def build_model(checkpoint: Any, options: dict[str, Any]) -> Any | None:
    """Ask the ``gradhealth_build_model`` hook to build model(s) from a loaded checkpoint (first non-``None``)."""
    return _first_valid("gradhealth_build_model", {"checkpoint": checkpoint, "options": options}, lambda v: True, "")
