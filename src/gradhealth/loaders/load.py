"""Load a checkpoint safely: weights through ``torch.load(weights_only=True)`` or safetensors, code only on trust.

Nothing here falls back to a full unpickle on its own: a file holding globals outside torch's allowlist is
refused with :class:`~gradhealth.errors.UnsafeCheckpointError` naming them, unless the user passed ``--trust``
or allowlisted each one with ``--allow-global``.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import re
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import nn

from gradhealth.errors import CheckpointError, GradhealthError, UnsafeCheckpointError
from gradhealth.loaders.contents import hyper_parameters, module_attributes
from gradhealth.loaders.detect import CODE_FORMATS, detect_format, hf_weight_files, inside_folder
from gradhealth.loaders.safety import refusal, resolve_allowed_globals, unsafe_globals
from gradhealth.memory import DEFAULT_LIMIT, check_memory, file_memory, tensors_memory

__all__ = ["STATE_DICT_KEYS", "Checkpoint", "LoadOptions", "extract_state_dict", "load_checkpoint", "time_limit"]

# Quoted text in an exception message (pickle's "invalid load key, 'x'", a decoder's bytes): file content.
_QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'|b?\"(?:[^\"\\]|\\.)*\"")

#: Keys under which training frameworks store the weights (Lightning, common training loops), tried in order.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_state", "weights")


class LoadOptions(TypedDict, total=False):
    """Options of the ``gradhealth_load_checkpoint`` hook."""

    trust: bool
    allow_globals: tuple[str, ...]
    #: bytes a file or its tensors may take (``None``: no limit); default :data:`gradhealth.memory.DEFAULT_LIMIT`
    memory_limit: int | None
    #: list names, shapes and dtypes only: tensors come back on the meta device, their data is never read
    metadata_only: bool


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: where it came from.
        format: the detected format (see :data:`gradhealth.loaders.detect.FORMATS`).
        state_dict: every tensor, by name.
        module: the module itself when the file held one (trusted pickles, TorchScript), else ``None``.
        key: the key the weights sat under in a training checkpoint (``"state_dict"``...), if any.
        metadata: extra information, e.g. a Hugging Face folder's ``config.json``.
    """

    path: Path
    format: str
    state_dict: dict[str, torch.Tensor]
    module: nn.Module | None = None
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def load_checkpoint(path: Path, options: LoadOptions | None = None) -> Checkpoint:
    """Load a checkpoint file or folder on the CPU.

    Raises:
        UnsafeCheckpointError: loading would run code and the user did not trust the file.
        MemoryLimitError: the file or its tensors would take more than ``options["memory_limit"]``.
        CheckpointError: the file is missing, corrupt, of an unknown format, or holds no tensors.
    """
    options = options or {}
    trust = bool(options.get("trust", False))
    allowed = tuple(options.get("allow_globals", ()))
    limit = options.get("memory_limit", DEFAULT_LIMIT)
    shapes_only = bool(options.get("metadata_only", False))
    fmt = detect_format(path)
    if fmt in CODE_FORMATS and not trust:
        raise refusal(path, fmt, [])
    if fmt != "hf_folder":
        check_memory(file_memory(path, fmt, metadata_only=shapes_only), limit, f"{path}: reading the file", path=path)
    try:
        if fmt == "hf_folder":
            return _load_folder(path, options)
        if fmt == "safetensors":
            checkpoint = Checkpoint(path, fmt, _safetensors_shapes(path) if shapes_only else _load_safetensors(path))
            if not shapes_only:
                _check_tensors(checkpoint, limit)
            return checkpoint
        obj = _load_object(path, fmt, trust, allowed, shapes_only)
    except GradhealthError:
        raise
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise _unreadable(path, fmt, exc) from exc
        raise UnsafeCheckpointError(
            f"{path} refused: unsafe: torch's weights-only loader refused it ({_torch_reason(exc)}); only --trust "
            "loads it, which may run code stored in the file (only for files you trust)",
            path=path,
        ) from exc
    except Exception as exc:  # torch and pickle raise anything on a damaged file
        raise _unreadable(path, fmt, exc) from exc
    state_dict, module, key = extract_state_dict(obj, path)
    saved = hyper_parameters(obj)
    metadata = {"hyper_parameters": saved[1], "hyper_parameters_key": saved[0]} if saved else {}
    checkpoint = Checkpoint(path, fmt, state_dict, module, key, metadata)
    if not shapes_only:
        _check_tensors(checkpoint, limit)
    return checkpoint


def _unreadable(path: Path, fmt: str, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{path} could not be read as {fmt} (truncated or corrupt?): {type(exc).__name__}: {_first_line(exc)}",
        path=path,
    )


def _torch_reason(exc: BaseException) -> str:
    """torch's own reason inside its long weights-only message, without its advice to load with weights_only=False."""
    text = str(exc)
    found = re.search(r"WeightsUnpickler error: *\n*(.+)", text)
    if found:
        reason = _first_line(found.group(1))
        operand = re.fullmatch(r"Unsupported operand (\d+)", reason)
        if operand and int(operand.group(1)) < 256:
            import pickletools

            opcodes: dict[str, Any] = getattr(pickletools, "code2op", {})  # public in practice, untyped
            opcode = opcodes.get(chr(int(operand.group(1))))
            reason += f" ({opcode.name} opcode)" if opcode else ""
        return reason
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not re.search(r"weights_only|Weights only load failed|Check the documentation", line)
    ]
    return _first_line(lines[-1]) if lines else "no reason given"


