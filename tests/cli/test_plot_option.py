"""``gradhealth audit --plot DIR``: one set of PNGs per audited model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.cli.conftest import FAST, Encoder  # type: ignore[import-not-found]
from typer.testing import Result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_profile_png_per_layer(
    run: Callable[..., Result], encoder_state: tuple[Path, Encoder], tmp_path: Path
) -> None:
    path, _ = encoder_state
    out = tmp_path / "plots"
    result = run("audit", path, *FAST, "--plot", out)
    assert result.exit_code == 0, result.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["encoder.pt_encoder.rnn-profile.png"]
    assert (out / files[0]).read_bytes().startswith(PNG_MAGIC)


def test_plot_without_matplotlib_is_one_line_exit_2(
    run: Callable[..., Result], encoder_state: tuple[Path, Encoder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradhealth.plot

    def missing() -> None:
        raise gradhealth.plot.MissingExtraError("plotting needs matplotlib: pip install 'gradhealth[plot]'")

    monkeypatch.setattr(gradhealth.plot, "require_matplotlib", missing)
    result = run("audit", encoder_state[0], *FAST, "--plot", tmp_path / "plots")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "gradhealth: error: plotting needs matplotlib: pip install 'gradhealth[plot]'"
    ]
