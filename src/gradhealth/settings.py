"""One table of every gradhealth setting, from which every face is made.

Each :class:`Setting` has a name, a value type (its parser), a default, a help text, the faces that carry it, named
face-specific defaults, and whether it lets a file run code. From it come :class:`~gradhealth.config.AuditConfig`'s
defaults, the ``gradhealth audit`` options and ``[tool.gradhealth]`` keys, and the pytest options, ini keys,
environment variables and marker arguments. One name per setting everywhere:

=================  ==========================================================================================
face               how ``seq_len`` is written
=================  ==========================================================================================
Python API         ``gradhealth.audit(model, seq_len=...)`` (and :class:`~gradhealth.config.AuditConfig`)
CLI                ``gradhealth audit --seq-len ...``
pyproject          ``[tool.gradhealth]`` ``seq-len = ...`` or ``seq_len = ...``
pytest             ``--gradhealth-seq-len``, ``GRADHEALTH_SEQ_LEN``, ini ``gradhealth_seq_len``
marker             ``@pytest.mark.gradhealth(seq_len=...)``, and the keyword arguments of ``gradhealth.testing``
=================  ==========================================================================================

Precedence, highest first. pytest: call arguments > marker > ``--gradhealth-*`` options > ``GRADHEALTH_*``
environment variables > ``gradhealth_*`` ini keys > default. CLI: command line > ``[tool.gradhealth]`` > default.
A :class:`Resolved` object records each value and where it came from.

To add a setting, add one :class:`Setting` to :data:`TABLE`; an audit setting also needs its
:class:`~gradhealth.config.AuditConfig` field (a test checks the two agree).

Standard library only: the pytest plugin imports this module at start-up.

    >>> from gradhealth.settings import SETTINGS
    >>> SETTINGS["seq_len"].parse("64", source="--seq-len")
    64
    >>> SETTINGS["seq_len"].pytest_option, SETTINGS["seq_len"].env_var
    ('--gradhealth-seq-len', 'GRADHEALTH_SEQ_LEN')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from gradhealth._setting_types import (
    Boolean,
    ByteSize,
    Choice,
    DataFileSpec,
    FactorySpec,
    FilePath,
    HorizonDropText,
    Integer,
    IntList,
    InvalidValueError,
    JsonObject,
    NameList,
    Number,
    ProbeSet,
    Text,
    ValueType,
    Verdicts,
    did_you_mean,
)
from gradhealth.errors import ConfigError

__all__ = [
    "API",
    "AUDIT",
    "CLI",
    "DTYPES",
    "FACES",
    "FORMATS",
    "GATE",
    "LOADING",
    "MARKER",
    "OUTPUT",
    "PRESETS",
    "PROBE",
    "PYPROJECT",
    "PYTEST",
    "SESSION",
    "SETTINGS",
    "TABLE",
    "FaceDefault",
    "Layer",
    "Resolved",
    "Setting",
    "carried_by",
    "check_horizon_within_reach",
    "display",
    "parse_layer",
    "resolve",
]

# Faces: who reads a setting.
API = "api"  #: ``gradhealth.audit(...)`` keyword arguments and AuditConfig fields
CLI = "cli"  #: ``gradhealth audit`` options
PYPROJECT = "pyproject"  #: ``[tool.gradhealth]`` keys, read by the CLI
PYTEST = "pytest"  #: ``--gradhealth-*`` options, ``GRADHEALTH_*`` environment variables, ``gradhealth_*`` ini keys
MARKER = "marker"  #: ``@pytest.mark.gradhealth(...)`` and the keyword arguments of ``gradhealth.testing``
FACES = (API, CLI, PYPROJECT, PYTEST, MARKER)

# Groups: what consumes a setting.
AUDIT = "audit"  #: an AuditConfig field that shapes the probe input (and so every number)
PROBE = "probe"  #: an AuditConfig field read by one probe only
GATE = "gate"  #: a threshold of gradhealth.gates
LOADING = "loading"  #: how the CLI loads or rebuilds a checkpoint's model
OUTPUT = "output"  #: how the CLI runs and presents
SESSION = "session"  #: the pytest session

#: Probe dtype names; ``None`` (``auto``) follows the model (float32 or float64; half precision in float32) and
#: measures a float32 audit again in float64 when float32 leaves a lag of the profile unresolved.
DTYPES = ("float64", "float32", "bfloat16", "float16")

#: Named probe sets. Probes not registered (or not applicable to the model) are skipped.
PRESETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "quick": ("lag_profile",),
        "standard": ("lag_profile", "parameter_gradients", "spectrum", "gates"),
        "thorough": (
            "lag_profile",
            "parameter_gradients",
            "spectrum",
            "gates",
            "state_gradients",
            "length_scan",
            "lyapunov",
        ),
    }
)

#: Output format names, the same in every command that writes one (see docs/cli.md for which supports which).
FORMATS = ("table", "json", "markdown", "junit", "github", "html")

_EVERY_FACE = frozenset(FACES)
_GATE_FACES = frozenset({CLI, PYPROJECT, PYTEST, MARKER})
_CLI_AND_FILE = frozenset({CLI, PYPROJECT})
_CLI_ONLY = frozenset({CLI})
_PYTEST_ONLY = frozenset({PYTEST})


class FaceDefault(NamedTuple):
    """A face's own default for one setting, and why it may differ (it must not change any number)."""

    #: The face whose default this is.
    face: str
    #: The default there.
    value: Any
    #: Why, shown in the docs.
    reason: str


