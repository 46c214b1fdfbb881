"""The pytest plugin driven through real flags with pytester.

Inner suites audit reference models with analytic profiles: ``LinearRecurrence(2, 0.5)`` has g(k) = 0.5^k exactly
(horizon@0.01 = 7, horizon@1e-3 = 10, decay rate ln 0.5), ``DelayLine(2, 12)`` has horizon exactly 12.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# Imported here, before any in-process inner run: pytester restores sys.modules after each run, and modules first
# imported inside one would be imported twice, giving two copies of the probe classes.
import gradhealth.engine
import gradhealth.testing._assertions  # noqa: F401
from gradhealth.report import Report, decode_floats

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest
from gradhealth import reference

@pytest.fixture
def decaying():
    return reference.LinearRecurrence(2, 0.5)

@pytest.fixture
def delay():
    return reference.DelayLine(2, 12)
"""
INI = "[pytest]\ngradhealth_batch_size = 4\n"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    return pytester


def test_passing_and_failing_outcomes(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.gradhealth(seq_len=16, min_horizon=12)
        def test_delay_remembers(gradhealth, delay):
            gradhealth.check(delay)

        @pytest.mark.gradhealth(seq_len=16, min_horizon=13)
        def test_delay_too_short(gradhealth, delay):
            gradhealth.check(delay)

        @pytest.mark.gradhealth(seq_len=16)
        def test_decaying_vanishes(gradhealth, decaying):
            gradhealth.check(decaying)
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*failed: horizon 12 < min 13 steps*"])


def test_failure_message_line_by_line(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import gradhealth.testing as ght

        def test_decaying(decaying):
            ght.assert_no_vanishing(decaying, over=16)
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    # g(k) = 0.5^k for k = 0..16: lags reaching each decade are k <= 0, 3, 6, 9, 13, 16.
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: gradhealth: assert_no_vanishing(over=16) failed for LinearRecurrence",
            "E       verdict: VANISHING",
            "E       failed: verdict vanishing is in fail-on (finite_memory, inconclusive, non_finite, vanishing)",
            "E         because horizon@0.01 = 7 steps <= K = 16: the gradient fades before the dependency",
            "E       measured: horizon@0.01 7 steps, horizon@1e-3 10 steps, "
            "decay rate -0.693/step (tail -0.693, R² 1)*",
            # (fnmatch reads [ as a character class: ? stands for the brackets)
            "E         90% intervals: horizon ?7, 7?, horizon@1e-3 ?10, 10?, decay rate ?-0.693, -0.693?, *",
            "E       lag profile g(k) = G(k)/G(0), log10 scale:",
            "E         1e+00 │█",
            "E         1e-01 │████",
            "E         1e-02 │███████" + " " * 10 + "  ← ε",
            "E         1e-03 │██████████",
            "E         1e-04 │██████████████",
            "E         1e-05 │█████████████████",
            "E               └─────────────────",
            "E                lag 0      lag 16",
            "E       findings:",
            "E         GH001 warning: gradient vanishes before the dependency length: *",
            "E           advice: Use gated cells*",
            "E       reproduce:",
            "E         gradhealth.audit(model, seq_len=16, input_size=2, batch_size=4, task='noise', input_scale=1.0, "
            "burn_in=16, eps=0.01, seed=0, dtype='float64', device='cpu', probes='quick')",
        ]
    )
    # Helper frames are hidden: the traceback stops at the user's line.
    result.stdout.no_fnmatch_line("*_assertions.py*")
    result.stdout.no_fnmatch_line("*_auditor.py*")


