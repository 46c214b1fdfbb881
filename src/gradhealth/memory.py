"""Memory an audit will need, estimated from shapes and settings before anything is allocated.

A checkpoint is untrusted: 2.5 KB of stride-0 views can describe a 40 GB hidden-to-hidden matrix, a zip archive of
1.5 MB can inflate to 1.7 GB, and ``seq_len=10**7`` asks the probes for more activations than any machine holds.
The CLI checks each input against a limit (the ``memory_limit`` setting, 4 GiB by default) at three points, each
before the allocation it guards (:func:`gradhealth.audit` checks the third, with the same setting):

1. :func:`file_memory`: what reading the file allocates, from metadata only (the zip directory's uncompressed
   sizes, the safetensors header);
2. :func:`tensors_memory`: what the loaded tensors describe (a stride-0 view or a meta tensor costs nothing until
   it is copied into a rebuilt layer);
3. :func:`estimate_audit_memory`: what the probes need for the model's state size and the audit settings.

Over the limit, :func:`check_memory` raises :class:`~gradhealth.errors.MemoryLimitError` with the estimate.

The probe estimate is calibrated on torch's recurrent layers in float64 on CPU (peak resident memory of whole
audits: about 125-150 bytes per batch element, step and hidden unit for GRU/LSTM layers, 50 for ``nn.RNN``); it
is an order of magnitude with headroom, not an exact figure.

    >>> from gradhealth.formatting import format_bytes
    >>> format_bytes(estimate_audit_memory(parameters=50_000, state_units=64, seq_len=100, batch_size=32))
    '63.8 MiB'
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradhealth.errors import CheckpointError, MemoryLimitError
from gradhealth.formatting import format_bytes

if TYPE_CHECKING:
    from gradhealth.config import AuditConfig

__all__ = [
    "API_HINT",
    "CLI_HINT",
    "DEFAULT_LIMIT",
    "check_memory",
    "estimate_audit_memory",
    "estimate_for_config",
    "file_memory",
    "module_units",
    "state_dict_units",
    "tensors_memory",
]

#: The default limit: 4 GiB.
DEFAULT_LIMIT = 4 * 2**30

# Bytes kept per batch element, step and hidden unit, in units of the probe dtype's size: lag profile,
# parameter gradients and state gradients keep every gate's activation and gradient of every step.
_UNIT_FACTOR = 20
# The length scan runs one length at a time, forward and backward only. Measured (float64, default lengths up to
# 4096, batch 32, peak resident memory over the import per batch element, step and state unit): nn.RNN 1.0,
# nn.GRU 2.8, nn.LSTM 3.1, nn.GRUCell 2.5, nn.LSTMCell 3.6 values of the probe dtype; 5 keeps 1.4x headroom.
_SCAN_FACTOR = 5
# Parameters: the probe's copy in the probe dtype, its gradient, and the original.
_PARAM_FACTOR = 3
# Spectrum and Lyapunov: a few state-by-state matrices.
_JACOBIAN_FACTOR = 4

_HH_KEY = re.compile(r"(?:^|\.)weight_hh(?:_l\d+(?:_reverse)?)?$")
_SAFETENSORS_HEADER_LIMIT = 100 * 2**20
_DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, None: 8}


def estimate_audit_memory(
    *,
    parameters: int,
    state_units: int,
    seq_len: int,
    batch_size: int,
    burn_in: int | None = None,
    dtype_bytes: int = 8,
    longest_scan: int = 0,
    window_chunks: int = 1,
    window_only: bool = False,
) -> int:
    """Peak bytes an audit is expected to need (an estimate with headroom, computed without allocating).

    Args:
        parameters: number of parameter elements of the model (all of them, logical sizes).
        state_units: hidden units the recurrence carries per step, summed over layers and directions (an
            ``LSTM(8, 64, num_layers=2, bidirectional=True)`` has 256).
        seq_len: the dependency length K.
        batch_size: probe sequences.
        burn_in: steps before the probed window (``None``: ``seq_len``, as the audit does).
        dtype_bytes: bytes per element of the probe dtype (8 for float64, the CPU default).
        longest_scan: the longest length of the length_scan probe, 0 when it does not run.
        window_chunks: the lag profile alone runs its backward in this many checkpointed chunks
            (``checkpoint_chunks``): about 1/N of the activations are kept.
        window_only: the lag profile alone, on a model that runs the burn-in without a graph (state handover):
            only the K + 1 window's activations are kept.

    Returns:
        Bytes.
    """
    kept_burn_in = 0 if window_only else (seq_len if burn_in is None else burn_in)
    steps = -(-(seq_len + kept_burn_in) // max(1, window_chunks))
    activations = batch_size * steps * state_units * dtype_bytes * _UNIT_FACTOR
    scan = batch_size * longest_scan * state_units * dtype_bytes * _SCAN_FACTOR
    jacobians = state_units * state_units * dtype_bytes * _JACOBIAN_FACTOR
    return parameters * dtype_bytes * _PARAM_FACTOR + max(activations, scan) + jacobians


def estimate_for_config(
    parameters: int, state_units: int, config: AuditConfig, *, can_chunk: bool = False, handover: bool | None = None
) -> int:
    """:func:`estimate_audit_memory` for an :class:`~gradhealth.config.AuditConfig`'s settings (``can_chunk``: the
    model's adapter runs ``checkpoint_chunks``; ``handover``: it runs the burn-in without a graph, default
    ``can_chunk``; both count when the lag profile is the only probe)."""
    longest = max(config.length_scan_lengths) if "length_scan" in config.probe_names else 0
    only_lag = set(config.probe_names) <= {"lag_profile"}
    chunks = config.checkpoint_chunks if can_chunk and only_lag else 1
    return estimate_audit_memory(
        parameters=parameters,
        state_units=state_units,
        seq_len=config.seq_len,
        batch_size=config.batch_size,
        burn_in=config.burn_in,
        dtype_bytes=_DTYPE_BYTES.get(config.dtype, 8),
        longest_scan=longest,
        window_chunks=chunks,
        window_only=only_lag and (can_chunk if handover is None else handover),
    )


#: How to raise the limit, per face.
CLI_HINT = "raise --memory-limit (e.g. --memory-limit 16GiB, or none) if this is expected"
API_HINT = (
    "raise memory_limit (e.g. memory_limit='16GiB', or 'none'; --gradhealth-memory-limit under pytest) "
    "if this is expected"
)


def check_memory(estimate: int, limit: int | None, what: str, *, path: object = None, hint: str = CLI_HINT) -> None:
    """Refuse ``estimate`` bytes above ``limit`` (``None``: no limit).

    Raises:
        MemoryLimitError: one line naming ``what``, the estimate, the limit and how to raise it (``hint``).
    """
    if limit is None or estimate <= limit:
        return
    raise MemoryLimitError(
        f"{what} needs about {format_bytes(estimate)}, above the memory limit of {format_bytes(limit)}; refused "
        f"before allocating it; {hint}",
        path=path,
        estimate=estimate,
        limit=limit,
    )


def file_memory(path: Path, fmt: str, *, metadata_only: bool = False) -> int:
    """Bytes reading a checkpoint allocates, from its metadata only (nothing is decompressed or read).

    ``torch_zip``, ``torchscript``, ``torch_export``: the zip directory's uncompressed sizes (a zip bomb declares
    what it inflates to); ``safetensors``: the end of the last tensor in the header; anything else: its size.
    ``metadata_only``: what listing the tensors reads (the archive's pickles, the safetensors header).

    Raises:
        CheckpointError: the metadata is malformed (a safetensors header that is not JSON or points past the file).
    """
    size = path.stat().st_size
    if fmt in {"torch_zip", "torchscript", "torch_export"}:
        try:
            with zipfile.ZipFile(path) as archive:
                return sum(
                    info.file_size
                    for info in archive.infolist()
                    if not (metadata_only and "/data/" in f"/{info.filename}")
                )
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"{path} is a truncated or corrupt zip archive ({exc})", path=path) from exc
    if fmt == "safetensors":
        return min(size, 8 + _SAFETENSORS_HEADER_LIMIT) if metadata_only else _safetensors_extent(path, size)
    return size


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (names, dtypes, shapes, offsets), read without reading tensors.

    Raises:
        CheckpointError: the header is too large, not JSON, or not an object.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path} is a truncated safetensors file", path=path)
        (length,) = struct.unpack("<Q", raw)
        if length > min(_SAFETENSORS_HEADER_LIMIT, size - 8):
            raise CheckpointError(
                f"{path}: the safetensors header declares {length} bytes, more than the file or "
                f"{format_bytes(_SAFETENSORS_HEADER_LIMIT)} holds",
                path=path,
            )
        text = f.read(length)
    try:
        header = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON", path=path) from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object", path=path)
    return header


def _safetensors_extent(path: Path, size: int) -> int:
    header = safetensors_header(path)
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointError(f"{path}: tensor {name!r} has no valid data_offsets in the header", path=path)
        end = max(end, offsets[1])
    return end


def tensors_memory(tensors: Iterable[Any]) -> int:
    """Bytes the tensors take once materialised (logical sizes: a stride-0 view counts as its full shape)."""
    return sum(int(t.numel()) * int(t.element_size()) for t in tensors)


def state_dict_units(state: Mapping[str, Any]) -> tuple[int, int]:
    """``(parameter elements, state units)`` of the recurrent layers a state_dict describes, from shapes only.

    State units are the columns of every ``weight_hh`` matrix (a layer's hidden size), summed over layers and
    directions. Nothing is built from the keys (a corrupt layer numbering is the reconstruction's error to name).
    """
    parameters = sum(int(t.numel()) for t in state.values() if hasattr(t, "numel"))
    units = 0
    for key, tensor in state.items():
        if _HH_KEY.search(str(key)) is not None and len(getattr(tensor, "shape", ())) == 2:
            units += int(tensor.shape[1])
    return parameters, units


def module_units(module: Any) -> tuple[int, int]:
    """``(parameter elements, state units)`` of a live model: its recurrent layers' hidden sizes."""
    from torch import nn

    parameters = sum(int(p.numel()) for p in module.parameters())
    units = 0
    for sub in module.modules():
        if isinstance(sub, nn.RNNBase):
            units += int(sub.hidden_size) * int(sub.num_layers) * (2 if sub.bidirectional else 1)
        elif isinstance(sub, nn.RNNCellBase):
            units += int(sub.hidden_size)
    if units == 0:  # an unknown architecture: its largest parameter matrix bounds the state it carries
        units = max((int(max(p.shape)) for p in module.parameters() if p.dim() == 2), default=0)
    return parameters, units