class Setting:
    """One setting: what it is, how it is parsed, its default, and where it can be given (immutable by convention).

    Attributes:
        name: the one name (``seq_len``); faces derive theirs from it (``--seq-len``, ``GRADHEALTH_SEQ_LEN``).
        type: the value type that parses and validates it.
        default: the default of every face, unless ``face_defaults`` names another for one face.
        help: one help text, shared by the CLI option, the pytest option and the ini key.
        faces: the faces that carry it.
        group: what consumes it: :data:`AUDIT`, :data:`PROBE`, :data:`GATE`, :data:`LOADING`, :data:`OUTPUT`,
            :data:`SESSION`.
        face_defaults: named per-face defaults.
        runs_code: it lets a file run code (a trust flag, allowed globals, a model factory): never read from a
            config file, only from the command line or code.
        short_flags: extra command-line spellings (``-f``).
        default_text: how the default reads in help texts when the value alone does not say it (``None``).
    """

    # A plain class, not a dataclass: the pytest plugin imports the table at start-up (see _setting_types).
    __slots__ = (
        "default",
        "default_text",
        "face_defaults",
        "faces",
        "group",
        "help",
        "name",
        "runs_code",
        "short_flags",
        "type",
    )

    def __init__(
        self,
        name: str,
        type: ValueType,
        default: Any,
        help: str,
        faces: frozenset[str],
        group: str,
        *,
        face_defaults: tuple[FaceDefault, ...] = (),
        runs_code: bool = False,
        short_flags: tuple[str, ...] = (),
        default_text: str | None = None,
    ) -> None:
        self.name, self.type, self.default, self.help = name, type, default, help
        self.faces, self.group, self.face_defaults = faces, group, face_defaults
        self.runs_code, self.short_flags, self.default_text = runs_code, short_flags, default_text

    def __repr__(self) -> str:
        return f"Setting({self.name!r}, {self.type!r}, default={self.default!r})"

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The allowed values, where they are a fixed list."""
        return self.type.choices

    @property
    def is_flag(self) -> bool:
        """A true/false setting: a flag without a value on the command line."""
        return isinstance(self.type, Boolean)

    @property
    def is_repeatable(self) -> bool:
        """A list of names: a flag given once per name on the command line."""
        return isinstance(self.type, NameList)

    @property
    def flag(self) -> str:
        """The command-line flag: ``--seq-len``."""
        return "--" + self.name.replace("_", "-")

    @property
    def pytest_option(self) -> str:
        """``--gradhealth-seq-len``."""
        return "--gradhealth-" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        """``GRADHEALTH_SEQ_LEN``."""
        return "GRADHEALTH_" + self.name.upper()

    @property
    def ini_key(self) -> str:
        """``gradhealth_seq_len``."""
        return "gradhealth_" + self.name

    def default_for(self, face: str) -> Any:
        """The default on one face (its named override, else the table default)."""
        return next((d.value for d in self.face_defaults if d.face == face), self.default)

    def default_source(self, face: str) -> str:
        """How a defaulted value's source reads: ``default`` or ``pytest default``."""
        return f"{face} default" if any(d.face == face for d in self.face_defaults) else "default"

    def describe_default(self, face: str) -> str:
        """The default as help texts show it."""
        value = self.default_for(face)
        if self.default_text is not None and value == self.default:
            return self.default_text
        return display(value)

    def parse(self, raw: object, *, source: str) -> Any:
        """Text or a typed value to the typed value.

        Raises:
            ConfigError: naming the setting, the raw value and ``source``.
        """
        try:
            return self.type.parse(raw)
        except InvalidValueError as exc:
            raise ConfigError(self.name, raw, str(exc), source=source) from None

    def check(self, value: object, *, source: str) -> Any:
        """Validate a typed value (the Python API: no text conversion).

        Raises:
            ConfigError: naming the setting, the value and ``source``.
        """
        try:
            return self.type.check(value)
        except InvalidValueError as exc:
            raise ConfigError(self.name, value, str(exc), source=source) from None


