"""Limits on untrusted inputs: the memory estimate, sizes, the load time limit, folder containment, the scanner."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from gradhealth.errors import CheckpointError, ConfigError, MemoryLimitError
from gradhealth.loaders.detect import inside_folder, regular_file
from gradhealth.loaders.load import time_limit
from gradhealth.loaders.safety import (
    COMPUTED_GLOBAL,
    UNKNOWN_OPCODE,
    globals_in_pickle,
    refusal,
    resolve_allowed_globals,
)
from gradhealth.memory import (
    check_memory,
    estimate_audit_memory,
    file_memory,
    module_units,
    state_dict_units,
    tensors_memory,
)
from gradhealth.settings import SETTINGS


def test_the_estimate_is_the_documented_sum() -> None:
    # parameters x dtype x 3, activations batch x (burn_in + seq_len) x units x dtype x 20, jacobians units^2 x 8 x 4
    got = estimate_audit_memory(parameters=1000, state_units=10, seq_len=50, batch_size=4, burn_in=30)
    assert got == 1000 * 8 * 3 + 4 * 80 * 10 * 8 * 20 + 10 * 10 * 8 * 4
    # the length scan replaces the activations when it is longer: 4 x 4096 x 10 x 8 x 5 (five values per unit-step)
    scan = estimate_audit_memory(parameters=0, state_units=10, seq_len=50, batch_size=4, longest_scan=4096)
    assert scan == 4 * 4096 * 10 * 8 * 5 + 10 * 10 * 8 * 4


def test_check_memory_names_the_estimate_and_the_flag() -> None:
    check_memory(2**30, 2**30, "x")  # at the limit: allowed
    check_memory(2**40, None, "x")  # no limit
    with pytest.raises(MemoryLimitError) as info:
        check_memory(3 * 2**30, 2**30, "model.pt: the audit")
    assert str(info.value) == (
        "model.pt: the audit needs about 3.0 GiB, above the memory limit of 1.0 GiB; refused before allocating it; "
        "raise --memory-limit (e.g. --memory-limit 16GiB, or none) if this is expected"
    )
    assert (info.value.estimate, info.value.limit) == (3 * 2**30, 2**30)


@pytest.mark.parametrize(
    ("text", "value"),
    [("4GiB", 4 * 2**30), ("512MB", 512 * 10**6), ("1.5 GiB", 3 * 2**29), ("1000", 1000), ("none", None)],
)
def test_memory_limit_sizes(text: str, value: int | None) -> None:
    assert SETTINGS["memory_limit"].parse(text, source="--memory-limit") == value


@pytest.mark.parametrize("text", ["4XB", "-1", "0", "GiB", "inf GiB", "nan"])
def test_bad_memory_limits(text: str) -> None:
    with pytest.raises(ConfigError, match="must be a size such as 4GiB"):
        SETTINGS["memory_limit"].parse(text, source="--memory-limit")


def test_units_from_shapes_and_modules_agree() -> None:
    lstm = nn.LSTM(3, 8, num_layers=2, bidirectional=True)
    parameters = sum(p.numel() for p in lstm.parameters())
    assert state_dict_units(lstm.state_dict()) == (parameters, 8 * 2 * 2)
    assert module_units(lstm) == (parameters, 32)
    assert module_units(nn.GRUCell(3, 5)) == (sum(p.numel() for p in nn.GRUCell(3, 5).parameters()), 5)


def test_views_count_at_their_full_shape() -> None:
    view = torch.zeros(1).expand(1000, 1000)
    assert tensors_memory([view, torch.zeros(3, dtype=torch.float64)]) == 1000 * 1000 * 4 + 24


def test_a_zip_declares_what_it_inflates_to(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.zeros(10)}, path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ckpt/data/9", bytes(2**20))
    assert path.stat().st_size < 2**16
    assert file_memory(path, "torch_zip") > 2**20
    assert file_memory(path, "torch_zip", metadata_only=True) < 2**16


def _slow_read() -> None:
    for _ in range(200):  # 10 s at most; the alarm ends it after 0.05 s
        time.sleep(0.05)


def test_time_limit_interrupts_the_block() -> None:
    with pytest.raises(CheckpointError, match="longer than the load timeout of 0.05 s"), time_limit(0.05, "x.pt"):
        _slow_read()
    import signal

    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # nothing left pending


def test_time_limit_is_skipped_off_the_main_thread() -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with time_limit(0.01, "x.pt"):
                time.sleep(0.05)
        except BaseException as exc:  # pragma: no cover - would be the failure
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors == []


def test_folder_containment(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "ok.safetensors").write_bytes(b"x")
    (tmp_path / "outside").write_bytes(b"x")
    (folder / "link").symlink_to(tmp_path / "outside")
    (folder / "inner_link").symlink_to(folder / "ok.safetensors")
    os.mkfifo(folder / "pipe")
    assert inside_folder(folder, "ok.safetensors") == folder / "ok.safetensors"
    assert inside_folder(folder, "inner_link") == folder / "inner_link"
    for name, problem in [
        ("../outside", "outside the folder"),
        (str(tmp_path / "outside"), "outside the folder"),
        ("link", "resolves outside the folder"),
        (".", "resolves outside the folder"),
        ("pipe", "not a regular file"),
        ("missing", "missing or a broken link"),
        (None, "not a file name"),
    ]:
        with pytest.raises(CheckpointError, match=problem):
            inside_folder(folder, name)
    with pytest.raises(CheckpointError, match="not a regular file"):
        regular_file(folder / "pipe")


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"\x80\x02cos\nsystem\nX\x01\x00\x00\x00x\x85R.", {"os.system"}),
        (b"(S'x'\nios\nsystem\n.", {"os.system"}),  # INST
        (b"\x80\x04\x8c\x08builtins\x94\x8c\x04exec\x94h\x00h\x01\x93.", {"builtins.exec"}),  # memo STACK_GLOBAL
        (b"\x80\x04)\x93.", {COMPUTED_GLOBAL}),  # STACK_GLOBAL over a non-string: never "None.None"
        (b"\x80\x02\xff.", {UNKNOWN_OPCODE}),
        (b"\x80\x02c__builtin__\nset\n.", {"builtins.set"}),  # protocol 2 names mapped as unpickling does
    ],
)
def test_scanner(data: bytes, found: set[str]) -> None:
    assert globals_in_pickle(io.BytesIO(data)) == found


def test_refusal_suggests_allow_global_for_classes_only() -> None:
    classes = str(refusal(Path("c.pt"), "torch_zip", ["mypkg.Config"]))
    assert "pass --allow-global mypkg.Config if you know these classes" in classes
    mixed = str(refusal(Path("c.pt"), "torch_zip", ["mypkg.Config", "subprocess.Popen"]))
    assert "--allow-global" not in mixed and "(subprocess.Popen)" in mixed and "--trust would run" in mixed
    function = str(refusal(Path("c.pt"), "torch_zip", ["mypkg.make"]))
    assert "functions called when unpickled (mypkg.make)" in function and "--allow-global" not in function


@pytest.mark.parametrize(
    "name", ["builtins.exec", "os.system", "posix.system", "subprocess.Popen", "functools.partial", "pickle.loads"]
)
def test_code_running_names_cannot_be_allowed(name: str) -> None:
    with pytest.raises(ConfigError, match="never allowed"):
        resolve_allowed_globals([name])


def test_an_alias_of_a_code_running_callable_cannot_be_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gh_alias_module.py").write_text("from os import system as run\nclass Config:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"it is (posix|nt)\.system"):
        resolve_allowed_globals(["gh_alias_module.run"])
    (config,) = resolve_allowed_globals(["gh_alias_module.Config"])
    assert config.__name__ == "Config"
