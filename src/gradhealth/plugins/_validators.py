"""What each hook must return: checks the manager applies to every implementation's non-``None`` result.

A third-party implementation whose result fails its check is reported and skipped like one that raised; a
built-in one is a gradhealth bug and raises :class:`~gradhealth.errors.PluginError`. Checks import torch only when
a result has to be checked against a torch type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["RESULT_CHECKS", "ResultCheck"]

#: (check, what was expected) for one hook.
ResultCheck = tuple[Callable[[Any], bool], str]


def _is_adapter(value: Any) -> bool:
    from gradhealth.adapters.base import Adapter

    return isinstance(value, Adapter)


def _named_list(kind: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(
            kind(v) and isinstance(getattr(v, "name", None), str) and v.name for v in value
        )

    return check


def _is_probe_class(value: Any) -> bool:
    from gradhealth.probes.base import Probe

    return isinstance(value, type) and issubclass(value, Probe)


def _is_task(value: Any) -> bool:
    from gradhealth.tasks.base import Task

    return isinstance(value, Task)


def _is_renderer_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and k and callable(v) for k, v in value.items())


def _is_finding_list(value: Any) -> bool:
    from gradhealth.report import Finding

    return isinstance(value, (list, tuple)) and all(isinstance(f, Finding) for f in value)


def _is_checkpoint(value: Any) -> bool:
    import torch

    state = getattr(value, "state_dict", None)
    return (
        hasattr(value, "path")
        and isinstance(state, Mapping)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    )


def _is_model_list(value: Any) -> bool:
    from torch import nn

    return isinstance(value, (list, tuple)) and all(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], nn.Module)
        for item in value
    )


RESULT_CHECKS: dict[str, ResultCheck] = {
    "gradhealth_adapt_model": (_is_adapter, "an Adapter"),
    "gradhealth_register_probes": (_named_list(_is_probe_class), "a list of Probe subclasses"),
    "gradhealth_register_tasks": (_named_list(_is_task), "a list of Task instances"),
    "gradhealth_register_renderers": (_is_renderer_map, "a dict of format name to callable"),
    "gradhealth_add_findings": (_is_finding_list, "a list of Finding"),
    "gradhealth_load_checkpoint": (
        _is_checkpoint,
        "a loaded checkpoint with .path and a .state_dict of str to torch.Tensor",
    ),
    "gradhealth_build_model": (_is_model_list, "a list of (name, torch.nn.Module) pairs"),
}
