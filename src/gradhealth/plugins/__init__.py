"""Plugins: the pluggy manager with gradhealth's failure policy, and the typed calls made through it.

Built-in probes, tasks, adapters, loaders and renderers register through the same hooks
(:mod:`gradhealth.hookspecs`) as third-party plugins, found through the entry-point group ``gradhealth``. The
engine and the faces call hooks through the functions here; the domain packages (adapters, tasks, probes, loaders,
render) never import this package. See docs/plugins.md.

- :mod:`._info`: plugin records, the environment switches, name rules;
- :mod:`._validators`: what each hook must return;
- :mod:`._manager`: :class:`GradhealthPluginManager`, a :class:`pluggy.PluginManager` that guards third-party hook
  implementations;
- :mod:`._facade`: the process-wide manager and the typed calls.
"""

from __future__ import annotations

from gradhealth.plugins._facade import (
    adapt,
    adapt_model,
    build_model,
    configure,
    contributions,
    disabled_plugins,
    extra_findings,
    get_plugin_manager,
    get_renderer,
    get_task,
    is_strict,
    load_checkpoint,
    models_to_audit,
    open_checkpoint,
    plugin_infos,
    probe_classes,
    register,
    registered,
    renderer_registry,
    reset_plugin_manager,
    task_registry,
    unregister,
)
from gradhealth.plugins._info import (
    BUILTIN_PLUGINS,
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    STRICT_ENV,
    PluginInfo,
    PluginWarning,
)
from gradhealth.plugins._manager import GradhealthPluginManager

__all__ = [
    "BUILTIN_PLUGINS",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "STRICT_ENV",
    "GradhealthPluginManager",
    "PluginInfo",
    "PluginWarning",
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
