"""Read probe inputs from a file (``gradhealth audit --inputs FILE[:KEY]``), safely: nothing in it can run code.

``.npy`` and ``.npz`` through numpy with ``allow_pickle=False``, ``.safetensors`` through safetensors, ``.pt`` and
``.pth`` through ``torch.load(weights_only=True)``. A file holding several arrays (``.npz``, ``.safetensors``, a
``.pt`` dict) needs ``:KEY`` unless it holds exactly one. Anything else is refused with one line.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradhealth.errors import ConfigError

__all__ = ["INPUT_SUFFIXES", "load_input_file", "split_spec"]

#: The file endings ``--inputs`` reads.
INPUT_SUFFIXES = (".npy", ".npz", ".safetensors", ".pt", ".pth")

_SOURCE = "--inputs"


def split_spec(spec: str) -> tuple[Path, str | None]:
    """``FILE[:KEY]`` to the path and the key; a path that exists as written keeps any colon it has."""
    path = Path(spec)
    if path.exists() or ":" not in spec:
        return path, None
    file, _, key = spec.rpartition(":")
    return Path(file), key or None


def load_input_file(spec: str, *, source: str = _SOURCE) -> Any:
    """The array or tensor that ``FILE[:KEY]`` names.

    Raises:
        ConfigError: a missing file, an unknown ending, a pickle, a missing or unknown key, or an unreadable file;
            one line naming the file and what to do.
    """
    path, key = split_spec(spec)
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise ConfigError(
            "inputs", spec, f"unknown file type {suffix or '(none)'!r}: use {', '.join(INPUT_SUFFIXES)}", source=source
        )
    if not path.is_file():
        raise ConfigError("inputs", spec, "no such file", source=source)
    try:
        if suffix == ".npy":
            if key is not None:
                raise ConfigError("inputs", spec, "a .npy file holds one array: drop the :KEY", source=source)
            return _load_numpy(path)
        if suffix == ".npz":
            with _load_numpy(path) as archive:
                return archive[_pick(spec, key, list(archive.files), source)]
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path), device="cpu")
            return tensors[_pick(spec, key, list(tensors), source)]
        return _from_torch_file(spec, path, key, source)
    except ConfigError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise ConfigError("inputs", spec, f"cannot read it: {_first_line(exc)}", source=source) from exc


def _load_numpy(path: Path) -> Any:
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError("it holds pickled Python objects, which are refused: save a numeric array") from exc
        raise


def _from_torch_file(spec: str, path: Path, key: str | None, source: str) -> Any:
    import torch

    try:
        with warnings.catch_warnings():  # torch's notes on the pickle protocol: the refusal below says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(
            "inputs",
            spec,
            "it needs code to load (not plain tensors): save a tensor or a dict of tensors",
            source=source,
        ) from exc
    if isinstance(obj, torch.Tensor):
        if key is not None:
            raise ConfigError("inputs", spec, "the file holds one tensor: drop the :KEY", source=source)
        return obj
    if isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj[_pick(spec, key, [str(k) for k in obj], source)]
    raise ConfigError(
        "inputs", spec, f"holds a {type(obj).__name__}: save a tensor or a dict of tensors", source=source
    )


def _pick(spec: str, key: str | None, keys: list[str], source: str) -> str:
    if key is None:
        if len(keys) == 1:
            return keys[0]
        shown = ", ".join(keys[:10]) or "nothing"
        raise ConfigError("inputs", spec, f"holds several arrays ({shown}): name one as FILE:KEY", source=source)
    if key not in keys:
        raise ConfigError("inputs", spec, f"no array {key!r}; it holds {', '.join(keys[:10])}", source=source)
    return key


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
