"""Format detection by content and the static scan of pickled globals."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gradhealth.errors import CheckpointError
from gradhealth.loaders.detect import detect_format
from gradhealth.loaders.safety import globals_in_pickle, unsafe_globals


def test_formats_detected_by_content_not_name(tmp_path: Path) -> None:
    state = {"w": torch.zeros(2)}
    torch.save(state, tmp_path / "a.safetensors")
    torch.save(state, tmp_path / "b.ckpt", _use_new_zipfile_serialization=False)
    save_file(state, tmp_path / "c.pt")
    (tmp_path / "d.bin").write_bytes(pickle.dumps(state))
    assert [detect_format(tmp_path / n) for n in ("a.safetensors", "b.ckpt", "c.pt", "d.bin")] == [
        "torch_zip",
        "torch_legacy",
        "safetensors",
        "pickle",
    ]


def test_zip_that_is_not_torch(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "x.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="zip archive but not a torch checkpoint"):
        detect_format(path)


class _Thing:
    pass


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_globals_found_for_every_protocol(protocol: int) -> None:
    data = pickle.dumps({"a": _Thing(), "b": [io.BytesIO, _Thing]}, protocol=protocol)
    found = globals_in_pickle(io.BytesIO(data))
    assert f"{__name__}._Thing" in found
    assert "_io.BytesIO" in found


def test_plain_tensors_have_no_unsafe_globals(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.zeros(2), "meta": {"epoch": 1, "name": "x"}}, path)
    assert unsafe_globals(path, "torch_zip") == []
    torch.save({"w": torch.zeros(2), "thing": _Thing()}, path, _use_new_zipfile_serialization=False)
    assert unsafe_globals(path, "torch_legacy") == [f"{__name__}._Thing"]
    assert unsafe_globals(path, "torch_legacy", [f"{__name__}._Thing"]) == []
