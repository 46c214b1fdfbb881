"""The plugin manager: pluggy's, plus gradhealth's failure policy for third-party plugins.

:class:`GradhealthPluginManager` registers the built-in modules first, then the plugins of the entry-point group
``gradhealth``. Hooks are called through pluggy's own machinery (``pm.hook.<name>(...)``); the policy lives in a
guard the manager puts around each third-party hook implementation when it is registered:

- an implementation that raises, or returns something its hook does not accept (:mod:`._validators`), marks its
  plugin as broken: it is reported once (a :class:`PluginWarning` naming the plugin and the hook), its result is
  dropped (pluggy goes on to the next implementation), and it is unregistered after the call; in strict mode the
  failure raises :class:`~gradhealth.errors.PluginError` instead;
- a plugin that fails to import, declares a bad signature, implements a misspelled hook (``check_pending``) or a hook
  wrapper is reported the same way and never registered;
- raising one of gradhealth's own errors (``AdapterError``, ``ConfigError``...) reports a problem with the user's
  input: it propagates unchanged;
- the built-ins are ours: their exceptions propagate, and a result of the wrong type is a :class:`PluginError`
  saying it is a gradhealth bug.

The guard also remembers which plugin returned each result (:meth:`GradhealthPluginManager.origin_of`), so a
registry can say whose name clashed with whose.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

import gradhealth.plugins._info as _info
from gradhealth import hookspecs
from gradhealth.errors import GradhealthError, PluginError
from gradhealth.plugins._info import PluginInfo, PluginWarning, describe_exception, normalize_name
from gradhealth.plugins._validators import RESULT_CHECKS

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["GradhealthPluginManager"]


def _entry_points() -> list[EntryPoint]:
    """The entry points of the ``gradhealth`` group, each once (a distribution on sys.path twice lists them twice)."""
    from importlib.metadata import entry_points

    unique: dict[tuple[str, str], EntryPoint] = {}
    for ep in entry_points(group=_info.ENTRY_POINT_GROUP):
        unique.setdefault((ep.name, ep.value), ep)
    return list(unique.values())


class GradhealthPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that contains broken third-party plugins (see the module docstring).

    Args:
        disabled: plugin or distribution names to skip.
        is_strict: called when a plugin breaks: whether that is fatal.
    """

    def __init__(self, *, disabled: Iterable[str] = (), is_strict: Callable[[], bool] = lambda: False) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.disabled = frozenset(disabled)
        self._is_strict = is_strict
        self._reported: set[tuple[str, str | None]] = set()
        self._origins: dict[int, str] = {}
        self._broken: list[str] = []
        self._deferred: list[str] | None = None

    # -- building -----------------------------------------------------------------------------------------------
    def load(self) -> list[str]:
        """Register the built-ins, then the entry points.

        Returns:
            The warnings held back while loading: the caller emits them once the manager is in place, so that
            ``-W error`` cannot leave a half-built manager behind (rebuilt, and the failure reported again, on
            every call).
        """
        self._deferred = []
        try:
            self._load_builtins()
            self._load_entry_points()
        finally:
            deferred, self._deferred = self._deferred, None
        return deferred

    def _load_builtins(self) -> None:
        from gradhealth._version import __version__

        for name in _info.BUILTIN_PLUGINS:
            module = importlib.import_module(name)
            self.infos[name] = PluginInfo(name, "builtin", name, "gradhealth", __version__)
            self.register(module, name=name)
            self.infos[name].hooks = sorted(caller.name for caller in self.get_hookcallers(module) or [])
        self.check_pending()  # a built-in implementing an unknown hook is our bug: fail loudly

    def _load_entry_points(self) -> None:
        disabled = {normalize_name(n) for n in self.disabled}
        for name in sorted(disabled & {normalize_name(b) for b in _info.BUILTIN_PLUGINS}):
            self._warn(f"built-in plugin {name} cannot be disabled; ignoring it")
        for ep in _entry_points():
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            info = PluginInfo(ep.name, "entry point", ep.value, dist_name, dist.version if dist is not None else None)
            if ep.name in self.infos:
                self.fail(info, None, f"the name {ep.name!r} is already taken by {self.infos[ep.name].origin}")
                continue
            self.infos[ep.name] = info
            if normalize_name(ep.name) in disabled or (dist_name is not None and normalize_name(dist_name) in disabled):
                info.status = "disabled"
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin must not break unrelated runs (nor exit them)
                self.fail(info, None, f"failed to import: {describe_exception(exc)}", exc)
                continue
            self.register_checked(plugin, info)

    def register_checked(self, plugin: object, info: PluginInfo) -> bool:
        """Register a third-party plugin after pluggy's checks and ours; a broken one is reported, not raised.

        Returns:
            Whether it is registered.
        """
        self.infos.setdefault(info.name, info)
        try:
            self.register(plugin, name=info.name)
        except pluggy.PluginValidationError as exc:
            hook = getattr(getattr(exc, "plugin", None), "__name__", None)
            found = next((h for h in dir(hookspecs) if h.startswith("gradhealth_") and f"'{h}'" in str(exc)), hook)
            detail = " ".join(str(exc).split("\n")[1:]) or str(exc)
            return self.fail(info, found, f"invalid hook implementation: {detail}", exc)
        except ValueError as exc:  # the same object registered twice under two names
            return self.fail(info, None, str(exc).splitlines()[0], exc)
        callers = self.get_hookcallers(plugin) or []
        try:
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            unknown = [c.name for c in callers if not c.has_spec()]
            self.unregister(plugin)
            hook = unknown[0] if unknown else None
            return self.fail(info, hook, f"implements {hook!r}, which is not a gradhealth hook (misspelled?)", exc)
        for caller in callers:
            if any(impl.plugin is plugin and (impl.wrapper or impl.hookwrapper) for impl in caller.get_hookimpls()):
                self.unregister(plugin)
                return self.fail(info, caller.name, "hook wrappers are not supported on gradhealth hooks")
        info.hooks = sorted(c.name for c in callers)
        return True

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """pluggy's ``register``, then every hook implementation of the plugin is guarded (module docstring)."""
        registered = super().register(plugin, name)
        if registered is not None:
            info = self.infos.get(registered)
            if info is None:
                source = "builtin" if registered in _info.BUILTIN_PLUGINS else "runtime"
                info = self.infos[registered] = PluginInfo(registered, source, registered)
            for caller in self.get_hookcallers(plugin) or []:
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function = self._guard(impl.function, caller.name, info)  # type: ignore[misc]
        return registered

    # -- the failure policy ---------------------------------------------------------------------------------------
    def _guard(self, function: Callable[..., Any], hook: str, info: PluginInfo) -> Callable[..., Any]:
        check, expected = RESULT_CHECKS.get(hook, (lambda value: True, ""))

        def guarded(*args: Any) -> Any:
            if info.status == "failed":
                return None  # broken earlier in this call: unregistered once the call is over
            if info.is_builtin:
                value = function(*args)
            else:
                try:
                    value = function(*args)
                except GradhealthError:
                    raise
                except Exception as exc:
                    self._broke(info, hook, f"raised {describe_exception(exc)}", exc)
                    return None
            if value is None:
                return None
            if not check(value):
                problem = f"returned {type(value).__name__}, expected {expected}"
                if info.is_builtin:
                    raise PluginError(f"built-in plugin {info.name} {problem} (a gradhealth bug)", plugin=info.name,
                                      hook=hook)  # fmt: skip
                self._broke(info, hook, problem)
                return None
            self._origins[id(value)] = info.name
            return value

        return guarded

    def _broke(self, info: PluginInfo, hook: str, problem: str, exc: BaseException | None = None) -> None:
        self._broken.append(info.name)
        self.fail(info, hook, problem, exc)

    def drop_broken(self) -> None:
        """Unregister the plugins that broke during the last hook call (after the call, never during it)."""
        for name in self._broken:
            if self.get_plugin(name) is not None:
                self.unregister(name=name)
        self._broken.clear()

    def fail(self, info: PluginInfo, hook: str | None, problem: str, exc: BaseException | None = None) -> bool:
        """Record a broken plugin, then warn once (or raise in strict mode). Returns ``False`` (not registered).

        Raises:
            PluginError: in strict mode.
        """
        info.status, info.error, info.failed_hook = "failed", problem, hook
        key_name = info.name if self.infos.setdefault(info.name, info) is info else f"{info.name} ({info.module})"
        self.infos.setdefault(key_name, info)
        where = f" in hook {hook}" if hook else ""
        message = f"gradhealth plugin {info.name!r} ({info.origin}) is broken{where}: {problem}"
        if self._is_strict():
            raise PluginError(f"{message}; strict plugin mode makes this fatal", plugin=info.name, hook=hook) from exc
        key = (info.name, hook)
        if key not in self._reported:
            self._reported.add(key)
            self._warn(f"{message}; it was skipped (fix or uninstall it, or set {_info.DISABLE_ENV}={info.name})")
        return False

    def _warn(self, message: str) -> None:
        if self._deferred is not None:
            self._deferred.append(message)
        else:
            warnings.warn(message, PluginWarning, stacklevel=6)

    # -- calling --------------------------------------------------------------------------------------------------
    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call a hook with keyword arguments through pluggy, then drop the plugins that broke in it."""
        self._origins.clear()  # only the last call's results are looked up
        try:
            return getattr(self.hook, hook)(**kwargs)
        finally:
            self.drop_broken()

    def origin_of(self, value: object) -> str | None:
        """The plugin that returned ``value`` from a hook (``None`` if no guarded implementation did)."""
        return self._origins.get(id(value))
