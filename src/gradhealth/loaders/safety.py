"""Which globals a pickled checkpoint would import, found statically, without unpickling anything.

``torch.load(weights_only=True)`` refuses any global outside torch's allowlist; this module names the refused
globals up front so the refusal can say exactly what the file holds, what it is (a class, a function, a callable
that runs code), and which flag, if any, would load it.

What counts as unsafe, beyond a global outside the allowlist:

* a global whose name is computed on the unpickler's stack (``STACK_GLOBAL`` over anything but two literal
  strings), one taken from the extension registry (``EXT1``/``EXT2``/``EXT4``), and an opcode the scanner does not
  know: the file's imports cannot be named, so nothing can be allowed and only ``--trust`` would load it;
* a zip archive holding two entries of one name (``zipfile`` reads the last, torch the first: the scanner would
  read another pickle than the loader), or two ``data.pkl``;
* any global in the header pickles of a legacy (non-zip) torch file, which hold plain numbers and strings.

Some callables run code, start processes, import modules or touch files when called (:data:`NEVER_ALLOWED`):
they are never suggested and ``--allow-global`` refuses them, whatever else the file holds.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickletools
import re
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from gradhealth.errors import CheckpointError, ConfigError, UnsafeCheckpointError
from gradhealth.loaders._imports import import_object

__all__ = [
    "COMPUTED_GLOBAL",
    "EXTENSION_GLOBAL",
    "NEVER_ALLOWED",
    "UNKNOWN_OPCODE",
    "global_kind",
    "globals_in_pickle",
    "is_never_allowed",
    "refusal",
    "resolve_allowed_globals",
    "unsafe_globals",
]

#: Stands for a ``STACK_GLOBAL`` whose module or name is not a literal string in the pickle.
COMPUTED_GLOBAL = "<a global with a computed name>"
#: Stands for a global taken from the copyreg extension registry (``EXT1``/``EXT2``/``EXT4``).
EXTENSION_GLOBAL = "<a global from the extension registry>"
#: Stands for an opcode the scanner does not know.
UNKNOWN_OPCODE = "<an unknown pickle opcode>"

#: Modules whose every callable may run code, start a process, import, unpickle or touch files when called (a
#: name is never allowed when it lies in one of them). ``builtins`` is here as a whole: the built-in types that
#: checkpoints hold are in torch's allowlist already, and the rest (``exec``, ``eval``, ``getattr``, ``open``,
#: ``__import__``, ``bytearray`` of 3 GB...) have no place in a file of weights.
NEVER_ALLOWED = frozenset(
    {
        "__builtin__",
        "builtins",
        "_ctypes",
        "_frozen_importlib",
        "_frozen_importlib_external",
        "_imp",
        "_io",
        "_operator",
        "_functools",
        "_pickle",
        "_posixsubprocess",
        "_thread",
        "_winapi",
        "asyncio",
        "bdb",
        "cloudpickle",
        "code",
        "codeop",
        "commands",
        "copyreg",
        "cProfile",
        "ctypes",
        "dill",
        "functools",
        "glob",
        "imp",
        "importlib",
        "inspect",
        "io",
        "joblib",
        "marshal",
        "msvcrt",
        "multiprocessing",
        "nt",
        "numpy.ctypeslib",
        "numpy.distutils",
        "numpy.f2py",
        "numpy.lib.npyio",
        "numpy.load",
        "numpy.testing",
        "operator",
        "os",
        "pdb",
        "pickle",
        "pip",
        "platform",
        "posix",
        "profile",
        "pty",
        "pydoc",
        "runpy",
        "setuptools",
        "shutil",
        "signal",
        "site",
        "socket",
        "subprocess",
        "sys",
        "tempfile",
        "threading",
        "timeit",
        "torch._dynamo",
        "torch._inductor",
        "torch.hub",
        "torch.jit",
        "torch.load",
        "torch.ops",
        "torch.package",
        "torch.serialization",
        "torch.utils.cpp_extension",
        "trace",
        "types",
        "urllib",
        "webbrowser",
        "yaml",
        "zipimport",
    }
)

_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"})
_EXT_OPS = frozenset({"EXT1", "EXT2", "EXT4"})
# The pickles of a legacy torch file: magic number, protocol version, system info, the object, the storage keys.
_LEGACY_PICKLES = 5
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def globals_in_pickle(stream: IO[bytes]) -> set[str]:
    """The ``module.name`` globals one pickle in ``stream`` references (``GLOBAL``, ``INST``, ``STACK_GLOBAL``).

    A global the scanner cannot name is reported as :data:`COMPUTED_GLOBAL`, :data:`EXTENSION_GLOBAL` or
    :data:`UNKNOWN_OPCODE`, never as a made-up name. Reads up to the pickle's STOP opcode, leaving the stream
    just after it.

    Raises:
        ValueError, EOFError: the pickle is truncated or corrupt.
    """
    found: set[str] = set()
    memo: dict[int, Any] = {}
    recent: list[Any] = []
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            name = opcode.name
            if name in {"GLOBAL", "INST"}:  # INST imports and calls in one opcode: the same global
                module, _, attr = str(arg).partition(" ")
                found.add(_py3_name(module, attr))
                recent.append(None)
            elif name == "STACK_GLOBAL":
                pair: list[Any] = recent[-2:] if len(recent) >= 2 else [None, None]
                literal = all(isinstance(part, str) for part in pair)
                found.add(_py3_name(pair[0], pair[1]) if literal else COMPUTED_GLOBAL)
                recent.append(None)
            elif name in _EXT_OPS:
                found.add(EXTENSION_GLOBAL)
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
    except ValueError as exc:
        if "unknown" not in str(exc):
            raise
        found.add(UNKNOWN_OPCODE)
    return found


def _py3_name(module: str, attr: str) -> str:
    # Protocol-2 pickles (torch.save's default) spell Python 2 names; unpickling maps them, so must we.
    if (module, attr) in _compat_pickle.NAME_MAPPING:
        module, attr = _compat_pickle.NAME_MAPPING[(module, attr)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    name = f"{module}.{attr}"
    return name if _DOTTED.match(name) else COMPUTED_GLOBAL


# In torch's allowlist, but bytearray(3 * 10**9) allocates 3 GB from a few bytes of pickle: weights never need it.
_UNBOUNDED = frozenset({"builtins.bytearray"})


def _safe_names() -> set[str]:
    # Private, but it is the allowlist weights_only loading applies: naming anything else would mislead.
    unpickler: Any = importlib.import_module("torch._weights_only_unpickler")
    allowed = set(unpickler._get_allowed_globals()) | set(unpickler._get_user_allowed_globals())
    return allowed - _UNBOUNDED


def is_never_allowed(name: str) -> bool:
    """Whether ``module.name`` lies in a module of :data:`NEVER_ALLOWED` (or cannot be named at all)."""
    if not _DOTTED.match(name):
        return True
    parts = name.split(".")
    return any(".".join(parts[:i]) in NEVER_ALLOWED for i in range(1, len(parts) + 1))


def _pickles_to_scan(path: Path, fmt: str) -> list[tuple[str, bytes | None]]:
    """``[(label, bytes)]`` of every pickle the loader will read (``None``: read from the file in order)."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        twice = sorted(n for n, count in Counter(names).items() if count > 1)
        if twice:
            raise UnsafeCheckpointError(
                f"{path} refused: unsafe: the zip archive holds {len(twice)} entries twice ({twice[0]}...); the "
                "scanner and torch would read different copies; re-save the checkpoint with torch.save",
                path=path,
            )
        data = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(data) != 1:
            raise CheckpointError(
                f"{path} holds {len(data)} data.pkl entries, not one; re-save the checkpoint with torch.save",
                path=path,
            )
        return [(n, archive.read(n)) for n in names if n.endswith(".pkl")]