def display(value: Any) -> str:
    """A setting's value as a person reads it: ``100``, ``auto``, ``16,32,64``, ``exploding,non_finite``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (frozenset, set)):
        return ",".join(sorted(value)) or "none"
    if isinstance(value, (tuple, list)):
        return ",".join(display(v) for v in value) or "none"
    if isinstance(value, dict):
        import json

        return json.dumps(value)
    return str(value)


def _setting(
    name: str,
    type: ValueType,
    default: Any,
    help: str,
    faces: frozenset[str],
    group: str,
    **extra: Any,
) -> Setting:
    return Setting(name, type, default, help, faces, group, **extra)


_PYTEST_PROBES = FaceDefault(
    PYTEST,
    "quick",
    "tests gate on the lag profile only; the quick preset runs just that probe, so no number changes",
)

#: Every setting, in the order help texts and listings show them.
TABLE: tuple[Setting, ...] = (
    # The probe input (AuditConfig): the same on every face.
    _setting("seq_len", Integer(minimum=1), 100, "dependency length K: lags 0..K are probed", _EVERY_FACE, AUDIT),
    _setting(
        "input_size",
        Integer(minimum=1, optional=True),
        None,
        "features per step, for a model that does not tell",
        _EVERY_FACE,
        AUDIT,
        default_text="inferred from the model",
    ),
    _setting(
        "batch_size",
        Integer(minimum=1),
        32,
        "number of probe sequences; the spread of the horizon shrinks as 1/sqrt(batch_size)",
        _EVERY_FACE,
        AUDIT,
    ),
    _setting(
        "task",
        Text(),
        "noise",
        "synthetic input task: noise, impulse, copy, adding, delayed_recall, or a plugin's",
        _EVERY_FACE,
        AUDIT,
    ),
    _setting(
        "input_scale",
        Number(low=0.0, low_open=True),
        1.0,
        "standard deviation s of the probe inputs",
        _EVERY_FACE,
        AUDIT,
    ),
    _setting(
        "burn_in",
        Integer(minimum=0, optional=True),
        None,
        "steps run before the probed window",
        _EVERY_FACE,
        AUDIT,
        default_text="seq_len, so lags are measured in steady state",
    ),
    _setting(
        "eps",
        Number(low=0.0, high=1.0, low_open=True, high_open=True),
        1e-2,
        "horizon threshold ε on the normalised profile g(k) (1e-3 is always reported too)",
        _EVERY_FACE,
        AUDIT,
    ),
    _setting(
        "seed",
        Integer(minimum=0),
        0,
        "seed of every random draw of the probes: same seed, same numbers",
        _EVERY_FACE,
        AUDIT,
    ),
    _setting(
        "dtype",
        Choice(optional=True, names=DTYPES),
        None,
        "probe dtype: float64, float32, bfloat16, float16 or auto",
        _EVERY_FACE,
        AUDIT,
        default_text="auto: the model's own (float32 or float64), float64 where float32 leaves a lag unresolved",
    ),
    _setting(
        "device",
        Text(optional=True),
        None,
        "probe device, e.g. cpu or cuda",
        _EVERY_FACE,
        AUDIT,
        default_text="the model's own",
    ),
    _setting(
        "probes",
        ProbeSet(presets=tuple(PRESETS)),
        "standard",
        "probe preset (quick, standard, thorough) or comma-separated probe names",
        _EVERY_FACE,
        AUDIT,
        face_defaults=(_PYTEST_PROBES,),
    ),
    # Options of one probe each (AuditConfig).
    _setting(
        "length_scan_lengths",
        IntList(minimum=1),
        tuple(16 * 2**i for i in range(9)),
        "sequence lengths the length_scan probe measures, in order (comma-separated)",
        _EVERY_FACE,
        PROBE,
    ),
    _setting(
        "lyapunov_top_k",
        Integer(minimum=1),
        4,
        "Lyapunov exponents the lyapunov probe computes (at most the state size)",
        _EVERY_FACE,
        PROBE,
    ),
    _setting(
        "gradient_splits",
        Integer(minimum=1),
        1,
        "disjoint sub-batches of the parameter_gradients probe, one backward pass each; their mean norm is the "
        "suggested clipping threshold",
        _EVERY_FACE,
        PROBE,
    ),
    _setting(
        "summary",
        Choice(names=("rms", "median")),
        "rms",
        "how the per-sample gradient norms are summarised into the profile: rms (the metric contract) or median "
        "(robust when a few samples decide the verdict)",
        _EVERY_FACE,
        PROBE,
    ),
    _setting(
        "probe_vectors",
        Integer(minimum=1),
        1,
        "random seed vectors per probe sample: N backward passes, 1/N of the seed's variance in every norm",
        _EVERY_FACE,
        PROBE,
    ),
    _setting(
        "probe_mode",
        Choice(names=("random", "exact")),
        "random",
        "random: gaussian seed vectors (the metric contract); exact: every basis vector of the output, giving the "
        "Frobenius norm of each Jacobian block (one backward per output feature, at most 256)",
        _EVERY_FACE,
        PROBE,
    ),
    _setting(
        "interval_level",
        Number(low=0.0, high=1.0, low_open=True, high_open=True),
        0.9,
        "level of the interval reported on every headline number (a bootstrap over the probe samples)",
        _EVERY_FACE,
        PROBE,
    ),
    _setting(
        "bootstrap_samples",
        Integer(minimum=0),
        200,
        "bootstrap resamples behind each interval (0: no intervals)",
        _EVERY_FACE,
        PROBE,
    ),
    _setting(
        "target_horizon_precision",
        Number(low=0.0, low_open=True, optional=True, rule="must be a relative half-width > 0, e.g. 0.05"),
        None,
        "add probe batches until the horizon's interval is within this relative half-width of the horizon "
        "(e.g. 0.05 for 5 percent either side), at most max_probe_batches",
        _EVERY_FACE,
        PROBE,
        default_text="none: one batch",
    ),
    _setting(
        "max_probe_batches",
        Integer(minimum=1),
        8,
        "the most probe batches of batch_size samples target_horizon_precision may use",
        _EVERY_FACE,
        PROBE,
    ),
    _setting(
        "checkpoint_chunks",
        Integer(minimum=1),
        1,
        "trade time for memory: the lag profile's backward over the window runs in N checkpointed chunks, keeping "
        "about 1/N of the activations for one more forward; numbers unchanged (nn.RNN/LSTM/GRU and cells; other "
        "models run whole)",
        _EVERY_FACE,
        PROBE,
    ),
    # Gates (gradhealth.gates).
    _setting(
        "fail_on",
        Verdicts(optional=True),
        None,
        "comma-separated verdicts that fail: inconclusive, vanishing, exploding, non_finite",
        _GATE_FACES,
        GATE,
        default_text="none on the command line; in pytest every unhealthy verdict, or exploding,non_finite "
        "when a horizon bound is set",
    ),
    _setting(
        "min_horizon",
        Number(low=0.0, optional=True, rule="must be a number of steps >= 0"),
        None,
        "fail when the memory horizon is shorter than this many steps (at most seq_len)",
        _GATE_FACES,
        GATE,
    ),
    _setting(
        "max_horizon",
        Number(low=0.0, optional=True, rule="must be a number of steps >= 0"),
        None,
        "fail when the memory horizon is longer than this many steps",
        _GATE_FACES,
        GATE,
    ),
    _setting(
        "max_decay_rate",
        Number(optional=True, rule="must be a rate per step, e.g. 0.05"),
        None,
        "fail when the gradient decays faster than this rate per step (natural log)",
        _GATE_FACES,
        GATE,
    ),
    _setting(
        "gate_decision",
        Choice(names=("point", "conservative")),
        "point",
        "what a horizon or rate gate decides on: the point estimate, or the conservative end of its interval "
        "(a gate whose threshold lies inside the interval is reported borderline either way)",
        _GATE_FACES,
        GATE,
    ),
    _setting(
        "baseline",
        FilePath(optional=True),
        None,
        "a previous JSON report to compare horizons with",
        _CLI_AND_FILE,
        GATE,
    ),
    _setting(
        "max_horizon_drop",
        HorizonDropText(optional=True),
        None,
        "how far the horizon may fall below the baseline's: a percentage like 20% or a number of steps",
        _CLI_AND_FILE,
        GATE,
        default_text="0: any drop fails",
    ),
    # Loading checkpoints (the CLI). The first four let a file run code: command line only.
    _setting(
        "model",
        FactorySpec(optional=True),
        None,
        "build the architecture with package.module:factory, a callable returning an nn.Module",
        _CLI_ONLY,
        LOADING,
        runs_code=True,
        default_text="rebuild standard RNN/LSTM/GRU layers from the weights",
    ),
    _setting(
        "model_kwargs",
        JsonObject(optional=True),
        None,
        "JSON object of keyword arguments for the --model factory",
        _CLI_ONLY,
        LOADING,
        runs_code=True,
    ),
    _setting(
        "trust",
        Boolean(),
        False,
        "allow code in the file: pickled modules, TorchScript, .pt2, unsafe pickles",
        _CLI_ONLY,
        LOADING,
        runs_code=True,
    ),
    _setting(
        "allow_global",
        NameList(),
        (),
        "allow one class, module.Name, in the safe loader (repeatable)",
        _CLI_ONLY,
        LOADING,
        runs_code=True,
    ),
    _setting(
        "inputs",
        DataFileSpec(optional=True),
        None,
        "probe with the sequences in this file (.npy, .npz, .safetensors, .pt; FILE:KEY names one array): floats "
        "of shape B, T, D or token ids of shape B, T; seq_len and burn_in come from T unless given",
        _CLI_ONLY,
        LOADING,
        default_text="the synthetic task",
    ),
    _setting(
        "nonlinearity",
        Choice(optional=True, names=("tanh", "relu")),
        None,
        "nonlinearity of rebuilt nn.RNN layers: tanh or relu (the weights cannot tell)",
        _CLI_AND_FILE,
        LOADING,
        default_text="tanh, and the report says it was assumed",
    ),
    # How the CLI calls a model built by --model or found in a file (what the API's Layout says).
    _setting(
        "batch_first",
        Boolean(optional=True),
        None,
        "the model takes batch-first sequences (batch, time, features), or time-major ones (time, batch, "
        "features) with --no-batch-first; a value that contradicts the module's own batch_first is refused",
        _CLI_AND_FILE,
        LOADING,
        default_text="the module's own batch_first, else batch-first",
    ),
    _setting(
        "input_arg",
        Text(optional=True),
        None,
        "the forward argument that takes the sequence: a position (0, 1, ...) or a keyword name",
        _CLI_AND_FILE,
        LOADING,
        default_text="the first argument",
    ),
    _setting(
        "model_output",
        Text(optional=True),
        None,
        "what to take from the model's return value: a position (0, 1, ...) or a key or attribute name",
        _CLI_AND_FILE,
        LOADING,
        default_text="the tensor, or the first 3-D tensor it holds",
    ),
    _setting(
        "forecast_step",
        Integer(minimum=None, optional=True),
        None,
        "the model is a forecaster whose output's time axis is its forecast horizon (batch, horizon, outputs): "
        "audit this forecast step (0, 1, ...; negative counts from the end)",
        _CLI_AND_FILE,
        LOADING,
        default_text="the output's time axis is the input's",
    ),
    _setting(
        "step_per_call",
        Boolean(optional=True),
        None,
        "the model is a streaming one that takes ONE step (batch, features) per call and carries its state; "
        "it is reset with its reset_state, reset_states or reset_hidden method",
        _CLI_AND_FILE,
        LOADING,
        default_text="one call takes the whole sequence",
    ),
    _setting(
        "embedding",
        Text(optional=True),
        None,
        "dotted name of the nn.Embedding whose output receives the gradient (token-id models)",
        _CLI_AND_FILE,
        LOADING,
        default_text="the first nn.Embedding",
    ),
    _setting(
        "memory_limit",
        ByteSize(optional=True),
        4 * 2**30,
        "refuse an input whose file, tensors or probes would need more memory than this (e.g. 16GiB, or none), "
        "estimated before anything is allocated",
        _EVERY_FACE,
        LOADING,
        default_text="4GiB",
    ),
    _setting(
        "load_timeout",
        Number(low=0.0, low_open=True, optional=True, rule="must be a number of seconds > 0 (or none)"),
        300.0,
        "give up reading one input after this many seconds (none: wait for ever); the main thread only",
        _CLI_AND_FILE,
        LOADING,
    ),
    # Output and running (the CLI).
    _setting(
        "format",
        Text(),
        "table",
        "output format: table, json, markdown, junit, github, html, or a plugin's",
        _CLI_AND_FILE,
        OUTPUT,
        short_flags=("-f",),
    ),
    _setting(
        "output",
        FilePath(optional=True),
        None,
        "write the report to this file instead of stdout",
        _CLI_ONLY,
        OUTPUT,
        short_flags=("-o",),
        default_text="stdout",
    ),
    _setting(
        "plot",
        FilePath(optional=True),
        None,
        "write PNG plots of each audited model into this folder (needs matplotlib: the plot extra)",
        _CLI_ONLY,
        OUTPUT,
    ),
    _setting(
        "jobs", Integer(minimum=1), 1, "audit in N parallel processes", _CLI_AND_FILE, OUTPUT, short_flags=("-j",)
    ),
    _setting(
        "threads",
        Integer(minimum=1, optional=True),
        None,
        "torch CPU threads per job (for speed; a number may differ only by rounding)",
        _CLI_AND_FILE,
        OUTPUT,
        default_text="1 for models under a million parameters, else the CPUs this process may use divided by "
        "jobs (at least 1); OMP_NUM_THREADS if set",
    ),
    _setting(
        "progress",
        Boolean(),
        True,
        "show a progress bar (count, current file, time left) when several inputs are audited on a terminal",
        _CLI_AND_FILE,
        OUTPUT,
    ),
    _setting(
        "verbose",
        Boolean(),
        False,
        "print the settings in effect and where each came from (stderr)",
        _CLI_ONLY,
        OUTPUT,
    ),
    _setting("debug", Boolean(), False, "show tracebacks", _CLI_ONLY, OUTPUT),
    # The pytest session.
    _setting(
        "report",
        FilePath(optional=True),
        None,
        "write every gradhealth audit of the session to this JSON file (with the test node ids)",
        _PYTEST_ONLY,
        SESSION,
    ),
    _setting(
        "skip",
        Boolean(),
        False,
        "skip every gradient-health test: those marked gradhealth, using the gradhealth fixture, or calling "
        "gradhealth.testing",
        _PYTEST_ONLY,
        SESSION,
    ),
)

#: The table by name.
SETTINGS: Mapping[str, Setting] = MappingProxyType({s.name: s for s in TABLE})

#: Parsed values of one layer (one source kind): ``{name: (value, source)}``.
Layer = Mapping[str, tuple[Any, str]]

_FACE_WORDS = {
    API: "gradhealth.audit()",
    CLI: "the command line",
    PYPROJECT: "a config file",
    PYTEST: "pytest options, environment variables or ini keys",
    MARKER: "a marker or a gradhealth.testing call",
}


def carried_by(face: str, *groups: str) -> tuple[Setting, ...]:
    """The settings a face carries (in table order), optionally only those of some groups."""
    return tuple(s for s in TABLE if face in s.faces and (not groups or s.group in groups))


def parse_layer(raw: Mapping[str, object], *, face: str, source: str | Callable[[str], str]) -> dict[str, Any]:
    """Parse one layer of raw values given on one face.

    Args:
        raw: ``{name: raw value}``; on the :data:`PYPROJECT` face names may use ``-`` for ``_``.
        face: the face the values were given on.
        source: where they came from (``"/repo/pyproject.toml [tool.gradhealth]"``), or a function of the name.

    Returns:
        ``{name: (typed value, source)}``.

    Raises:
        ConfigError: an unknown name (with a "did you mean"), a name the face does not carry, a code-running
            setting in a config file, a name given twice, or an invalid value.
    """
    where = source if callable(source) else (lambda _name: source)
    layer: dict[str, tuple[Any, str]] = {}
    for key, value in raw.items():
        name = key.replace("-", "_") if face == PYPROJECT else key
        setting = _known(key, name, face, where(name))
        if name in layer:
            raise ConfigError("setting", key, f"{name} is given twice", source=where(name))
        layer[name] = (setting.parse(value, source=where(name)), where(name))
    return layer


def _known(key: str, name: str, face: str, source: str) -> Setting:
    setting = SETTINGS.get(name)
    if setting is None:
        candidates = [s.name for s in carried_by(face)]
        hint = did_you_mean(name, candidates) or f"; known settings: {', '.join(candidates)}"
        raise ConfigError("setting", key, f"unknown gradhealth setting{hint}", source=source)
    if face == PYPROJECT and setting.runs_code:
        raise ConfigError(
            "setting",
            key,
            f"{name} lets a file run code, so it is never read from a config file; pass {setting.flag} on the "
            "command line",
            source=source,
        )
    if face not in setting.faces:
        raise ConfigError("setting", key, f"{name} cannot be set from {_FACE_WORDS[face]}", source=source)
    return setting


class Resolved:
    """Settings of one face after precedence: every value, and the source of each one given explicitly.

    Attributes:
        face: the face resolved for (its face-specific defaults apply).
        values: ``{name: typed value}`` for every setting the face carries (read-only).
        sources: ``{name: source}`` for the values given explicitly; the rest are defaults (read-only).
    """

    __slots__ = ("face", "sources", "values")

    def __init__(self, face: str, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        self.face = face
        self.values: Mapping[str, Any] = MappingProxyType(dict(values))
        self.sources: Mapping[str, str] = MappingProxyType(dict(sources))

    def __repr__(self) -> str:
        return f"Resolved({self.face!r}, explicit={dict(self.sources)!r})"

    def source(self, name: str) -> str:
        """Where a value came from: its source, or ``default`` / ``pytest default``."""
        return self.sources.get(name) or SETTINGS[name].default_source(self.face)

    def explicit(self, *groups: str) -> dict[str, tuple[Any, str]]:
        """The values given explicitly, as a layer (optionally only those of some groups)."""
        return {
            name: (self.values[name], source)
            for name, source in self.sources.items()
            if not groups or SETTINGS[name].group in groups
        }

    def with_layers(self, *layers: Layer) -> Resolved:
        """These settings with more layers on top (later layers win)."""
        return resolve(self.face, [self.explicit(), *layers])

    def audit_kwargs(self) -> dict[str, Any]:
        """The values of the audit and probe settings: keyword arguments of :func:`gradhealth.audit`."""
        return {s.name: self.values[s.name] for s in carried_by(self.face, AUDIT, PROBE)}

    def gate_values(self) -> dict[str, Any]:
        """The values of the gate settings this face carries."""
        return {s.name: self.values[s.name] for s in carried_by(self.face, GATE)}

    def lines(self, *, explicit_only: bool = False) -> list[str]:
        """``name = value  (source)`` for each setting (only those given explicitly, if asked)."""
        shown = [s for s in carried_by(self.face) if not explicit_only or s.name in self.sources]
        return [f"{s.name} = {self._shown(s)}  ({self.source(s.name)})" for s in shown]

    def _shown(self, setting: Setting) -> str:
        value = self.values[setting.name]
        if value is None and setting.default_text is not None:
            return setting.default_text
        return display(value)


def resolve(face: str, layers: Iterable[Layer] = ()) -> Resolved:
    """Apply parsed layers, given lowest precedence first, over the face's defaults."""
    values = {s.name: s.default_for(face) for s in carried_by(face)}
    sources: dict[str, str] = {}
    for layer in layers:
        for name, (value, source) in layer.items():
            values[name] = value
            sources[name] = source
    return Resolved(face, values, sources)


def check_horizon_within_reach(resolved: Resolved) -> None:
    """A ``min_horizon`` gate must lie within the probed lags, or extrapolation would decide it.

    Raises:
        ConfigError: ``min_horizon`` exceeds ``seq_len``, naming both sources and what to set.
    """
    wanted, seq_len = resolved.values.get("min_horizon"), resolved.values["seq_len"]
    if wanted is None or wanted <= seq_len:
        return
    raise ConfigError(
        "min_horizon",
        int(wanted) if float(wanted).is_integer() else wanted,
        f"beyond seq_len {seq_len} (from {resolved.source('seq_len')}): the gate would be decided by "
        f"extrapolation; set seq_len >= {math.ceil(wanted)}",
        source=resolved.source("min_horizon"),
    )
