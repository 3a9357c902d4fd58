r"""Sweep configuration: a TOML file (or a preset) -> a validated, normalised `SweepConfig`.

A config names a ground truth (model family, expert, router, d, $k^*$, fitted k, true mixing measure, noise,
input law) and a Monte Carlo design (sizes, replicates, seed, solver). The schema, with defaults:

```toml
name = "my-truth"                   # label in tables and plots (default: the file name)

[model]
family = "softmax"                  # softmax | dense_to_sparse | hierarchical | sigmoid
expert = "sigmoid"                  # linear, sigmoid, tanh, gelu, relu, polynomial2, polynomial3, ffn-<activation>
router = "linear"                   # dense_to_sparse only: linear, tanh, sigmoid, gelu, mlp-tanh, mlp-sigmoid
d = 1                               # input dimension
k_star = 2                          # true atoms (hierarchical: experts per group, k2*)
k_fit = 3                           # fitted atoms, >= k_star (default k_star + 1; hierarchical: per group)
k1 = 2                              # hierarchical only: groups (known, fitted exactly)
box = { gate = 10.0, expert = 10.0, tau = [0.1, 10.0] }   # parameter box Theta (A.1)

[truth]                             # true parameters, atom axis first (checked against A.1-A.4)
beta0 = [0.0, 0.0]
beta1 = [[4.0], [0.0]]
eta = { a = [[3.0], [-2.5]], b = [-1.0, -0.5] }
# tau = 1.0                         # dense_to_sparse; kappa, omega (and beta0/beta1 per group): hierarchical

[data]
sigma = 0.1                         # noise standard deviation, >= 0
inputs = { law = "uniform", low = -1.0, high = 1.0 }   # or { law = "truncated_normal", std = 0.5, ... }

[sweep]
sizes = [300, 600, 1200, 2500, 5000, 10000, 20000]
replicates = 16
seed = 0

[solver]                            # arguments of `fit_curve`
name = "lm"                         # lm | lbfgs | adam
init = "near_truth"                 # near_truth | mixed | random
restarts = 32                       # default: 1 when k_fit == k_star, else 32
init_noise = 0.3                    # default: 0.1 when k_fit == k_star, else 0.3
init_noise_decay = 0.0              # noise at n: init_noise * n^-decay; with restarts = 1 the field's
                                    # oracle-initialised protocol (e.g. 0.005 n^-0.083); written only if > 0
init_scale = 3.0
prune_at = 0                        # successive halving (lm only): at this iteration each fit's prune_keep
prune_keep = 8                      # best starts go on, the others stop; prune_at = 0: off (both written only if on)
reference = false                   # also run a long refinement from the truth (reached-minimum check)
precision = "float64"
bucket_ratio = 1.25                 # sizes within this ratio share a chunk (file); on CPU every chunk one program
options = {}                        # the solver's own options (LMConfig fields for lm); gtol's default
                                    # scales with the noise: 1e-9 (sigma / 0.1)^2, at least 1e-14;
                                    # lm's max_iter: 1000 when k_fit > k_star, else 300; noise_window
                                    # (LM's noise-level stopping rule: objective down by < noise_ftol L / n
                                    # in that many iterations): 100 when k_fit > k_star and max_iter is not
                                    # set here, else 0 (off)

[engine]                            # speed only, not hashed; absent: fit_curve's per-device defaults
memory_gib = 2.0                    # per device (default: 2 on CPU, half the device's memory on an accelerator)
lanes = 4                           # LM work-queue width per device (default: 2 per CPU core; 512 on GPU/TPU)
block_size = 512                    # samples per normal-equation block (default: 512 on CPU; 0 = one block, GPU/TPU)
chunk_size = 64                     # most fits per compiled call (default: as memory allows)
```

Normalisation fills every default in (solver options included; `[solver]`'s defaults are `FitOptions`', the
same object `fit_curve` takes), so the stored config is the exact one used and its hash changes whenever
anything that can change a result changes, and only then: `[engine]` (speed), `labels` and `preset` are not
hashed, so the same sweep resumes on another machine with other lanes or memory. A folder made before `[engine]`
existed stored `memory_gib = 2.0` and `lanes = 0` in `[solver]`; written there, they are still read and hashed
as they were, so such a folder reports as before and resumes from a config that keeps those two lines. Unknown keys are errors.
Every error is a `JaxMoEInputError` naming the field (`section.key`), the value and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import os
import sys
from typing import Any

import numpy as np

from jaxmoe.validation import JaxMoEInputError, require
from jaxmoe.data import TruncatedNormalInputs, get_input_law
from jaxmoe.estimation import solvers
from jaxmoe.estimation.levenberg_marquardt import LMConfig
from jaxmoe.estimation.options import DEFAULT_BUCKET_RATIO, INIT_NAMES, PRECISION_NAMES, FitOptions
from jaxmoe.estimation.solvers import SOLVER_NAMES, get_solver
from jaxmoe.families import FAMILIES, ParameterBox, get_family
from jaxmoe.models.experts import EXPERT_NAMES, expert_key, get_expert
from jaxmoe.models.user import is_user_spec, source_hash
from jaxmoe.presets import PRESET_NAMES, Setting, get_preset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the same parser, from PyPI
    import tomli as tomllib

DEFAULT_SIZES = (300, 600, 1200, 2500, 5000, 10000, 20000)
DEFAULT_REPLICATES = 16
# [model] keys of every family ("sources" is computed: the hashes of user modules, never taken from a file);
# a family adds its own (`config_keys`).
BASE_MODEL_KEYS = ("family", "expert", "d", "k_star", "k_fit", "box", "sources")
# Descriptive (labels, preset) or speed-only (engine) sections: excluded from the config hash.
UNHASHED = ("labels", "preset", "engine")
INPUT_FIELDS = {"uniform": ("low", "high"), "truncated_normal": ("std", "low", "high")}
SECTIONS = {
    "": ("name", "model", "truth", "data", "sweep", "solver", "engine", "preset", "labels"),
    "model": BASE_MODEL_KEYS + tuple(sorted({key for family in FAMILIES.values() for key in family.config_keys})),
    "data": ("sigma", "inputs"),
    "sweep": ("sizes", "replicates", "seed"),
    "solver": ("name", "init", "restarts", "init_noise", "init_noise_decay", "init_scale", "prune_at", "prune_keep",
               "reference", "precision", "bucket_ratio", "options", "memory_gib", "lanes"),  # the last two: [engine]'s, as configs before it wrote them
    "engine": ("memory_gib", "lanes", "block_size", "chunk_size"),
    "labels": ("row", "theory", "why"),
}


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A normalised sweep configuration. `spec` is a plain JSON-able dict with every default filled in.

    `spec["labels"]` (preset row / theory / why) and `preset` are descriptive and excluded from `hash`;
    everything else can change a result and is hashed."""

    spec: dict
    raw: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # as written (for overrides)

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(self.spec["sweep"]["sizes"])

    @property
    def replicates(self) -> int:
        return self.spec["sweep"]["replicates"]

    @property
    def seed(self) -> int:
        return self.spec["sweep"]["seed"]

    def hashed(self) -> dict:
        """The part of the spec a result depends on."""
        return {k: v for k, v in self.spec.items() if k not in UNHASHED}

    @property
    def hash(self) -> str:
        text = json.dumps(self.hashed(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return copy.deepcopy(self.spec)

    def setting(self):
        """The `jaxmoe.Setting` this config describes (validates the truth: A.1-A.4, shapes, k_fit >= k*)."""
        return _build_setting(self.spec)

    def fit_kwargs(self) -> dict:
        """Keyword arguments of `fit_curve` (besides setting, sizes, replicates, seed)."""
        s = self.spec["solver"]
        return dict(solver=get_solver(s["name"], **s["options"]), init=s["init"], restarts=s["restarts"],
                    init_noise=s["init_noise"], init_noise_decay=s.get("init_noise_decay", 0.0),
                    init_scale=s["init_scale"], prune_at=s.get("prune_at", 0),
                    prune_keep=s.get("prune_keep", FitOptions().prune_keep), reference=s["reference"],
                    precision=s["precision"], bucket_ratio=s["bucket_ratio"],
                    # Every chunk padded to the whole curve's length: with run-time sample counts (the CPU
                    # default) all chunks then run one compiled program; the fits do not depend on it.
                    padded_length=int(max(self.sizes)), **self.spec["engine"])

    def design_warnings(self) -> list[str]:
        """One line per weakness of the design that is not an error: fewer than 3 sizes (no slope can be
        fitted), a size equal to the fitted model's number of free parameters (the fit interpolates the data)."""
        p = free_parameters(self.setting())
        out = [f"sweep.sizes={list(self.sizes)}: fewer than 3 sizes, so no slope can be fitted"] \
            if len(self.sizes) < 3 else []
        if p in self.sizes:
            out.append(f"sweep.sizes: n = {p} equals the fitted model's {p} free parameters: the fit interpolates")
        return out

    def replace(self, **overrides) -> "SweepConfig":
        """A new config with command-line overrides (`OVERRIDES`: `sizes`, `replicates`, `seed`, `k_fit`, `sigma`,
        `solver`, `restarts`, `init`, `prune_at`, `prune_keep`, `name`); `None` leaves a value as is. The
        overrides are applied to the config as written and the result re-validated, so defaults that depend on an overridden value (the
        number of restarts on `k_fit`, the options on the solver) are derived again."""
        return config_from_dict(apply_overrides(self.raw, overrides))


# Command-line overrides: the config field (dotted path) each one sets.
OVERRIDES = {"sizes": "sweep.sizes", "replicates": "sweep.replicates", "seed": "sweep.seed", "k_fit": "model.k_fit",
             "sigma": "data.sigma", "restarts": "solver.restarts", "init": "solver.init", "solver": "solver.name",
             "prune_at": "solver.prune_at", "prune_keep": "solver.prune_keep", "name": "name"}


def apply_overrides(raw: dict, overrides: dict) -> dict:
    """A copy of the config as written (`raw`) with `overrides` (keys of `OVERRIDES`; `None`: unchanged) set.
    A new solver drops the old one's options (they do not apply to it)."""
    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        require(key in OVERRIDES, "override", key, f"must be one of {list(OVERRIDES)}")
        if value is None:
            continue
        if key == "name":
            raw["name"] = value
            continue
        section, field = OVERRIDES[key].split(".")
        table = raw.setdefault(section, {})
        if key == "solver" and value != table.get("name", "lm"):
            table.pop("options", None)
        table[field] = value
    return raw


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Human-readable list of the fields where two (hashed) config dicts differ: `field: A vs B`."""
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if key not in a or key not in b:
            out.append(f"{name}: {json.dumps(a.get(key))} vs {json.dumps(b.get(key))}")
        elif isinstance(a[key], dict) and isinstance(b[key], dict):
            out.extend(differences(a[key], b[key], name + "."))
        elif a[key] != b[key]:
            out.append(f"{name}: {_brief(a[key])} vs {_brief(b[key])}")
    return out


def _brief(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- loading
def read_toml(path: str) -> dict:
    """A TOML config file as written (a dict), its `name` defaulting to the file's name; unreadable or
    invalid TOML is a `JaxMoEInputError` naming the file."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise JaxMoEInputError("config", path, "no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise JaxMoEInputError("config", path, f"is not valid TOML ({err})") from None
    except OSError as err:
        raise JaxMoEInputError("config", path, f"cannot be read ({err.strerror})") from None
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return raw


def load_config(path: str) -> SweepConfig:
    """Read and validate a TOML config file of one sweep (a file with a `[grid]`: `jaxmoe.sweeps.load_sweep`)."""
    raw = read_toml(path)
    require("grid" not in raw, "config", path, "has a [grid] (several sweeps, one per cell): read it with "
            "jaxmoe.sweeps.load_sweep")
    return config_from_dict(raw)


def preset_config(name: str) -> SweepConfig:
    """The config of a named preset (`jaxmoe presets`), written out explicitly: its truth is part of the hash,
    so a preset whose definition changes can never be mixed into a folder made with the old one."""
    return config_from_dict({"preset": name})


def setting_to_dict(setting) -> dict:
    """A `Setting` as a config dict (model, truth, data, labels); the sweep and solver sections are defaults."""
    require(getattr(setting, "data_truth", None) is None, "setting.data_truth", "set",
            "a local alternative has no config form (use jaxmoe.bounds.local_alternatives)")
    model = setting.model
    box = model.box
    spec_model = {"family": model.name, "expert": expert_key(model.expert), "d": int(model.d),
                  "k_star": int(setting.k_star), "k_fit": int(setting.k_fit),
                  "box": {"gate": float(box.gate), "expert": float(box.expert), "tau": [float(t) for t in box.tau]},
                  **model.config_entries()}
    law = setting.inputs
    inputs = {"law": "truncated_normal" if isinstance(law, TruncatedNormalInputs) else "uniform",
              **{k: float(v) for k, v in law._asdict().items()}}
    truth = {k: _tolist(v) for k, v in setting.truth._asdict().items()}
    return {"name": setting.name, "model": spec_model, "truth": truth,
            "data": {"sigma": float(setting.sigma), "inputs": inputs},
            "labels": {"row": setting.row, "theory": setting.theory, "why": setting.why}}


def _tolist(value):
    if isinstance(value, dict):
        return {k: _tolist(v) for k, v in value.items()}
    return np.asarray(value, dtype=np.float64).tolist()


# ---------------------------------------------------------------- validation
def _check_keys(section: str, table: Any) -> dict:
    field = section or "config"
    require(isinstance(table, dict), field, type(table).__name__, "must be a table")
    allowed = SECTIONS[section]
    for key in table:
        require(key in allowed, f"{section + '.' if section else ''}{key}", table[key],
                f"unknown key; {field} allows {list(allowed)}")
    return table


def _int(field: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    text = "an integer" + (f" >= {minimum}" if minimum is not None else "") + \
           (f" and < {maximum}" if maximum is not None else "")
    require(ok and (minimum is None or value >= minimum) and (maximum is None or value < maximum),
            field, value, f"must be {text}")
    return int(value)


def _float(field: str, value, minimum: float | None = None, strict: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and np.isfinite(value)
    bound = "" if minimum is None else (f" > {minimum}" if strict else f" >= {minimum}")
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    require(bool(ok), field, value, f"must be a finite number{bound}")
    return float(value)


def _str(field: str, value, choices) -> str:
    require(isinstance(value, str) and value in choices, field, value, f"must be one of {list(choices)}")
    return value


def check_sizes(field: str, sizes) -> list[int]:
    """Sample sizes: a non-empty list of distinct integers >= 1, returned sorted."""
    require(isinstance(sizes, (list, tuple)) and len(sizes) >= 1, field, sizes, "must be a non-empty list of integers")
    ok = all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in sizes)
    require(ok, field, list(sizes), "must be integers >= 1 (sample sizes)")
    require(len(set(sizes)) == len(sizes), field, list(sizes), "must not repeat a size")
    return sorted(int(n) for n in sizes)


def config_from_dict(raw: dict) -> SweepConfig:
    """Validate a config dict (as read from TOML) and fill every default in."""

    require(not isinstance(raw, dict) or "grid" not in raw, "grid", "...", "a config with a [grid] is several "
            "sweeps, one per cell: read it with jaxmoe.sweeps.grid_from_dict (or load_sweep for a file)")
    written = copy.deepcopy(_check_keys("", raw))
    raw = _expand_preset(copy.deepcopy(written))
    name = raw.get("name", "custom")
    require(isinstance(name, str) and name.strip() != "" and "\n" not in name, "name", name, "must be a one-line string")
    spec: dict = {"name": name}
    if "preset" in raw:
        spec["preset"] = raw["preset"]
    require("model" in raw and "truth" in raw, "config", sorted(raw),
            "needs a [model] and a [truth] table, or preset = NAME")

    family, spec["model"] = _read_model(raw["model"])

    # truth: the fields of the family, numbers only; shapes and A.1-A.4 are checked by the model below
    truth = raw["truth"]
    fields = family.params_type._fields
    require(isinstance(truth, dict) and set(truth) == set(fields), "truth", sorted(truth) if isinstance(truth, dict)
            else truth, f"must have exactly the keys {list(fields)} for family {spec['model']['family']!r}")
    spec["truth"] = {k: _numeric(f"truth.{k}", v) for k, v in truth.items()}

    # data
    data = _check_keys("data", raw.get("data", {}))
    inputs = data.get("inputs", {"law": "uniform"})
    if isinstance(inputs, str):
        inputs = {"law": inputs}
    require(isinstance(inputs, dict), "data.inputs", inputs, "must be a law name or a table with a 'law' key")
    law = _str("data.inputs.law", inputs.get("law", "uniform"), tuple(INPUT_FIELDS))
    for key in inputs:
        require(key == "law" or key in INPUT_FIELDS[law], f"data.inputs.{key}", inputs[key],
                f"unknown key; law {law!r} takes {list(INPUT_FIELDS[law])}")
    defaults = {"std": 0.5, "low": -1.0, "high": 1.0}
    spec_inputs = {"law": law}
    for key in INPUT_FIELDS[law]:
        spec_inputs[key] = _float(f"data.inputs.{key}", inputs.get(key, defaults[key]))
    require(spec_inputs["low"] < spec_inputs["high"], "data.inputs", inputs, "must have low < high")
    if law == "truncated_normal":
        _float("data.inputs.std", spec_inputs["std"], 0.0, strict=True)
    spec["data"] = {"sigma": _float("data.sigma", data.get("sigma", 0.1), 0.0), "inputs": spec_inputs}

    # sweep
    sweep = _check_keys("sweep", raw.get("sweep", {}))
    spec["sweep"] = {"sizes": check_sizes("sweep.sizes", sweep.get("sizes", list(DEFAULT_SIZES))),
                     "replicates": _int("sweep.replicates", sweep.get("replicates", DEFAULT_REPLICATES), 1),
                     "seed": _int("sweep.seed", sweep.get("seed", 0), 0, 2**31)}

    s = _check_keys("solver", raw.get("solver", {}))
    spec["solver"] = _read_solver(s, spec["model"]["k_fit"] > spec["model"]["k_star"], spec["data"]["sigma"])
    spec["engine"] = _read_engine(_check_keys("engine", raw.get("engine", {})), s, spec["solver"]["name"])
    for key in ("memory_gib", "lanes"):  # a config written before [engine]: hashed as it was, so its folder still
        if key in s:                     # reports and resumes (its chunks carry that hash)
            spec["solver"][key] = spec["engine"][key] if key == "memory_gib" else int(s[key])
    labels = raw.get("labels", {})
    _check_keys("labels", labels)
    spec["labels"] = {k: str(labels.get(k, "")) for k in SECTIONS["labels"]}
    config = SweepConfig(spec, written)
    p = free_parameters(config.setting())  # validates the truth against the model: shapes, box, A.2-A.4
    below = [n for n in spec["sweep"]["sizes"] if n < p]
    require(not below, "sweep.sizes", below, f"must be >= {p}, the fitted model's free parameters (k = "
            f"{spec['model']['k_fit']}): with fewer samples than parameters least squares has no unique fit")
    return config


def free_parameters(setting) -> int:
    """The fitted model's number of free parameters: coordinates of Theta the gauge leaves free."""
    return int(setting.fitted_model().free_coordinates().size)


def _read_solver(s: dict, overfitted: bool, sigma: float) -> dict:
    """The [solver] table: what the fits are (hashed), every default from `FitOptions`, written out."""
    defaults = FitOptions.defaults_dict(overfitted)
    name = _str("solver.name", s.get("name", defaults["solver"]), SOLVER_NAMES)
    restarts = s.get("restarts", defaults["restarts"])
    decay = _float("solver.init_noise_decay", s.get("init_noise_decay", 0.0), 0.0)
    return {
        **({"init_noise_decay": decay} if decay else {}),  # absent when 0: configs written before it hash as they did
        **_read_pruning(s, name, defaults),
        "name": name,
        "init": _str("solver.init", s.get("init", defaults["init"]), INIT_NAMES),
        "restarts": _int("solver.restarts", restarts, 1),
        "init_noise": _float("solver.init_noise", s.get("init_noise", defaults["init_noise"]), 0.0),
        "init_scale": _float("solver.init_scale", s.get("init_scale", defaults["init_scale"]), 0.0, strict=True),
        "reference": _bool("solver.reference", s.get("reference", defaults["reference"])),
        "precision": _str("solver.precision", s.get("precision", defaults["precision"]), PRECISION_NAMES),
        # A sweep's chunks (files) are its size buckets, so its ratio is always a number (fit_curve's None,
        # "automatic", would make one chunk of the whole curve).
        "bucket_ratio": _float("solver.bucket_ratio", s.get("bucket_ratio", DEFAULT_BUCKET_RATIO), 1.0),
        "options": _solver_options(name, s.get("options", {}), sigma, overfitted),
    }


def _read_pruning(s: dict, name: str, defaults: dict) -> dict:
    """`prune_at` and `prune_keep` (successive halving, `FitOptions`), both absent when pruning is off, so that
    configs written before them hash as they did; pruning needs the work queue, so LM."""
    at = _int("solver.prune_at", s.get("prune_at", 0), 0)
    keep = _int("solver.prune_keep", s.get("prune_keep", defaults["prune_keep"]), 1)
    if not at:
        return {}
    require(name == "lm", "solver.prune_at", at, f"pruning starts needs the work queue, so solver 'lm', not {name!r}")
    return {"prune_at": at, "prune_keep": keep}


def _read_engine(e: dict, s: dict, solver: str) -> dict:
    """The [engine] table: how the fits are laid out on the machine (not hashed: lanes, memory, sample blocks and
    chunks change the speed, not the fits). Absent keys are `fit_curve`'s per-device defaults (None). A config
    written before [engine] existed may still give `memory_gib` / `lanes` in [solver] (lanes 0: the default)."""
    legacy = {k: s[k] for k in ("memory_gib", "lanes") if k in s}
    lanes = e.get("lanes", legacy.get("lanes") or None)
    if "lanes" in legacy and "lanes" not in e:
        _int("solver.lanes", legacy["lanes"], 0)
    engine = {
        "memory_gib": _optional(_float, "engine.memory_gib", e.get("memory_gib", legacy.get("memory_gib")), 0.0, strict=True),
        "lanes": _optional(_int, "engine.lanes", lanes, 1),
        "block_size": _optional(_int, "engine.block_size", e.get("block_size"), 0),
        "chunk_size": _optional(_int, "engine.chunk_size", e.get("chunk_size"), 1),
    }
    require(engine["lanes"] is None or solver == "lm", "engine.lanes", engine["lanes"],
            "is the LM work-queue width: only for solver 'lm'")
    return engine


def _optional(read, field: str, value, *args, **kwargs):
    return None if value is None else read(field, value, *args, **kwargs)


def _read_model(m: Any) -> tuple[type, dict]:
    """The [model] table: the family (a registry name or a user's 'package.module:Class'), its expert (and its
    own keys, e.g. the router), d, k*, k_fit and the box; the source hash of every user module named."""
    require(isinstance(m, dict), "model", type(m).__name__, "must be a table")
    family = get_family(m.get("family"))
    allowed = BASE_MODEL_KEYS + tuple(family.config_keys)
    for key in m:
        if key not in allowed:
            owners = " or ".join(repr(f.name) for f in FAMILIES.values() if key in f.config_keys)
            require(not owners, f"model.{key}", m[key], f"is only for family {owners}, not {family.name!r}")
            require(False, f"model.{key}", m[key], f"unknown key; model allows {list(allowed)}")
    expert = m.get("expert")
    require(is_user_spec(expert) or (isinstance(expert, str) and expert in EXPERT_NAMES), "model.expert", expert,
            f"must be one of {list(EXPERT_NAMES)} or 'package.module:name' (a jaxmoe.Expert)")
    get_expert(expert, "model.expert")  # a user's module: importable, and an Expert
    model = {"family": m["family"] if is_user_spec(m["family"]) else family.name, "expert": expert,
             "d": _int("model.d", m.get("d"), 1), "k_star": _int("model.k_star", m.get("k_star"), 1),
             **family.read_config(m)}
    model["k_fit"] = _int("model.k_fit", m.get("k_fit", model["k_star"] + 1), 1)
    require(model["k_fit"] >= model["k_star"], "model.k_fit", model["k_fit"],
            f"must be >= k_star = {model['k_star']} (the estimator needs at least k* atoms)")
    model["box"] = _read_box(m.get("box", {}))
    sources = {key: source_hash(model[key], f"model.{key}") for key in sorted(model) if is_user_spec(model[key])}
    if sources:  # hashed with the rest: an edited user model is another config
        model["sources"] = sources
    return family, model


def _read_box(box: Any) -> dict:
    require(isinstance(box, dict) and set(box) <= {"gate", "expert", "tau"}, "model.box", box,
            "must be a table with keys among ['gate', 'expert', 'tau']")
    tau = box.get("tau", [0.1, 10.0])
    require(isinstance(tau, (list, tuple)) and len(tau) == 2, "model.box.tau", tau, "must be [low, high]")
    out = {"gate": _float("model.box.gate", box.get("gate", 10.0), 0.0, strict=True),
           "expert": _float("model.box.expert", box.get("expert", 10.0), 0.0, strict=True),
           "tau": [_float("model.box.tau", t, 0.0, strict=True) for t in tau]}
    require(out["tau"][0] < out["tau"][1], "model.box.tau", tau, "must be [low, high] with low < high")
    return out


def _expand_preset(raw: dict) -> dict:
    """`preset = NAME`: the preset's model, truth, data and labels, with the file's own values on top
    (`model.k_fit` and the `data`, `sweep`, `solver` keys; the truth of a preset is not editable)."""
    if "preset" not in raw:
        return raw
    name = raw["preset"]
    require(isinstance(name, str) and name in PRESET_NAMES, "preset", name, f"must be one of {list(PRESET_NAMES)}")
    require("truth" not in raw, "truth", "...", "cannot be given with preset = NAME (write the full truth instead)")
    model = raw.get("model", {})
    require(isinstance(model, dict) and set(model) <= {"k_fit"}, "model", model,
            "with preset = NAME only model.k_fit may be set")
    base = setting_to_dict(get_preset(name))
    base["model"].update(model)
    base["data"].update(raw.get("data", {}))
    merged = {**base, **{k: v for k, v in raw.items() if k not in ("model", "data")}}
    merged.setdefault("name", name)
    return merged


def _bool(field: str, value) -> bool:
    require(isinstance(value, bool), field, value, "must be true or false")
    return value


def _numeric(field: str, value):
    """Nested lists / tables of numbers -> the same structure of floats (ints accepted)."""
    if isinstance(value, dict):
        return {k: _numeric(f"{field}.{k}", v) for k, v in value.items()}
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise JaxMoEInputError(field, value, "must be a number or a (nested, rectangular) list of numbers") from None
    require(bool(np.all(np.isfinite(arr))), field, value, "must be finite")
    return arr.tolist()


_OFF_BY_ZERO = ("noise_window",)  # integer solver options for which 0 means "off"


def _solver_options(name: str, options: Any, sigma: float, overfitted: bool) -> dict:
    """The solver's options with every default written out (LMConfig fields for lm, keyword arguments else);
    the defaults that depend on the fit are `fit_curve`'s, `solvers.default_options`: the noise level's gtol
    and, for an over-fitted k, LM's budget of 1000 with the noise-level rule, unless the options set their own
    `max_iter`. A stored (normalised) config always does, so one written before that default re-reads as it was
    (noise rule off) and keeps its hash; a config that sets its own budget gets the plain defaults too."""
    require(isinstance(options, dict), "solver.options", options, "must be a table")
    if name == "lm":
        defaults = LMConfig()._asdict()
    else:
        fn = {"lbfgs": solvers.lbfgs_solver, "adam": solvers.adam_solver}[name]
        defaults = {k: p.default for k, p in inspect.signature(fn).parameters.items()}
    defaults.update(solvers.default_options(name, sigma, overfitted and "max_iter" not in options))
    out = dict(defaults)
    for key, value in options.items():
        require(key in defaults, f"solver.options.{key}", value, f"unknown option of solver {name!r}; "
                f"allowed: {list(defaults)}")
        want = type(defaults[key])
        if want is int:
            out[key] = _int(f"solver.options.{key}", value, 0 if key in _OFF_BY_ZERO else 1)
        elif want is float:
            out[key] = _float(f"solver.options.{key}", value, 0.0)
        else:
            require(isinstance(value, want), f"solver.options.{key}", value, f"must be a {want.__name__}")
            out[key] = value
    if name == "lm" and out["noise_window"] == 0:  # off: not written, so configs before the rule hash as they did
        del out["noise_window"], out["noise_ftol"]
    return out



def _build_setting(spec: dict):
    m, truth = spec["model"], spec["truth"]
    box = ParameterBox(m["box"]["gate"], m["box"]["expert"], tuple(m["box"]["tau"]))

    def arrays(tree):
        return {k: arrays(v) for k, v in tree.items()} if isinstance(tree, dict) else np.asarray(tree, np.float64)

    t = {k: arrays(v) for k, v in truth.items()}
    require(isinstance(t["eta"], dict), "truth.eta", truth["eta"], "must be a table of the expert's parameters")
    family = get_family(m["family"])
    model = family.from_config(m["expert"], m["k_star"], m["d"], box,
                               {key: m[key] for key in family.config_keys})
    model.check_parts("model")  # a user's expert / router keeps the protocol (jaxmoe.models.user)
    params = family.params_type(**t)
    law = dict(spec["data"]["inputs"])
    inputs = get_input_law(law.pop("law"), **law)
    labels = spec.get("labels", {})
    return Setting(spec["name"], model, params, spec["data"]["sigma"], inputs, m["k_fit"],
                   labels.get("row", ""), labels.get("theory", ""), labels.get("why", ""))
