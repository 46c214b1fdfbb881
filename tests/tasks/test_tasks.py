"""The synthetic tasks: shapes, seeding, and the definitions of the copy and adding problems."""

from __future__ import annotations

import pytest
import torch

from gradhealth.errors import ConfigError
from gradhealth.plugins import get_task
from gradhealth.tasks import AddingTask, CopyTask, DelayedRecallTask, ImpulseTask, NoiseTask


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_has_all_builtin_tasks() -> None:
    for name in ("noise", "impulse", "copy", "adding", "delayed_recall"):
        assert get_task(name).name == name
    with pytest.raises(ConfigError, match="unknown task; known tasks: adding, copy, delayed_recall, impulse, noise"):
        get_task("sine")


@pytest.mark.parametrize("task", [NoiseTask(), ImpulseTask(), CopyTask(), AddingTask(), DelayedRecallTask()])
def test_seeded_and_shaped(task: object) -> None:
    a = task.generate(3, 40, 6, generator=gen(1), dtype=torch.float64)  # type: ignore[attr-defined]
    b = task.generate(3, 40, 6, generator=gen(1), dtype=torch.float64)  # type: ignore[attr-defined]
    c = task.generate(3, 40, 6, generator=gen(2), dtype=torch.float64)  # type: ignore[attr-defined]
    assert a.inputs.shape == (3, 40, 6)
    assert a.inputs.dtype == torch.float64
    assert torch.equal(a.inputs, b.inputs)
    assert not torch.equal(a.inputs, c.inputs)


def test_noise_has_requested_scale() -> None:
    x = NoiseTask().generate(64, 200, 8, generator=gen(), scale=2.5, dtype=torch.float64).inputs
    assert x.std().item() == pytest.approx(2.5, rel=0.02)
    assert x.mean().item() == pytest.approx(0.0, abs=0.03)


def test_noise_token_ids() -> None:
    ids = NoiseTask().generate(4, 30, 8, generator=gen(), vocab_size=5).inputs
    assert ids.dtype == torch.long
    assert ids.shape == (4, 30)
    assert int(ids.min()) >= 0
    assert int(ids.max()) < 5


def test_impulse_is_zero_after_step_zero() -> None:
    x = ImpulseTask().generate(2, 10, 3, generator=gen()).inputs
    assert torch.count_nonzero(x[:, 1:]) == 0
    assert torch.count_nonzero(x[:, 0]) == 6


def test_copy_problem_definition() -> None:
    batch = CopyTask().generate(5, 60, 10, generator=gen(), dtype=torch.float64)
    x, y, mask = batch.inputs, batch.targets, batch.target_mask
    assert y is not None and mask is not None and batch.is_classification
    n = 10
    symbols = x[:, :n].argmax(-1)
    assert int(symbols.min()) >= 1
    assert int(symbols.max()) <= 8  # alphabet A = min(8, D - 2)
    assert torch.equal(y[:, -n:], symbols)  # reproduce the symbols in order over the last n steps
    assert torch.all(x[:, 60 - n - 1].argmax(-1) == 9)  # delimiter n + 1 steps before the end
    assert torch.all(x[:, n : 60 - n - 1].argmax(-1) == 0)  # blanks in between
    assert torch.equal(mask.sum(1), torch.full((5,), n))
    assert torch.all(y[~mask] == 0)


def test_adding_problem_definition() -> None:
    batch = AddingTask().generate(256, 50, 2, generator=gen(), dtype=torch.float64)
    x, y, mask = batch.inputs, batch.targets, batch.target_mask
    assert y is not None and mask is not None and not batch.is_classification
    markers = x[..., 1]
    assert torch.all(markers.sum(1) == 2)  # two distinct marked positions
    first = markers.argmax(1)
    assert torch.all(first < 10)  # first marker among the first ten steps
    positions = markers.nonzero()[:, 1].view(256, 2)
    assert torch.all(positions[:, 1] < 50 // 2 - 1)  # second among the first T/2 - 1 steps
    values = (x[..., 0] * markers).sum(1)
    torch.testing.assert_close(y[:, -1, 0], 0.5 + values / 4)  # Hochreiter & Schmidhuber's target
    assert torch.all(x[..., 0].abs() <= 1)
    assert torch.all(mask[:, -1])
    assert int(mask.sum()) == 256


def test_delayed_recall_definition() -> None:
    batch = DelayedRecallTask().generate(6, 30, 5, generator=gen(), scale=1.0, dtype=torch.float64)
    x, y = batch.inputs, batch.targets
    assert y is not None
    assert torch.equal(y[:, -1], x[:, 0, :4].argmax(-1))  # the symbol shown at step 0 (A = min(8, D - 1) = 4)
    assert torch.all(x[:, -1, 4] == 1.0)  # the recall cue at the last step
    assert x[:, 1:-1].abs().max() < 1.0  # distractors are small


@pytest.mark.parametrize(("task", "size"), [(CopyTask(), 2), (AddingTask(), 1), (DelayedRecallTask(), 1)])
def test_too_small_input_size_is_explained(task: object, size: int) -> None:
    with pytest.raises(ConfigError, match=r"needs input_size >= \d+, the model takes"):
        task.generate(2, 10, size, generator=gen())  # type: ignore[attr-defined]


def test_tasks_drive_audits() -> None:
    import gradhealth
    from gradhealth import reference

    for name in ("impulse", "copy", "adding", "delayed_recall"):
        report = gradhealth.audit(
            reference.LinearRecurrence(4, 0.8), seq_len=30, batch_size=2, probes="quick", task=name
        )
        assert report.metrics.horizon == 21  # linear: the profile does not depend on the inputs
        assert report.config["task"] == name