def unsafe_globals(path: Path, fmt: str, allowed: Iterable[str] = ()) -> list[str]:
    """Globals in a torch checkpoint that ``weights_only`` loading would refuse, minus ``allowed``, sorted.

    The placeholders :data:`COMPUTED_GLOBAL`, :data:`EXTENSION_GLOBAL` and :data:`UNKNOWN_OPCODE` stand for
    imports that cannot be named; any global in a legacy file's header pickles is unsafe too.

    Raises:
        UnsafeCheckpointError: a zip archive holds an entry twice.
        CheckpointError: the file is corrupt or truncated.
    """
    import io

    names: set[str] = set()
    try:
        if fmt == "torch_zip":
            for _label, data in _pickles_to_scan(path, fmt):
                names |= globals_in_pickle(io.BytesIO(data or b""))
        else:
            with path.open("rb") as f:
                for index in range(_LEGACY_PICKLES):
                    found = globals_in_pickle(f)
                    # The header pickles hold a number, a number and a dict of numbers: no global is legitimate.
                    names |= found if index == 3 else {n if n.startswith("<") else f"{n} (header)" for n in found}
                    if UNKNOWN_OPCODE in found:
                        break
    except CheckpointError:
        raise
    except (ValueError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {_no_content(exc)})", path=path
        ) from exc
    safe = _safe_names()
    return sorted(n for n in names - set(allowed) if n not in safe or n.endswith(" (header)"))