def test_marker_overrides_option_env_and_ini(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADHEALTH_SEQ_LEN", "24")
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.gradhealth(seq_len=16)
        def test_marker(gradhealth, decaying):
            report = gradhealth.audit(decaying)
            assert report.config["seq_len"] == 16
            assert gradhealth.settings.source("seq_len") == "marker on test_marker"

        def test_option(gradhealth, decaying):
            assert gradhealth.audit(decaying).config["seq_len"] == 20
            assert gradhealth.settings.source("seq_len") == "option --gradhealth-seq-len"
        """
    )
    suite.runpytest("--gradhealth-seq-len=20").assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("env", "option", "expected", "source"),
    [
        (None, None, 4, "ini key gradhealth_batch_size in tox.ini"),
        ("5", None, 5, "environment variable GRADHEALTH_BATCH_SIZE"),
        ("5", "6", 6, "option --gradhealth-batch-size"),
    ],
)
def test_option_precedence(
    suite: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    env: str | None,
    option: str | None,
    expected: int,
    source: str,
) -> None:
    if env is not None:
        monkeypatch.setenv("GRADHEALTH_BATCH_SIZE", env)
    suite.makepyfile(
        f"""
        def test_layers(gradhealth):
            assert gradhealth.settings.values["batch_size"] == {expected}
            assert gradhealth.settings.source("batch_size") == {source!r}
        """
    )
    args = [f"--gradhealth-batch-size={option}"] if option else []
    suite.runpytest(*args).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("option", "ERROR: invalid seq_len 'abc' from option --gradhealth-seq-len: must be an integer >= 1"),
        ("env", "ERROR: invalid dtype 'float8' from environment variable GRADHEALTH_DTYPE: use one of *"),
        ("ini", "ERROR: invalid fail_on 'fine' from ini key gradhealth_fail_on in tox.ini: verdicts are *"),
    ],
)
def test_bad_session_values_are_usage_errors(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setup: str, message: str
) -> None:
    suite.makepyfile("def test_nothing(): pass")
    args = []
    if setup == "option":
        args = ["--gradhealth-seq-len=abc"]
    elif setup == "env":
        monkeypatch.setenv("GRADHEALTH_DTYPE", "float8")
    else:
        suite.makeini(INI + "gradhealth_fail_on = fine\n")
    result = suite.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_marker_values_error_the_test(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.gradhealth(seq_len="abc")
        def test_lstm(gradhealth):
            pass

        @pytest.mark.gradhealth(seqlen=10)
        def test_typo(gradhealth):
            pass

        @pytest.mark.gradhealth(16)
        def test_positional(gradhealth):
            pass
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "invalid seq_len 'abc' from marker on test_lstm: must be an integer >= 1",
            "invalid setting 'seqlen' from marker on test_typo: unknown gradhealth setting; did you mean seq_len?",
            "invalid marker arguments (16,) from marker on test_positional: use keywords*",
        ]
    )
    result.stdout.no_fnmatch_line("*During handling*")


MARKED = """
import pytest

@pytest.mark.gradhealth(seq_len=8)
def test_marked():
    pass
"""


# pytest caches known marker names process-wide, so marker registration is only tested in a fresh process.
def test_marker_registered_under_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MARKED)
    pytester.runpytest_subprocess("--strict-markers").assert_outcomes(passed=1)
    markers = pytester.runpytest_subprocess("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.gradhealth(**settings): gradient-health audit settings*"])


def test_help_shares_texts_between_option_and_ini(suite: pytest.Pytester) -> None:
    from gradhealth.settings import SETTINGS

    result = suite.runpytest("--help")
    result.stdout.fnmatch_lines(["gradient health of recurrent models (gradhealth):", "*--gradhealth-seq-len=SEQ_LEN*"])
    result.stdout.fnmatch_lines(["*gradhealth_seq_len (string):*"])
    assert result.stdout.str().count(SETTINGS["seq_len"].help.split(":")[0]) >= 2


def test_disabled_with_p_no_gradhealth(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_marked=MARKED, test_fixture="def test_fixture(gradhealth):\n    pass\n")
    marked = pytester.runpytest_subprocess("-p", "no:gradhealth", "--strict-markers", "test_marked.py")
    marked.assert_outcomes(errors=1)
    marked.stdout.fnmatch_lines(["*'gradhealth' not found in `markers` configuration option*"])
    fixture = pytester.runpytest_subprocess("-p", "no:gradhealth", "test_fixture.py")
    fixture.assert_outcomes(errors=1)
    fixture.stdout.fnmatch_lines(["*fixture 'gradhealth' not found*"])
    help_text = pytester.runpytest_subprocess("-p", "no:gradhealth", "--help").stdout.str()
    assert "--gradhealth-seq-len" not in help_text


def _inner_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_models="""
        import pytest
        import gradhealth.testing as ght

        @pytest.mark.gradhealth(seq_len=16)
        def test_decaying(gradhealth, decaying):
            gradhealth.audit(decaying, name="decaying")

        def test_delay(delay):
            ght.assert_memory_horizon(delay, at_least=12, seq_len=16, name="delay")

        def test_two_audits(gradhealth, decaying, delay):
            gradhealth.audit(decaying, seq_len=16, name="first")
            gradhealth.audit(delay, seq_len=16, name="second")

        def test_no_audit():
            pass
        """
    )


def _check_session_report(path: Path) -> None:
    entries = json.loads(path.read_text(encoding="utf-8"))
    assert [(e["nodeid"], e["model"]) for e in entries] == [
        ("test_models.py::test_decaying", "decaying"),
        ("test_models.py::test_delay", "delay"),
        ("test_models.py::test_two_audits", "first"),
        ("test_models.py::test_two_audits", "second"),
    ]
    reports = [Report.from_dict(decode_floats(e["report"])) for e in entries]
    assert [r.metrics.horizon for r in reports] == [7, 12, 7, 12]
    assert reports[0].metrics.decay_rate == pytest.approx(math.log(0.5), abs=1e-9)
    assert reports[1].config["batch_size"] == 4


def test_session_report_json_and_terminal_summary(suite: pytest.Pytester) -> None:
    _inner_suite(suite)
    result = suite.runpytest("--gradhealth-report=out/audits.json")
    result.assert_outcomes(passed=4)
    _check_session_report(suite.path / "out" / "audits.json")
    result.stdout.fnmatch_lines(
        [
            "*= gradhealth =*",
            # Every sample of these models has the same profile: the bootstrap interval has zero width.
            "test_models.py::test_decaying    decaying  vanishing  horizon 7 steps [7, 7] 90%     "
            "decay rate -0.693/step",
            "test_models.py::test_delay       delay     vanishing  horizon 12 steps [12, 12] 90%  decay rate 0/step",
            "test_models.py::test_two_audits  first  *",
            "test_models.py::test_two_audits  second *",
            f"gradhealth: 4 audit(s) written to {suite.path / 'out' / 'audits.json'}",
        ]
    )


def test_terminal_summary_horizon_interval(suite: pytest.Pytester) -> None:
    """A model whose samples differ gets a real interval around its horizon, at the configured level; with the
    bootstrap off the line shows the horizon alone."""
    suite.makepyfile(
        test_noisy="""
        import pytest
        import torch
        from gradhealth import reference

        class Mixed(torch.nn.Module):
            # Sample b runs h_t = a_b h_{t-1} + x_t with its own a_b: horizons ln(0.01)/ln(a_b) from 4 to 21 steps.
            def __init__(self):
                super().__init__()
                self.a = torch.linspace(0.3, 0.8, 4).repeat(4)

            def forward(self, x):
                h, outs = torch.zeros_like(x[:, 0]), []
                for t in range(x.shape[1]):
                    h = self.a[: x.shape[0], None] * h + x[:, t]
                    outs.append(h)
                return torch.stack(outs, 1)

        @pytest.mark.gradhealth(seq_len=32, batch_size=16, input_size=2, interval_level=0.8, fail_on=[])
        def test_mixed(gradhealth):
            gradhealth.audit(Mixed(), name="mixed")

        @pytest.mark.gradhealth(seq_len=16, fail_on=[])
        def test_growing(gradhealth):
            # g(k) = 1.1^k never falls below 0.01: horizon and both interval ends are infinite
            gradhealth.audit(reference.LinearRecurrence(2, 1.1), name="growing")
        """
    )
    result = suite.runpytest("--gradhealth-report=out.json", "-k", "mixed")
    result.assert_outcomes(passed=1)
    metrics = json.loads((suite.path / "out.json").read_text(encoding="utf-8"))[0]["report"]["metrics"]
    low, high = metrics["intervals"]["horizon"]
    assert metrics["interval_level"] == 0.8
    assert low < metrics["horizon"] < high  # the samples' horizons spread from 4 to 21: a real interval
    assert low >= 4 and high <= 21
    result.stdout.fnmatch_lines([f"*mixed*horizon {metrics['horizon']:g} steps [[]{low:g}, {high:g}] 80%  decay*"])

    # An interval [∞, ∞] adds nothing to "∞ (not reached)": it is left out.
    result = suite.runpytest("-k", "growing")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*growing*horizon ∞ (not reached within K; g does not decay)  decay rate 0.0953/step"])

    result = suite.runpytest("--gradhealth-report=out.json", "--gradhealth-bootstrap-samples=0", "-k", "mixed")
    result.assert_outcomes(passed=1)
    assert json.loads((suite.path / "out.json").read_text(encoding="utf-8"))[0]["report"]["metrics"]["intervals"] == {}
    result.stdout.fnmatch_lines(["*mixed*horizon * steps  decay rate*"])
    result.stdout.no_fnmatch_line("*mixed*horizon*[[]*")


def test_no_summary_when_nothing_audited(suite: pytest.Pytester) -> None:
    suite.makepyfile("def test_plain(): pass")
    result = suite.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*= gradhealth =*")


def test_junit_properties(suite: pytest.Pytester) -> None:
    _inner_suite(suite)
    suite.runpytest("--junitxml=junit.xml").assert_outcomes(passed=4)
    root = ET.parse(suite.path / "junit.xml").getroot()
    props = {
        case.get("name"): [
            json.loads(p.get("value", "")) for p in case.iter("property") if p.get("name") == "gradhealth"
        ]
        for case in root.iter("testcase")
    }
    assert [(p["model"], p["verdict"], p["horizon"]) for p in props["test_two_audits"]] == [
        ("first", "vanishing", 7.0),
        ("second", "vanishing", 12.0),
    ]
    assert props["test_decaying"][0]["decay_rate"] == pytest.approx(math.log(0.5), abs=1e-9)
    assert props["test_no_audit"] == []


def test_xdist_gathers_on_the_controller(suite: pytest.Pytester) -> None:
    _inner_suite(suite)
    result = suite.runpytest_subprocess("-n", "2", "--gradhealth-report=audits.json", "--junitxml=junit.xml")
    result.assert_outcomes(passed=4)
    _check_session_report(suite.path / "audits.json")
    result.stdout.fnmatch_lines(["*= gradhealth =*", "gradhealth: 4 audit(s) written to *audits.json"])
    root = ET.parse(suite.path / "junit.xml").getroot()
    assert sum(1 for p in root.iter("property") if p.get("name") == "gradhealth") == 4


def test_plugin_import_leaves_torch_and_numpy_out() -> None:
    code = (
        "import sys, gradhealth.pytest_plugin\n"
        "heavy = [m for m in ('torch', 'numpy', 'gradhealth.engine') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
