"""Exception types raised at gradhealth's boundary.

Every error says what failed, where the offending value came from, and what to do about it, in one line.
All of them derive from :class:`GradhealthError`, so callers (the CLI, the pytest plugin) can turn them into
clean messages instead of tracebacks.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "CheckpointError",
    "ConfigError",
    "GradhealthError",
    "MemoryLimitError",
    "ModelCallError",
    "PluginError",
    "ProbeError",
    "UnsafeCheckpointError",
]


class GradhealthError(Exception):
    """Base class of every error gradhealth raises on purpose."""


class ConfigError(GradhealthError, ValueError):
    """A setting has an invalid value; the message names the setting and where it came from."""

    def __init__(self, name: str, value: object, problem: str, *, source: str = "argument") -> None:
        self.name = name
        self.value = value
        self.problem = problem
        self.source = source
        super().__init__(f"invalid {name} {value!r} from {source}: {problem}")


class AdapterError(GradhealthError, TypeError):
    """No adapter can drive the model, or the model's inputs/outputs do not fit the declared layout."""

    def __init__(self, message: str, *, model: object = None) -> None:
        self.model = model
        super().__init__(message)


class ModelCallError(GradhealthError, RuntimeError):
    """Calling the user's model raised; the message carries the model, the input shape and the cause."""

    def __init__(self, message: str, *, model: object = None) -> None:
        self.model = model
        super().__init__(message)


class CheckpointError(GradhealthError, ValueError):
    """A checkpoint cannot be read: missing, corrupt, unknown format, or mismatched with the model."""

    def __init__(self, message: str, *, path: object = None) -> None:
        self.path = path
        super().__init__(message)


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint would execute code when loaded, and the user did not pass an explicit trust flag."""

    def __init__(self, message: str, *, path: object = None, unsafe_globals: tuple[str, ...] = ()) -> None:
        self.unsafe_globals = unsafe_globals
        super().__init__(message, path=path)


class MemoryLimitError(CheckpointError):
    """An input would need more memory than the limit allows (``--memory-limit``); the message gives the estimate."""

    def __init__(self, message: str, *, path: object = None, estimate: int = 0, limit: int = 0) -> None:
        self.estimate = estimate
        self.limit = limit
        super().__init__(message, path=path)


class PluginError(GradhealthError, RuntimeError):
    """A plugin failed to load or raised inside a hook; the message names the plugin and the hook."""

    def __init__(self, message: str, *, plugin: str | None = None, hook: str | None = None) -> None:
        self.plugin = plugin
        self.hook = hook
        super().__init__(message)


class ProbeError(GradhealthError, RuntimeError):
    """A probe failed on a model in a way gradhealth did not foresee; the message names the probe and the model."""

    def __init__(self, message: str, *, probe: str | None = None) -> None:
        self.probe = probe
        super().__init__(message)
