"""The built-in tasks: gaussian noise, impulse, copy, adding problem, delayed recall."""

from __future__ import annotations

import torch

from gradhealth.tasks.base import Task, TaskBatch

__all__ = ["AddingTask", "CopyTask", "DelayedRecallTask", "ImpulseTask", "NoiseTask"]

_F64 = torch.float64


class NoiseTask(Task):
    """Gaussian noise x ~ N(0, s²) at every step (the default probe input); uniform ids for token models."""

    name = "noise"
    description = "i.i.d. gaussian inputs N(0, s^2) at every step"
    supports_tokens = True

    def _generate(self, batch_size, seq_len, input_size, generator, scale, vocab_size):  # type: ignore[no-untyped-def]
        if vocab_size is not None:
            ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
            return TaskBatch(ids)
        x = torch.randn(batch_size, seq_len, input_size, generator=generator, dtype=_F64) * scale
        return TaskBatch(x)


class ImpulseTask(Task):
    """One gaussian impulse N(0, s²) at step 0, zeros after: probes the dynamics near the zero-input state."""

    name = "impulse"
    description = "a gaussian impulse at step 0, zero input afterwards"

    def _generate(self, batch_size, seq_len, input_size, generator, scale, vocab_size):  # type: ignore[no-untyped-def]
        x = torch.zeros(batch_size, seq_len, input_size, dtype=_F64)
        x[:, 0] = torch.randn(batch_size, input_size, generator=generator, dtype=_F64) * scale
        return TaskBatch(x)


class CopyTask(Task):
    """The copy-memory problem (Hochreiter & Schmidhuber 1997; the form of Arjovsky et al. 2016).

    Channel 0 is the blank, channels 1..A the symbols, channel A+1 the delimiter (A = min(8, D - 2)). The first
    n = min(10, T // 3) steps show random symbols, then blanks; the delimiter appears n + 1 steps before the end,
    and the model must reproduce the n symbols in order over the last n steps. Targets are class ids
    (0 = blank) with the mask on the last n steps.
    """

    name = "copy"
    description = "copy memory: reproduce the first n symbols after a long blank delay"
    min_input_size = 3

    def _generate(self, batch_size, seq_len, input_size, generator, scale, vocab_size):  # type: ignore[no-untyped-def]
        alphabet = min(8, input_size - 2)
        n = max(1, min(10, seq_len // 3))
        symbols = torch.randint(1, alphabet + 1, (batch_size, n), generator=generator)
        ids = torch.zeros(batch_size, seq_len, dtype=torch.long)
        ids[:, :n] = symbols
        ids[:, seq_len - n - 1] = alphabet + 1
        x = torch.nn.functional.one_hot(ids, input_size).to(_F64) * scale
        targets = torch.zeros(batch_size, seq_len, dtype=torch.long)
        targets[:, seq_len - n :] = symbols
        mask = torch.zeros(batch_size, seq_len, dtype=torch.bool)
        mask[:, seq_len - n :] = True
        return TaskBatch(x, targets, mask)


class AddingTask(Task):
    """The adding problem of Hochreiter & Schmidhuber (1997).

    Channel 0 carries values X uniform in [-1, 1] (times s), channel 1 marks two of them: the first among the
    first 10 steps, the second among the first T/2 - 1 steps (distinct). The target at the last step is
    0.5 + (X1 + X2) / 4.
    """

    name = "adding"
    description = "adding problem: output 0.5 + (X1 + X2)/4 for the two marked values"
    min_input_size = 2

    def _generate(self, batch_size, seq_len, input_size, generator, scale, vocab_size):  # type: ignore[no-untyped-def]
        values = torch.rand(batch_size, seq_len, generator=generator, dtype=_F64) * 2 - 1
        first_window = max(1, min(10, seq_len // 2))
        second_window = max(first_window + 1, seq_len // 2 - 1)
        first = torch.randint(0, first_window, (batch_size,), generator=generator)
        offset = torch.randint(1, second_window, (batch_size,), generator=generator)
        second = (first + offset) % second_window  # distinct from first, within the first T/2 - 1 steps
        rows = torch.arange(batch_size)
        markers = torch.zeros(batch_size, seq_len, dtype=_F64)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        x = torch.zeros(batch_size, seq_len, input_size, dtype=_F64)
        x[..., 0] = values * scale
        x[..., 1] = markers
        total = (values[rows, first] + values[rows, second]) * (first != second)
        targets = torch.zeros(batch_size, seq_len, 1, dtype=_F64)
        targets[:, -1, 0] = 0.5 + total / 4
        mask = torch.zeros(batch_size, seq_len, dtype=torch.bool)
        mask[:, -1] = True
        return TaskBatch(x, targets, mask)


class DelayedRecallTask(Task):
    """Delayed recall: a symbol at step 0, distractor noise, a recall cue at the last step.

    Channels 0..A-1 carry the one-hot symbol (A = min(8, D - 1)), channel A the cue; the steps in between carry
    N(0, (s/10)²) distractors on every channel. The target is the symbol's class id at the last step.
    """

    name = "delayed_recall"
    description = "recall a symbol shown at step 0 when cued at the last step, through distractors"
    min_input_size = 2

    def _generate(self, batch_size, seq_len, input_size, generator, scale, vocab_size):  # type: ignore[no-untyped-def]
        alphabet = min(8, input_size - 1)
        symbols = torch.randint(0, alphabet, (batch_size,), generator=generator)
        x = torch.randn(batch_size, seq_len, input_size, generator=generator, dtype=_F64) * (scale / 10)
        x[:, 0] = torch.nn.functional.one_hot(symbols, input_size).to(_F64) * scale
        x[:, -1] = 0.0
        x[:, -1, alphabet] = scale
        targets = torch.zeros(batch_size, seq_len, dtype=torch.long)
        targets[:, -1] = symbols
        mask = torch.zeros(batch_size, seq_len, dtype=torch.bool)
        mask[:, -1] = True
        return TaskBatch(x, targets, mask)
