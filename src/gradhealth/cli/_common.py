"""What the commands share: input expansion, clean errors (expected and unexpected) and output.

Standard library and typer only: ``gradhealth --help`` imports this module and must not import torch.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import stat
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer

from gradhealth.errors import ConfigError, GradhealthError
from gradhealth.render.escape import printable

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "INTERRUPTED",
    "clean_errors",
    "die",
    "error_line",
    "expand_inputs",
    "guard_internal_errors",
    "one_line",
    "write_output",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The exit code after Ctrl-C.
INTERRUPTED = 130

#: File endings collected from a folder given as input (a folder with config.json is one checkpoint).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pt2", ".pkl")


def die(message: str, code: int = 2, *, prefix: str = "gradhealth: error: ") -> NoReturn:
    """Print one line to stderr and exit (2: bad usage or input)."""
    error_line(message, prefix=prefix)
    raise typer.Exit(code)


def error_line(message: str, *, prefix: str = "gradhealth: error: ") -> None:
    """Print one line to stderr, control characters written out: messages quote file names, which may hold
    terminal escape sequences or line breaks."""
    typer.echo(f"{prefix}{printable(message)}", err=True)


@contextlib.contextmanager
def clean_errors(debug: bool) -> Iterator[None]:
    """Turn our errors (and unreadable files) into one line on stderr and exit 2; ``debug`` shows the traceback."""
    try:
        yield
    except (GradhealthError, ValueError, OSError) as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        die(one_line(exc))


def _passes_through(exc: BaseException) -> bool:
    """Typer's and click's own exits and usage errors: they already carry their exit code and message."""
    names = {cls.__module__.split(".", 1)[0] for cls in type(exc).__mro__}
    return isinstance(exc, (typer.Exit, typer.Abort)) or bool(names & {"click", "typer"})


def guard_internal_errors(func: F) -> F:
    """Make any unexpected exception of a command exit 2 with one line, never 1 (which means "a gate failed"),
    and Ctrl-C exit 130 (128 + SIGINT, as shells report it) with one line.

    ``--debug`` (when the command has it) prints the traceback too.
    """

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            # click would print "Aborted!" and exit 1, which means "a gate failed".
            die("interrupted", code=INTERRUPTED)
        except Exception as exc:
            if _passes_through(exc):
                raise
            hint = " (run with --debug for the traceback)" if "debug" in kwargs else ""
            if kwargs.get("debug"):
                traceback.print_exc(file=sys.stderr)
                hint = ""
            die(f"internal error: {type(exc).__name__}: {one_line(exc)}{hint}", prefix="gradhealth: ")

    return run  # type: ignore[return-value]


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, prefixed by its type when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


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


def write_output(text: str, output: Path | None, *, source: str = "--output") -> None:
    """Write to ``output`` (created with its folders) or to stdout.

    The report goes to a temporary file in the same folder, which then replaces ``output`` in one step: a write
    that fails (disk full, interrupted) leaves the previous report as it was.

    Raises:
        ConfigError: ``output`` cannot be written, naming the setting and where it came from.
    """
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        _replace_atomically(output, text.encode("utf-8"))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError("output", str(output), f"cannot write the report there: {reason}", source=source) from exc


def _replace_atomically(path: Path, data: bytes) -> None:
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~_umask()
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(temporary, mode)  # mkstemp creates 0600; a report is as readable as any file the user writes
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current