def _check_tensors(checkpoint: Checkpoint, limit: int | None) -> None:
    """Refuse meta tensors (shapes without data) and tensors whose logical size is above the memory limit.

    ``limit=None``: no memory limit.
    """
    meta = [name for name, t in checkpoint.state_dict.items() if t.is_meta]
    if meta:
        raise CheckpointError(
            f"{checkpoint.path} holds {len(meta)} tensors on the meta device (shapes without values, e.g. "
            f"{str(meta[0])[:80]!r}); save the checkpoint after the weights are materialised",
            path=checkpoint.path,
        )
    check_memory(
        tensors_memory(checkpoint.state_dict.values()),
        limit,
        f"{checkpoint.path}: its tensors (as rebuilt layers copy them)",
        path=checkpoint.path,
    )


@contextlib.contextmanager
def time_limit(seconds: float | None, path: object) -> Iterator[None]:
    """Raise :class:`CheckpointError` if the block runs longer than ``seconds`` (``None``: no limit).

    Uses ``SIGALRM``, so it applies on the main thread of a POSIX process only, and only when no one else's alarm
    is pending (pytest-timeout, the caller's own); elsewhere the block runs without a limit.
    """
    usable = (
        seconds is not None
        and hasattr(signal, "SIGALRM")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CheckpointError(
            f"{path}: reading it took longer than the load timeout of {seconds:g} s; refused (raise --load-timeout "
            "if the file is just large and slow to read)",
            path=path,
        )

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))  # type: ignore[arg-type]
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _first_line(exc: BaseException | str) -> str:
    # One line, without quoted bytes: an error must not carry a file's content into CI logs.
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return _QUOTED.sub("<...>", line)[:200]


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return dict(load_file(str(path), device="cpu"))


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _safetensors_shapes(path: Path) -> dict[str, torch.Tensor]:
    """Meta tensors of the names, shapes and dtypes in a safetensors header (no tensor data is read)."""
    from gradhealth.memory import safetensors_header

    shapes = {}
    for name, entry in safetensors_header(path).items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise CheckpointError(f"{path}: tensor {str(name)[:80]!r} has no valid shape in the header", path=path)
        dtype = _SAFETENSORS_DTYPES.get(str(entry.get("dtype")), torch.uint8)
        shapes[str(name)] = torch.empty(shape, dtype=dtype, device="meta")
    return shapes


def _load_object(path: Path, fmt: str, trust: bool, allowed: tuple[str, ...], shapes_only: bool = False) -> Any:
    if fmt == "torchscript":
        return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    if fmt == "torch_export":
        return torch.export.load(str(path)).state_dict
    if fmt == "pickle":
        with path.open("rb") as f:
            return pickle.load(f)  # only reached with --trust: the user vouched for the file
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False)
    allowed_objects = resolve_allowed_globals(allowed)  # refuses code-running names before the file is read
    unsafe = unsafe_globals(path, fmt, allowed)
    if unsafe:
        raise refusal(path, fmt, unsafe)
    with torch.serialization.safe_globals(allowed_objects):
        # map_location="meta": torch reads the pickle but no storage (zip files; legacy files are read whole)
        return torch.load(path, map_location="meta" if shapes_only else "cpu", weights_only=True)


def _load_folder(path: Path, options: LoadOptions) -> Checkpoint:
    config_file = inside_folder(path, "config.json")
    if config_file.stat().st_size > 2**24:
        raise CheckpointError(f"{config_file} is larger than 16 MiB; not a model configuration", path=path)
    try:
        config = json.loads(config_file.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_file} is not valid JSON ({type(exc).__name__})", path=path) from exc
    merged: dict[str, torch.Tensor] = {}
    for file in hf_weight_files(path):
        merged.update(load_checkpoint(file, options).state_dict)
    checkpoint = Checkpoint(path, "hf_folder", merged, metadata={"config": config})
    if not options.get("metadata_only"):
        _check_tensors(checkpoint, options.get("memory_limit", DEFAULT_LIMIT))
    return checkpoint


def _is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _named_tensors(obj: Mapping[Any, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    odd = next((key for key in obj if not isinstance(key, str)), None)
    if odd is not None:
        raise CheckpointError(
            f"{path} holds a tensor under the {type(odd).__name__} key {str(odd)[:40]!r}; a state_dict names "
            "its tensors with strings",
            path=path,
        )
    return dict(obj)


def extract_state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], nn.Module | None, str | None]:
    """Find the weights in a loaded object: a module, a bare state_dict, or a training checkpoint holding one.

    Returns:
        The state_dict, the module if ``obj`` held one, and the key the weights were found under.

    Raises:
        CheckpointError: no tensors found.
    """
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict()), obj, None
    if _is_tensor_mapping(obj):
        return _named_tensors(obj, path), None, None
    if isinstance(obj, Mapping):
        for key in (*STATE_DICT_KEYS, *obj.keys()):
            value = obj.get(key)
            if isinstance(value, nn.Module) or _is_tensor_mapping(value):
                state_dict, module, _ = extract_state_dict(value, path)
                return state_dict, module, str(key)
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors, None, None
    held = module_attributes(obj)
    if held:
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, which is not an nn.Module; nn.Module attributes found: "
            f"{', '.join(held)}; save the network itself (torch.save(obj.<attribute>)) and audit that file",
            path=path,
        )
    raise CheckpointError(
        f"{path} holds no weights: found a {type(obj).__name__} without tensors or a 'state_dict' entry",
        path=path,
    )
