"""What the commands share: settings from ``[tool.gradhealth]``, input expansion, clean errors and output.

Standard library and typer only: ``gradhealth --help`` imports this module and must not import torch.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import typer

from gradhealth.errors import ConfigError, GradhealthError

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "PYPROJECT_TABLE",
    "Settings",
    "clean_errors",
    "die",
    "expand_inputs",
    "find_pyproject",
    "load_settings",
    "write_output",
]

PYPROJECT_TABLE = "tool.gradhealth"

#: File endings collected from a folder given as input (a folder with config.json is one checkpoint).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pt2", ".pkl")


def die(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit (2: bad usage or input)."""
    typer.echo(f"gradhealth: error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def clean_errors(debug: bool) -> Iterator[None]:
    """Turn our errors (and unreadable files) into one line on stderr and exit 2; ``debug`` shows the traceback."""
    try:
        yield
    except (GradhealthError, ValueError, OSError) as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        die(one_line(exc))


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, prefixed by its type when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@dataclass
class Settings:
    """Settings from the nearest ``pyproject.toml``'s ``[tool.gradhealth]`` table, with where they came from."""

    values: dict[str, Any] = field(default_factory=dict)
    source: str = "default"

    def pick(self, name: str, cli_value: Any, default: Any = None) -> tuple[Any, str]:
        """The command-line value if given, else the pyproject value, else ``default``; with its source."""
        if cli_value is not None and cli_value != () and cli_value != []:
            return cli_value, f"--{name.replace('_', '-')}"
        if name in self.values:
            return self.values[name], self.source
        return default, "default"


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or a parent folder."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_settings(start: Path | None = None) -> Settings:
    """Read ``[tool.gradhealth]`` from the nearest pyproject.toml (keys with ``-`` or ``_``).

    Python 3.10 has no ``tomllib``: there, pyproject settings are read only if ``tomli`` is installed.

    Raises:
        ConfigError: the file is not valid TOML or the table is not a table.
    """
    path = find_pyproject((start or Path.cwd()).resolve())
    if path is None:
        return Settings()
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the tomli backport, if installed
        try:
            tomllib = importlib.import_module("tomli")
        except ModuleNotFoundError:
            return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("pyproject.toml", str(path), f"not valid TOML ({exc})", source=str(path)) from exc
    table = data.get("tool", {}).get("gradhealth", {})
    if not isinstance(table, dict):
        raise ConfigError(PYPROJECT_TABLE, table, "must be a table", source=str(path))
    return Settings({k.replace("-", "_"): v for k, v in table.items()}, f"{path} [{PYPROJECT_TABLE}]")


def expand_inputs(patterns: list[str]) -> list[str]:
    """Expand globs and folders into checkpoint inputs, in order, without duplicates.

    A folder holding ``config.json`` is one (Hugging Face-style) checkpoint; any other folder contributes the
    files inside it (recursively) with a checkpoint ending. Inputs that match nothing are kept, so they are
    reported as missing rather than silently dropped.
    """
    found: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        for match in matches or [pattern]:
            path = Path(match)
            if path.is_dir() and not (path / "config.json").is_file():
                inner = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
                found.extend(inner or [match])
            else:
                found.append(match)
    return list(dict.fromkeys(found))


def write_output(text: str, output: Path | None) -> None:
    """Write to ``output`` (created with its folders) or to stdout."""
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
