"""Which globals a pickled checkpoint would import, found statically, without unpickling anything.

``torch.load(weights_only=True)`` refuses any global outside torch's allowlist; this module names the refused
globals up front so the refusal can say exactly what the file holds and which flag would load it.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import io
import pickletools
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from gradhealth.errors import CheckpointError, ConfigError, UnsafeCheckpointError
from gradhealth.loaders._imports import import_object

__all__ = ["globals_in_pickle", "refusal", "resolve_allowed_globals", "unsafe_globals"]

_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"})


def globals_in_pickle(stream: IO[bytes]) -> set[str]:
    """The ``module.name`` globals one pickle in ``stream`` references (GLOBAL and STACK_GLOBAL opcodes).

    Reads up to the pickle's STOP opcode, leaving the stream just after it.
    """
    found: set[str] = set()
    memo: dict[int, Any] = {}
    recent: list[Any] = []
    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        if name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            found.add(_py3_name(module, attr))
            recent.append(None)
        elif name == "STACK_GLOBAL" and len(recent) >= 2:
            found.add(f"{recent[-2]}.{recent[-1]}")
            recent.append(None)
        elif name in _STRING_OPS:
            recent.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in {"BINPUT", "LONG_BINPUT", "PUT"}:
            memo[int(str(arg))] = recent[-1] if recent else None
        elif name in {"BINGET", "LONG_BINGET", "GET"}:
            recent.append(memo.get(int(str(arg))))
        elif name == "STOP":
            break
        else:
            recent.append(None)
    return found


def _py3_name(module: str, attr: str) -> str:
    # Protocol-2 pickles (torch.save's default) spell Python 2 names; unpickling maps them, so must we.
    if (module, attr) in _compat_pickle.NAME_MAPPING:
        module, attr = _compat_pickle.NAME_MAPPING[(module, attr)]
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}"


def _safe_names() -> set[str]:
    # Private, but it is the allowlist weights_only loading applies: naming anything else would mislead.
    unpickler: Any = importlib.import_module("torch._weights_only_unpickler")
    return set(unpickler._get_allowed_globals()) | set(unpickler._get_user_allowed_globals())


def unsafe_globals(path: Path, fmt: str, allowed: Iterable[str] = ()) -> list[str]:
    """Globals in a torch checkpoint that ``weights_only`` loading would refuse, minus ``allowed``, sorted.

    Raises:
        CheckpointError: the file is corrupt or truncated.
    """
    try:
        if fmt == "torch_zip":
            with zipfile.ZipFile(path) as archive:
                data = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
                names = globals_in_pickle(io.BytesIO(archive.read(data)))
        else:
            with path.open("rb") as f:
                for _ in range(3):  # the legacy header: magic number, protocol version, system info
                    globals_in_pickle(f)
                names = globals_in_pickle(f)
    except (ValueError, EOFError, StopIteration, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__}: {exc})", path=path) from exc
    return sorted(names - _safe_names() - set(allowed))


def resolve_allowed_globals(names: Iterable[str]) -> list[Any]:
    """Import each ``module.Name`` the user allowlisted with ``--allow-global``.

    Raises:
        ConfigError: a name is not of the form ``module.Name`` or cannot be imported.
    """
    objects = []
    for name in names:
        module_name, _, attr = name.rpartition(".")
        if not module_name:
            raise ConfigError("allow_global", name, "use the full dotted name, e.g. mypkg.config.TrainConfig")
        try:
            obj = import_object(module_name, attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError("allow_global", name, f"cannot import it ({exc})") from exc
        objects.append(obj)
    return objects


def refusal(path: Path, fmt: str, names: list[str]) -> UnsafeCheckpointError:
    """The one-line error for a checkpoint that would run code when loaded."""
    if fmt in {"torchscript", "torch_export", "pickle"}:
        what = {"torchscript": "TorchScript code", "torch_export": "a torch.export program", "pickle": "a pickle"}
        return UnsafeCheckpointError(
            f"{path} is {what[fmt]}: loading it runs code stored in the file; pass --trust if you trust its source",
            path=path,
        )
    listed = ", ".join(names)
    flags = " ".join(f"--allow-global {n}" for n in names)
    return UnsafeCheckpointError(
        f"{path} refused: it holds unsafe globals {listed} that would run code when unpickled; pass {flags} "
        "to allow these classes, or --trust to unpickle everything (only for files you trust)",
        path=path,
        unsafe_globals=tuple(names),
    )
