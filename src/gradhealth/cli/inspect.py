"""``gradhealth inspect``: what a checkpoint holds and whether it is safe to load, without auditing it."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from gradhealth import settings as table
from gradhealth.cli._common import clean_errors, error_line, one_line, write_output
from gradhealth.cli._options import check_format, cli_option
from gradhealth.settings import SETTINGS

__all__ = ["FORMATS", "inspect_checkpoint", "register"]

#: The output formats of ``inspect`` (the names are those of every command; see docs/cli.md).
FORMATS = ("table", "json")

HELP = """Show a checkpoint's format, tensors, recurrent layers found and safety verdict.

Nothing in the file is executed: unsafe globals are found by reading the pickle, not by running it.

Examples:

  gradhealth inspect ckpt.pt

  gradhealth inspect model.safetensors --format json
"""


def _safety(path: Path, fmt: str, allowed: tuple[str, ...]) -> tuple[str, list[str]]:
    from gradhealth.loaders.detect import CODE_FORMATS
    from gradhealth.loaders.safety import global_kind, unsafe_globals

    if fmt in CODE_FORMATS:
        return "needs --trust (the file holds code)", []
    if fmt in {"torch_zip", "torch_legacy"}:
        names = unsafe_globals(path, fmt, allowed)
        if names:
            flags = "--trust or --allow-global" if all(global_kind(n) == "class" for n in names) else "--trust"
            return f"needs {flags} (unsafe globals: {', '.join(names)})", names
    return "safe", []


def inspect_checkpoint(
    path: Path, *, trust: bool = False, allow_globals: tuple[str, ...] = (), nonlinearity: str | None = None
) -> dict[str, Any]:
    """What ``gradhealth inspect`` reports, as plain data.

    A rebuilt ``nn.RNN`` layer lists its nonlinearity: ``nonlinearity`` if given, else the one ``audit`` would
    assume, with ``assumption`` saying so.

    Raises:
        CheckpointError: the input is missing, corrupt or of an unknown format.
    """
    from gradhealth.loaders import detect_format
    from gradhealth.loaders.models import ASSUMED_NONLINEARITY, nonlinearity_assumption
    from gradhealth.loaders.reconstruct import layer_specs
    from gradhealth.plugins import open_checkpoint

    fmt = detect_format(path)
    verdict, unsafe = _safety(path, fmt, allow_globals)
    info: dict[str, Any] = {"path": str(path), "format": fmt, "safety": verdict, "unsafe_globals": unsafe}
    if verdict != "safe" and not trust:
        info.update(tensors=None, recurrent_layers=None)
        return info
    from gradhealth.loaders.load import time_limit
    from gradhealth.memory import DEFAULT_LIMIT

    options = {"trust": trust, "allow_globals": allow_globals, "memory_limit": DEFAULT_LIMIT, "metadata_only": True}
    with time_limit(table.SETTINGS["load_timeout"].default, path):
        checkpoint = open_checkpoint(path, options)
    info["state_dict_key"] = checkpoint.key
    info["tensors"] = [
        {"name": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in checkpoint.state_dict.items()
    ]
    layers = []
    for spec in layer_specs(checkpoint.state_dict):
        layer: dict[str, Any] = {"name": spec.prefix or "rnn", "module": spec.describe()}
        if spec.family == "RNN":
            layer["nonlinearity"] = nonlinearity or ASSUMED_NONLINEARITY
            layer["assumption"] = nonlinearity_assumption(spec.family, nonlinearity)
        layers.append(layer)
    info["recurrent_layers"] = layers
    return info


def _layer_line(layer: dict[str, Any]) -> str:
    line = f"    {layer['name']}: {layer['module']}"
    if "nonlinearity" in layer:
        line += f" {layer['nonlinearity']}"
    if layer.get("assumption"):
        line += f" ({layer['assumption']})"
    return line


def _as_text(info: dict[str, Any]) -> str:
    from gradhealth.render.escape import printable

    return "".join(printable(line) + "\n" for line in _text_lines(info))


def _text_lines(info: dict[str, Any]) -> list[str]:
    """The listing, one line each; the caller writes out control characters (names come from the file)."""
    lines = [f"{info['path']}", f"  format: {info['format']}", f"  safety: {info['safety']}"]
    if info.get("state_dict_key"):
        lines.append(f"  weights under: {info['state_dict_key']!r}")
    if info["tensors"] is None:
        lines.append("  tensors: not read (the file is not safe to load without the flag above)")
        return lines
    lines.append(f"  tensors ({len(info['tensors'])}):")
    lines += [f"    {t['name']}  {tuple(t['shape'])}  {t['dtype']}" for t in info["tensors"]]
    layers = info["recurrent_layers"]
    lines.append(f"  recurrent layers found ({len(layers)}):" if layers else "  recurrent layers found: none")
    lines += [_layer_line(layer) for layer in layers]
    return lines


def inspect_command(
    inputs: Annotated[list[Path], typer.Argument(help="Checkpoint files or folders.", show_default=False)],
    trust: bool = cli_option("trust", help_text="Load files that hold code, to list their tensors."),
    allow_global: list[str] | None = cli_option("allow_global"),
    nonlinearity: str | None = cli_option("nonlinearity"),
    output_format: str = cli_option("format", help_text="Output format: table or json."),
    output: str | None = cli_option("output"),
    debug: bool = cli_option("debug"),
) -> None:
    """Show a checkpoint's format, tensors, recurrent layers and safety verdict."""
    with clean_errors(debug):
        check_format(output_format, FORMATS, command="inspect")
        given = SETTINGS["nonlinearity"].parse(nonlinearity, source="--nonlinearity")
        infos, errors = [], []
        for path in inputs:
            try:
                infos.append(
                    inspect_checkpoint(path, trust=trust, allow_globals=tuple(allow_global or ()), nonlinearity=given)
                )
            except Exception as exc:  # one bad input is its own error line; the others are still listed
                if debug:
                    traceback.print_exc(file=sys.stderr)
                errors.append(_error_line(path, exc, debug=debug))
        if infos:
            if output_format == "json":
                text = json.dumps(infos[0] if len(infos) == 1 else infos, indent=2)
            else:
                text = "".join(_as_text(info) for info in infos)
            write_output(text, Path(output) if output else None)
    for line in errors:
        error_line(line)
    if errors:
        raise typer.Exit(2)


def _error_line(path: Path, exc: Exception, *, debug: bool) -> str:
    from gradhealth.errors import GradhealthError

    message = str(exc).strip() if isinstance(exc, GradhealthError) else one_line(exc)
    if not isinstance(exc, (GradhealthError, OSError, ValueError)):
        hint = "" if debug else " (run with --debug for the traceback)"
        message = f"internal error: {type(exc).__name__}: {message}{hint}"
    return message if str(path) in message else f"{path}: {message}"


def register(app: typer.Typer) -> None:
    """Add ``inspect`` to the app."""
    app.command("inspect", help=HELP, no_args_is_help=True)(inspect_command)
