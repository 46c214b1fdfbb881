"""Checkpoint format detection by content, never by file name (standard library only).

Formats: ``torch_zip`` (``torch.save``), ``torch_legacy`` (``_use_new_zipfile_serialization=False``),
``torchscript``, ``torch_export`` (``.pt2`` archives), ``pickle`` (a plain pickle, not a torch file),
``safetensors`` and ``hf_folder`` (a folder holding ``config.json`` and weight files).
"""

from __future__ import annotations

import json
import os
import stat
import struct
import zipfile
from pathlib import Path

from gradhealth.errors import CheckpointError

__all__ = [
    "CODE_FORMATS",
    "FORMATS",
    "WEIGHT_FILE_SUFFIXES",
    "detect_format",
    "hf_weight_files",
    "inside_folder",
    "regular_file",
]

FORMATS = ("torch_zip", "torch_legacy", "torchscript", "torch_export", "pickle", "safetensors", "hf_folder")

#: Formats whose loading runs code stored in the file: only with ``--trust``.
CODE_FORMATS = frozenset({"torchscript", "torch_export", "pickle"})

#: Weight files looked for inside a Hugging Face-style folder.
WEIGHT_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80
# The first pickle of a legacy torch.save file: the magic number 0x1950A86A20F9469CFC6C.
_LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def detect_format(path: Path) -> str:
    """Return the format name of a checkpoint file or folder.

    Raises:
        CheckpointError: the path is missing, empty, truncated, or holds no format gradhealth reads.
    """
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder", path=path)
    if path.is_dir():
        if (path / "config.json").is_file() and hf_weight_files(path):
            return "hf_folder"
        raise CheckpointError(
            f"{path} is a folder without config.json and weight files; pass the checkpoint files inside it",
            path=path,
        )
    regular_file(path)
    with path.open("rb") as f:
        head = f.read(64)
    size = path.stat().st_size
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes); re-save the checkpoint", path=path)
    if head.startswith(_ZIP_MAGIC):
        return _zip_format(path)
    if head[0] == _PICKLE_PROTO and len(head) > 2:
        return "torch_legacy" if head[2:].startswith(_LEGACY_MAGIC) else "pickle"
    if _is_safetensors(head, size):
        return "safetensors"
    raise CheckpointError(
        f"{path} is not a checkpoint format gradhealth reads; expected a torch.save "
        "file, safetensors, TorchScript, a .pt2 archive or a folder with config.json",
        path=path,
    )


def _zip_format(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path} is a truncated or corrupt zip archive ({exc}); re-save it", path=path) from exc
    inner = {name.split("/", 1)[1] if "/" in name else name for name in names}
    if "archive_format" in inner or any(n.startswith("models/") for n in inner):
        return "torch_export"
    if "constants.pkl" in inner or any(n.startswith("code/") for n in inner):
        return "torchscript"
    if "data.pkl" in inner:
        return "torch_zip"
    raise CheckpointError(f"{path} is a zip archive but not a torch checkpoint (no data.pkl inside)", path=path)


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= size - 8 and head[8:9] == b"{"


def regular_file(path: Path) -> Path:
    """``path`` if it is a regular file (after symlinks); a FIFO, socket or device would block or never end.

    Raises:
        CheckpointError: it is missing or not a regular file.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({type(exc).__name__})", path=path) from exc
    if not stat.S_ISREG(mode):
        raise CheckpointError(
            f"{path} is not a regular file (a FIFO, socket, device or folder); refused: pass checkpoint files",
            path=path,
        )
    return path


def inside_folder(folder: Path, name: object) -> Path:
    """The regular file ``name`` inside ``folder``: a plain relative name that stays in the folder after symlinks.

    Raises:
        CheckpointError: ``name`` is not a string, is absolute, climbs out with ``..``, resolves outside the folder
            through a symlink, or is not a regular file.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise CheckpointError(f"{folder}: a weight file name in the index is not a file name", path=folder)
    shown = name[:80].encode("unicode_escape").decode("ascii")
    if os.path.isabs(name) or ".." in Path(name).parts or name.startswith(("/", "\\")):
        raise CheckpointError(
            f"{folder}: the index names {shown!r}, outside the folder; refused (shards must sit inside it)",
            path=folder,
        )
    candidate = folder / name
    try:
        resolved = candidate.resolve(strict=True)
        root = folder.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"{folder}: {shown!r} is missing or a broken link", path=folder) from exc
    if resolved == root or root not in resolved.parents:
        raise CheckpointError(
            f"{folder}: {shown!r} resolves outside the folder (a symlink or the folder itself); refused",
            path=folder,
        )
    return regular_file(candidate)


def hf_weight_files(folder: Path) -> list[Path]:
    """The weight files of a Hugging Face-style folder, safetensors preferred over pickled ``.bin`` files.

    Every file is a regular file inside the folder (:func:`inside_folder`), whatever the index says.

    Raises:
        CheckpointError: the index is not valid, or names a file outside the folder or not a regular file.
    """
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        index = inside_folder(folder, index.name)
        if index.stat().st_size > 2**26:
            raise CheckpointError(f"{index} is larger than 64 MiB; not a safetensors index", path=index)
        try:
            weight_map = json.loads(index.read_bytes())["weight_map"]
            shards = sorted(set(weight_map.values()), key=str)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise CheckpointError(
                f"{index} is not a valid safetensors index ({type(exc).__name__})", path=index
            ) from exc
        return [inside_folder(folder, name) for name in shards]
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_FILE_SUFFIXES and p.is_file())
    files = [inside_folder(folder, p.name) for p in files]
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    return safetensors or files
