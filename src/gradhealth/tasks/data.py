"""The user's own sequences as probe inputs: read them, fit the lag window to their length, feed every probe.

Probing a trained model with white noise probes it off its input distribution; its own validation data is
usually the right probe. :func:`read_inputs` accepts a ``[B, T, D]`` float tensor or array, ``[B, T]`` integer
token ids, a list of such batches, a mapping holding one (``input_ids``, ``inputs`` or ``x``), or any iterable of
batches (a ``DataLoader``; a batch that is a tuple or list gives its first element, the inputs). The first ``limit``
sequences are used. :func:`probe_window` derives the dependency length K and the burn-in from the sequence
length T (T = burn-in + K + 1), and :class:`DataTask` serves the sequences to the probes as a task.

    >>> import torch
    >>> data = read_inputs(torch.zeros(4, 21, 3), limit=32)
    >>> data.info.shape, data.info.kind
    ([4, 21, 3], 'features')
    >>> probe_window(data.seq_len, seq_len=None, burn_in=None)
    (10, 10)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from gradhealth.errors import ConfigError
from gradhealth.report import InputInfo
from gradhealth.tasks.base import Task, TaskBatch

__all__ = ["DataTask", "ProbeInputs", "probe_window", "read_inputs"]

#: Keys of a mapping batch that hold the inputs, in the order they are looked for.
INPUT_KEYS = ("input_ids", "inputs", "x")
#: Hex digits of the sha256 recorded in the report.
HASH_DIGITS = 16


@dataclass(frozen=True)
class ProbeInputs:
    """The sequences an audit probes with, and what the report records about them.

    Attributes:
        tensor: ``[N, T, D]`` floats or ``[N, T]`` int64 token ids, on the CPU, as given (no dtype change).
        info: where they came from, their shape, dtype and content hash (never the data).
    """

    tensor: torch.Tensor
    info: InputInfo

    @property
    def count(self) -> int:
        """The number of sequences N."""
        return int(self.tensor.shape[0])

    @property
    def seq_len(self) -> int:
        """The sequence length T."""
        return int(self.tensor.shape[1])

    @property
    def is_tokens(self) -> bool:
        """True for token ids."""
        return self.info.kind == "token_ids"


def read_inputs(data: Any, *, limit: int, source: str | None = None) -> ProbeInputs:
    """Gather the first ``limit`` sequences of ``data`` into one tensor.

    Args:
        data: a tensor or numpy array (``[B, T, D]`` floats or ``[B, T]`` integer ids), a mapping holding one, a
            list of them, or an iterable of batches such as a ``DataLoader``.
        limit: the most sequences to use (the audit's batch size); batches are read until it is reached.
        source: how the report names where the data came from (default: its type).

    Returns:
        The sequences and their description.

    Raises:
        ConfigError: the data is empty, not numeric, of the wrong rank, or its batches disagree in shape or dtype.
    """
    described = source or _describe(data)
    batches = _batches(data, described)
    gathered: list[torch.Tensor] = []
    count = 0
    for batch in batches:
        tensor = _as_tensor(batch, described)
        gathered.append(tensor[: limit - count])
        count += gathered[-1].shape[0]
        if count >= limit:
            break
    if not gathered or count == 0:
        raise ConfigError("inputs", described, "holds no sequences")
    first = gathered[0]
    for other in gathered[1:]:
        if other.shape[1:] != first.shape[1:] or other.dtype != first.dtype:
            raise ConfigError(
                "inputs",
                described,
                f"batches differ: {_shape_text(first)} {_dtype_name(first)} then {_shape_text(other)} "
                f"{_dtype_name(other)}; pad or crop them to one length",
            )
    tensor = torch.cat(gathered) if len(gathered) > 1 else first
    kind = "token_ids" if tensor.ndim == 2 else "features"
    info = InputInfo(described, list(tensor.shape), _dtype_name(tensor), kind, content_hash(tensor))
    return ProbeInputs(tensor.contiguous(), info)


def content_hash(tensor: torch.Tensor) -> str:
    """The first hex digits of the sha256 of the dtype, shape and bytes: the same data, the same hash."""
    digest = hashlib.sha256(f"{_dtype_name(tensor)} {list(tensor.shape)}\n".encode())
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()[:HASH_DIGITS]


def probe_window(total: int, *, seq_len: int | None, burn_in: int | None) -> tuple[int, int]:
    """The dependency length K and the burn-in for sequences of ``total`` steps (T = burn-in + K + 1).

    Neither given: K = (T - 1) // 2 (at least 1) and the rest is burn-in (so burn-in >= K: lags in steady state).
    One given: the other takes the remaining steps. Both given: they must fit in T; the first burn-in + K + 1 steps
    are used.

    Raises:
        ConfigError: the sequences are too short, naming the longest K they allow.
    """
    if seq_len is None and burn_in is None:
        seq_len = max(1, (total - 1) // 2)
    elif seq_len is None:
        assert burn_in is not None
        seq_len = total - 1 - burn_in
    longest = total - 1 - (burn_in or 0)
    if seq_len < 1 or seq_len > longest:
        with_burn = f" after a burn-in of {burn_in}" if burn_in else ""
        allowed = f"the longest K they allow{with_burn} is {longest}" if longest >= 1 else "they allow no lag at all"
        raise ConfigError(
            "seq_len",
            seq_len,
            f"the input sequences have {total} steps (T = burn_in + K + 1): {allowed}; pass a smaller seq_len or "
            "burn_in, or longer sequences",
        )
    return seq_len, (total - 1 - seq_len if burn_in is None else burn_in)


class DataTask(Task):
    """The user's sequences as a task: every probe that draws task inputs gets these sequences.

    A request for B sequences of length L gets the first L steps of the first B sequences (cycling through them
    when B is larger than N). The generator and scale are not used: the data is what it is. Lengths beyond T are
    refused.
    """

    name = "inputs"
    description = "the user's own sequences"
    supports_tokens = True

    def __init__(self, inputs: ProbeInputs) -> None:
        self.inputs = inputs

    @property
    def max_len(self) -> int:
        """The longest sequence this task can serve: T."""
        return self.inputs.seq_len

    def check_fits(self, *, input_size: int, vocab_size: int | None) -> None:
        """Refuse data the model cannot take: ids for a feature model, features of the wrong width, ids out of range.

        Raises:
            ConfigError: naming the data's shape and what the model takes.
        """
        info, tensor = self.inputs.info, self.inputs.tensor
        shown = f"{info.dtype} {_shape_text(tensor)}"
        if vocab_size is not None:
            if not self.inputs.is_tokens:
                raise ConfigError("inputs", shown, "the model takes token ids: pass integer ids of shape [B, T]")
            low, high = int(tensor.min()), int(tensor.max())
            if low < 0 or high >= vocab_size:
                raise ConfigError(
                    "inputs", shown, f"token ids span {low}..{high}, the vocabulary is 0..{vocab_size - 1}"
                )
        elif self.inputs.is_tokens:
            raise ConfigError("inputs", shown, f"the model takes {input_size} features per step: pass [B, T, D] floats")
        elif tensor.shape[2] != input_size:
            raise ConfigError(
                "inputs", shown, f"the model takes {input_size} features per step, the data has D = {tensor.shape[2]}"
            )

    def _generate(
        self,
        batch_size: int,
        seq_len: int,
        input_size: int,
        generator: torch.Generator,
        scale: float,
        vocab_size: int | None,
    ) -> TaskBatch:
        if seq_len > self.max_len:
            raise ConfigError(
                "inputs",
                f"{self.inputs.info.dtype} {_shape_text(self.inputs.tensor)}",
                f"a probe asked for {seq_len} steps, the sequences have {self.max_len}",
            )
        rows = torch.arange(batch_size) % self.inputs.count
        window = self.inputs.tensor[rows, :seq_len]
        return TaskBatch(window.long() if self.inputs.is_tokens else window.to(torch.float64))


def _describe(data: Any) -> str:
    if isinstance(data, torch.Tensor):
        return "tensor"
    if type(data).__module__ == "numpy" and hasattr(data, "shape"):
        return "numpy array"
    if isinstance(data, Mapping):
        return "mapping"
    if isinstance(data, (list, tuple)):
        return f"list of {len(data)}"
    return type(data).__name__


def _batches(data: Any, described: str) -> Iterable[Any]:
    if isinstance(data, (torch.Tensor, Mapping)) or hasattr(data, "__array__"):
        return [data]
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise ConfigError(
            "inputs",
            described,
            "expected a [B, T, D] tensor or array, [B, T] token ids, a list of them, or an iterable of batches",
        )
    return data


def _as_tensor(batch: Any, described: str) -> torch.Tensor:
    if isinstance(batch, Mapping):
        key = next((k for k in INPUT_KEYS if k in batch), None)
        if key is None:
            raise ConfigError("inputs", described, f"a mapping batch needs one of the keys {', '.join(INPUT_KEYS)}")
        batch = batch[key]
    elif isinstance(batch, (tuple, list)) and batch and not isinstance(batch[0], (int, float)):
        batch = batch[0]  # (inputs, targets) from a DataLoader
    if not isinstance(batch, torch.Tensor):
        if not hasattr(batch, "__array__"):
            raise ConfigError("inputs", described, f"a batch is a {type(batch).__name__}, not a tensor or array")
        batch = _from_array(batch, described)
    tensor = batch.detach().cpu()
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ConfigError("inputs", described, f"{_dtype_name(tensor)} data: pass floats or integer token ids")
    if tensor.is_floating_point():
        if tensor.ndim != 3:
            raise ConfigError(
                "inputs",
                f"{_dtype_name(tensor)} {_shape_text(tensor)}",
                "float inputs must be [B, T, D] (add a trailing axis for one feature, a leading one for one sequence)",
            )
        if not bool(torch.isfinite(tensor).all()):
            raise ConfigError("inputs", f"{_dtype_name(tensor)} {_shape_text(tensor)}", "holds NaN or Inf values")
    elif tensor.ndim != 2:
        raise ConfigError(
            "inputs", f"{_dtype_name(tensor)} {_shape_text(tensor)}", "integer inputs are token ids and must be [B, T]"
        )
    if tensor.shape[1] < 2:
        raise ConfigError("inputs", f"{_dtype_name(tensor)} {_shape_text(tensor)}", "sequences need at least 2 steps")
    return tensor


def _from_array(array: Any, described: str) -> torch.Tensor:
    import numpy as np

    value = np.asarray(array)
    if value.dtype == object or not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
        raise ConfigError("inputs", described, f"an array of {value.dtype} is not numeric data")
    return torch.from_numpy(np.ascontiguousarray(value))


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _shape_text(tensor: torch.Tensor) -> str:
    return "[" + ", ".join(str(n) for n in tensor.shape) + "]"
