"""Plain facts about plugins: where each came from and how it fared, the environment switches, name rules."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gradhealth import hookspecs

__all__ = [
    "BUILTIN_PLUGINS",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "STRICT_ENV",
    "PluginInfo",
    "PluginWarning",
    "describe_exception",
    "normalize_name",
    "split_names",
]

#: Modules holding the built-in hook implementations, registered first under these names, in this order.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "gradhealth.adapters.builtin",
    "gradhealth.adapters.fallback",
    "gradhealth.tasks.builtin",
    "gradhealth.probes.builtin",
    "gradhealth.loaders.builtin",
    "gradhealth.render.builtin",
)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
DISABLE_ENV = "GRADHEALTH_DISABLE_PLUGINS"
STRICT_ENV = "GRADHEALTH_STRICT_PLUGINS"


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
    def is_builtin(self) -> bool:
        """Whether it is one of gradhealth's own plugins (whose errors are our bugs and propagate)."""
        return self.source == "builtin"

    @property
    def origin(self) -> str:
        """Human-readable origin, e.g. ``entry point 'example' (pkg.mod) from gradhealth-example-plugin 0.1.0``."""
        if self.is_builtin:
            return f"built-in module {self.module}"
        where = f"{self.source} {self.name!r} ({self.module})"
        if self.distribution:
            where += f" from {self.distribution} {self.version or ''}".rstrip()
        return where

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for ``gradhealth plugins --json``)."""
        return dataclasses.asdict(self)


def split_names(values: Iterable[str]) -> list[str]:
    """Comma-separated name lists, flattened and stripped."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def normalize_name(name: str) -> str:
    """Compare plugin and distribution names the way pip does (``-``, ``_`` and ``.`` are one, case-free)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def describe_exception(exc: BaseException) -> str:
    """``Type: first line of the message`` (the type alone when the message is empty)."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
