"""Session-wide switches of the pytest plugin, driven through pytester: the skip switch, the session header, and
collection with the plugin disabled (``-p no:gradhealth``) under ``--strict-markers``."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

# Imported before any in-process inner run (see test_plugin.py): one copy of the engine's modules.
import gradhealth.engine
import gradhealth.testing._assertions  # noqa: F401

pytest_plugins = ["pytester"]

EXAMPLE_INI = Path(__file__).resolve().parents[2] / "examples" / "pytest" / "pytest.ini"

GRADIENT_TESTS = """
import pytest
import gradhealth.testing as ght
from gradhealth import reference

@pytest.mark.gradhealth(seq_len=16)
def test_marked():
    raise AssertionError("a marked test ran")

def test_fixture(gradhealth):
    raise AssertionError("a test using the fixture ran")

def test_helper():
    ght.assert_healthy(reference.DelayLine(2, 12), seq_len=16, batch_size=2)
    raise AssertionError("a helper did not skip")

def test_auditor():
    ght.Auditor().audit(reference.DelayLine(2, 12), seq_len=16, batch_size=2)
    raise AssertionError("the auditor did not skip")

def test_plain():
    pass
"""


@pytest.mark.parametrize(
    ("how", "source"),
    [
        ("option", "option --gradhealth-skip"),
        ("env", "environment variable GRADHEALTH_SKIP"),
        ("ini", "ini key gradhealth_skip in tox.ini"),
    ],
)
def test_skip_switch_skips_every_gradient_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str, source: str
) -> None:
    pytester.makepyfile(GRADIENT_TESTS)
    args = ["-rs"]
    if how == "option":
        args.append("--gradhealth-skip")
    elif how == "env":
        monkeypatch.setenv("GRADHEALTH_SKIP", "yes")
    else:
        pytester.makeini("[pytest]\ngradhealth_skip = true\n")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1, skipped=4)
    result.stdout.fnmatch_lines([f"SKIPPED * gradient-health tests skipped ({source})"])
    result.stdout.no_fnmatch_line("*_auditor.py*")  # a helper's skip points at the test's own line


def test_skip_switch_off_runs_them(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADHEALTH_SKIP", "false")
    pytester.makepyfile(GRADIENT_TESTS)
    pytester.runpytest().assert_outcomes(passed=1, failed=4)


def test_skip_switch_is_strict(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADHEALTH_SKIP", "maybe")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: invalid skip 'maybe' from environment variable GRADHEALTH_SKIP: must be true or false*"]
    )


def test_header_names_non_default_settings_and_sources(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ngradhealth_batch_size = 4\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--gradhealth-seq-len=20")
    result.stdout.fnmatch_lines(
        [
            "gradhealth: seq_len = 20  (option --gradhealth-seq-len)",
            "gradhealth: batch_size = 4  (ini key gradhealth_batch_size in tox.ini)",
        ]
    )
    quiet = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    quiet.stdout.no_fnmatch_line("gradhealth: seq_len*")


def _documented_markers() -> str:
    parser = configparser.ConfigParser()
    parser.read(EXAMPLE_INI, encoding="utf-8")
    return parser["pytest"]["markers"]


MARKED = """
import pytest

@pytest.mark.gradhealth(seq_len=8)
def test_marked():
    pass
"""


# pytest caches known marker names process-wide, so marker registration is only tested in a fresh process.
def test_disabled_plugin_collects_with_the_documented_marker_declaration(pytester: pytest.Pytester) -> None:
    markers = _documented_markers()
    assert markers.strip().startswith("gradhealth")
    pytester.makeini("[pytest]\nmarkers =" + markers.replace("\n", "\n    ") + "\n")
    pytester.makepyfile(MARKED)
    disabled = pytester.runpytest_subprocess("-p", "no:gradhealth", "--strict-markers")
    disabled.assert_outcomes(passed=1)
    enabled = pytester.runpytest_subprocess("--strict-markers")  # the plugin accepts the user's declaration
    enabled.assert_outcomes(passed=1)
    listed = pytester.runpytest_subprocess("--markers").stdout.str()
    assert listed.count("@pytest.mark.gradhealth") == 1
