"""Match this run's entries with a baseline's on a stable key, whatever directory either run was started from.

The key of an entry is ``(checkpoint path relative to the project root, layer)``: the project root is the folder
of the nearest ``pyproject.toml`` (else the working directory), and ``gradhealth audit`` records the relative path
in each report as ``model["checkpoint_key"]``. Baselines written before that key existed are matched by their path
made relative the same way, then by the longest common tail of path segments (same layer, unique), and, for such
old baselines only, by the display name, then the layer name where it is unique. Entries of this run with no
baseline entry are *new*; baseline entries this run did not audit are *missing*; neither fails a gate.

Standard library only (no torch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from gradhealth.cli._pyproject import find_pyproject

if TYPE_CHECKING:
    from gradhealth.render.registry import NamedReport
    from gradhealth.report import Report

__all__ = ["BaselineMatch", "checkpoint_key", "match_baseline", "project_root"]


def project_root(start: Path | None = None) -> Path:
    """The folder of the nearest ``pyproject.toml`` above ``start`` (the working directory), else ``start``."""
    here = (start or Path.cwd()).resolve()
    found = find_pyproject(here)
    return found.parent if found is not None else here


def checkpoint_key(path: str, root: Path | None = None) -> str:
    """``path`` relative to the project root as a POSIX path (absolute if it lies outside the root)."""
    base = root or project_root()
    resolved = Path(os.path.abspath(path))
    try:
        return resolved.relative_to(base).as_posix()
    except ValueError:
        return resolved.as_posix()


def _stored_key(entry: NamedReport) -> str:
    key = entry.report.model.get("checkpoint_key") if entry.report is not None else None
    if isinstance(key, str) and key:
        return key
    return PurePosixPath(Path(entry.path).as_posix()).as_posix().removeprefix("./")


def _model_info(entry: NamedReport) -> dict[str, object]:
    return entry.report.model if entry.report is not None else {}


def _common_tail(a: str, b: str) -> int:
    pa, pb = PurePosixPath(a).parts, PurePosixPath(b).parts
    n = 0
    while n < min(len(pa), len(pb)) and pa[-1 - n] == pb[-1 - n]:
        n += 1
    return n


@dataclass
class BaselineMatch:
    """The baseline report for each entry of this run (``None``: new), and the baseline entries left over."""

    reports: list[Report | None]
    missing: list[str]


def match_baseline(entries: list[NamedReport], baseline: list[NamedReport]) -> BaselineMatch:
    """Pair each audited entry with its baseline entry (see the module docstring for the rules)."""
    usable = [b for b in baseline if b.report is not None]
    if len(usable) == 1 and len(baseline) == 1:  # a baseline of one report applies to every input
        return BaselineMatch([usable[0].report for _ in entries], [])
    used: set[int] = set()
    reports: list[Report | None] = []
    for entry in entries:
        index = _find(entry, usable, used)
        if index is not None:
            used.add(index)
        reports.append(usable[index].report if index is not None else None)
    missing = [b.name for i, b in enumerate(usable) if i not in used]
    return BaselineMatch(reports, missing)


def _find(entry: NamedReport, baseline: list[NamedReport], used: set[int]) -> int | None:
    free = [i for i in range(len(baseline)) if i not in used]
    if entry.report is None:
        return None
    key = _stored_key(entry)
    same_layer = [i for i in free if baseline[i].layer == entry.layer]
    exact = [i for i in same_layer if _stored_key(baseline[i]) == key]
    if exact:
        return exact[0]
    tails = {i: _common_tail(_stored_key(baseline[i]), key) for i in same_layer}
    best = max(tails.values(), default=0)
    if best > 0 and list(tails.values()).count(best) == 1:
        return next(i for i, n in tails.items() if n == best)
    legacy = [i for i in free if "checkpoint_key" not in _model_info(baseline[i])]
    for attribute in ("name", "layer"):
        value = getattr(entry, attribute)
        hits = [i for i in legacy if value is not None and getattr(baseline[i], attribute) == value]
        if len(hits) == 1:
            return hits[0]
    return None