def _no_content(exc: BaseException) -> str:
    # pickletools quotes the bytes it choked on; an error line must not carry file content into CI logs.
    text = str(exc).splitlines()[0] if str(exc) else ""
    return re.sub(r"b?'[^']*'|b?\"[^\"]*\"", "<bytes>", text)[:120]


def resolve_allowed_globals(names: Iterable[str]) -> list[Any]:
    """Import each ``module.Name`` the user allowlisted with ``--allow-global``.

    Raises:
        ConfigError: a name is not of the form ``module.Name``, cannot be imported, or is (or is an alias of) a
            callable that runs code (:data:`NEVER_ALLOWED`).
    """
    objects = []
    for name in names:
        module_name, _, attr = name.rpartition(".")
        if not module_name:
            raise ConfigError("allow_global", name, "use the full dotted name, e.g. mypkg.config.TrainConfig")
        if is_never_allowed(name):
            raise ConfigError("allow_global", name, _never_reason(name))
        try:
            obj = import_object(module_name, attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError("allow_global", name, f"cannot import it ({exc})") from exc
        real = f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', None)}"
        if not isinstance(obj, type) and is_never_allowed(real) and _DOTTED.match(real):
            raise ConfigError("allow_global", name, f"it is {real}: {_never_reason(real)}")
        objects.append(obj)
    return objects


def _never_reason(name: str) -> str:
    return (
        "a callable that can run code, start processes or touch files when unpickled; it is never allowed "
        "(--allow-global takes your own classes, e.g. mypkg.config.TrainConfig)"
    )


def global_kind(name: str) -> str:
    """What an unsafe name is: ``code`` (never allowed), ``unnamed`` (a placeholder), ``class`` or ``function``."""
    if name.startswith("<"):
        return "unnamed"
    if name.endswith(" (header)") or is_never_allowed(name):
        return "code"
    return "class" if name.rsplit(".", 1)[-1][:1].isupper() else "function"


def refusal(path: Path, fmt: str, names: list[str]) -> UnsafeCheckpointError:
    """The one-line error for a checkpoint that would run code when loaded.

    ``--allow-global`` is suggested only when every name is a class outside :data:`NEVER_ALLOWED`; callables
    that run code are named as such and only ``--trust`` (which would run them) is mentioned.
    """
    if fmt in {"torchscript", "torch_export", "pickle"}:
        what = {"torchscript": "TorchScript code", "torch_export": "a torch.export program", "pickle": "a pickle"}
        return UnsafeCheckpointError(
            f"{path} is {what[fmt]}: loading it runs code stored in the file; pass --trust if you trust its source",
            path=path,
        )
    groups: dict[str, list[str]] = {"code": [], "unnamed": [], "function": [], "class": []}
    for name in names:
        groups[global_kind(name)].append(name)
    parts = []
    if groups["code"]:
        parts.append(f"callables that run code or touch the system ({', '.join(groups['code'])})")
    if groups["unnamed"]:
        parts.append(f"imports the scanner cannot name ({', '.join(n.strip('<>') for n in groups['unnamed'])})")
    if groups["function"]:
        parts.append(f"functions called when unpickled ({', '.join(groups['function'])})")
    if groups["class"]:
        parts.append(f"classes outside torch's allowlist ({', '.join(groups['class'])})")
    held = "; ".join(parts)
    if groups["class"] and not (groups["code"] or groups["unnamed"] or groups["function"]):
        flags = " ".join(f"--allow-global {n}" for n in groups["class"])
        advice = f"pass {flags} if you know these classes, or --trust to unpickle everything (only for files you trust)"
    elif groups["code"] or groups["unnamed"]:
        advice = "do not load it: --trust would run that code (only for a file you wrote yourself)"
    else:
        advice = "only --trust loads it, which calls them (only for files you trust)"
    return UnsafeCheckpointError(
        f"{path} refused: unsafe: it holds {held}; {advice}",
        path=path,
        unsafe_globals=tuple(names),
    )
