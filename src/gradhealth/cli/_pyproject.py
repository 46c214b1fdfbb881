"""``[tool.gradhealth]`` in the nearest ``pyproject.toml``: read through the settings table, strictly.

A config file is untrusted input (it may sit in any folder above the working directory): a key that is not a
setting, a value that does not parse, or a setting that lets a file run code (``trust``, ``allow_global``,
``model``, ``model_kwargs``) is an error naming the key, the value and the file, never silently ignored.

Standard library only.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from gradhealth import settings as table
from gradhealth.errors import ConfigError

__all__ = ["PYPROJECT_TABLE", "find_pyproject", "read_pyproject"]

PYPROJECT_TABLE = "tool.gradhealth"


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or a parent folder."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_pyproject(start: Path) -> table.Layer:
    """Parse ``[tool.gradhealth]`` of the nearest pyproject.toml (keys with ``-`` or ``_``); empty if none.

    Raises:
        ConfigError: the file is not valid TOML, the table is not a table, a key is unknown (with a "did you
            mean"), given twice or lets a file run code, or a value is invalid; each names the file.
    """
    path = find_pyproject(start.resolve())
    if path is None:
        return {}
    source = f"{path} [{PYPROJECT_TABLE}]"
    data = _load_toml(path)
    section = data.get("tool", {}).get("gradhealth") if isinstance(data.get("tool"), dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(PYPROJECT_TABLE, section, "must be a table", source=str(path))
    return table.parse_layer(section, face=table.PYPROJECT, source=source)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("pyproject.toml", str(path), f"cannot be read ({exc})", source=str(path)) from exc
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the tomli backport
        try:
            tomllib = importlib.import_module("tomli")
        except ModuleNotFoundError:
            if PYPROJECT_TABLE in text:
                raise ConfigError(
                    PYPROJECT_TABLE, str(path), "reading it on Python 3.10 needs the tomli package", source=str(path)
                ) from None
            return {}
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("pyproject.toml", str(path), f"not valid TOML ({exc})", source=str(path)) from exc
    return data
