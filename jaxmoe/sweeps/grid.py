r"""Multi-factor sweeps: a `[grid]` of config fields crossed (or zipped) into cells, each cell an ordinary sweep.

```toml
preset = "softmax-ridge"               # the base every cell starts from (or a full [model] and [truth])
[sweep]
sizes = [500, 1000, 2000]
replicates = 8

[grid]                                 # dotted field path = [one value per level]
"data.sigma" = [0.1, 0.03, 0.01]
"model.k_fit" = [3, 4]
# "truth" = [{ beta0 = ..., ... }, ...]     whole truths (each a [truth] table); or "preset" = ["a", "b"]
# "sweep.sizes" = [[...], [...]]            sizes per cell (a truth that moves with n)
# "solver.options.max_iter" = [300, 1000]   any depth
# zip = [["data.sigma", "sweep.sizes"]]     pair these factors (lists of equal length) instead of crossing them
```

**Cells.** Factors are crossed in the order written, the first varying slowest; the members of a `zip` group
move together and take the place of the group's first member. Cell i is the base config (the file without its
`[grid]`) with the cell's values written at their paths, then validated by `config_from_dict` like a file of
its own: a cell *is* the sweep of that file, with the same normalised config, hash and per-(seed, n,
replicate) keys, so its fits do not depend on the grid around it and equal a separate sweep's bit for bit
(tested). A value in the base at a factor's path is overridden by every cell.

**Paths.** `section.key[.key...]` into the config as written: `data.sigma`, `model.expert`, `model.k_fit`,
`model.box.gate`, `solver.restarts`, `solver.init`, `solver.options.max_iter`, `sweep.sizes`, `sweep.seed`,
`truth.beta0`, ...; `truth` and `preset` replace the whole truth. Quoted (`"data.sigma" = [...]`) and
nested TOML keys (`data.sigma = [...]`, a table) are the same path. Not factors: `[engine]` (speed only, not
hashed: the same fits), `name`, `labels`. Refused with one line naming the field and, where a cell's config
is what fails, the cell: a path outside the schema, an empty or non-list level list, a repeated level of a
crossed factor (members of a zip group may repeat one, as long as no two of the group's level tuples are
equal), zip groups of unequal length or naming a path that is not a factor, two cells that are the same sweep.

**Folder** (`DIR`): `grid.json` (the grid as written, its hash, and per cell its values, folder and config
hash), `config.source.toml`, `cells/cell-XXX/` (an ordinary sweep folder per cell: `config.json`, `chunks/`,
`provenance.json`, its own lock and report; resumable on its own), `sweep.lock` (the grid's lock: one grid
run per folder), and the grid's report (`grid_report.write_grid_report`): `results.csv` and `results.parquet`
(`table`; a `cell` column and one
column per factor, named by its path, before a sweep's columns), `summary.json` (a record per cell, slopes
per cell) and `rate_curves.png` / `.pdf`. A factor's value in `results.csv` is the value itself where it is
a number, string or boolean, and its position in the factor's list where it is a table or list (a truth,
per-cell sizes).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
import os
import shutil
from typing import Any, Callable, Iterator

from jaxmoe.validation import JaxMoEInputError, require
from jaxmoe.sweeps.config import OVERRIDES, SECTIONS, SweepConfig, apply_overrides, config_from_dict, read_toml
from jaxmoe.sweeps.store import (
    ONE_SHARD,
    OUTPUT_FILES,
    FolderLock,
    Shard,
    atomic_write_bytes,
    atomic_write_json,
    check_modes,
    check_shard_modes,
    clear_outputs,
    make_folder,
)

__all__ = ["GRID_FILE", "CELL_DIR", "FACTOR_HEADS", "GridCell", "GridConfig", "grid_from_dict", "load_sweep",
           "as_sweep", "is_grid_folder", "read_grid_folder", "cell_folder", "check_grid_folder", "claim_grid_folder"]

GRID_FILE = "grid.json"
CELL_DIR = "cells"
GRID_OUTPUT_FILES = (GRID_FILE, "config.source.toml", "results.csv", "results.parquet", "summary.json",
                     "rate_curves.png", "rate_curves.pdf")
# The config fields a factor may set (the first part of its path); why the others may not.
FACTOR_HEADS = ("model", "truth", "data", "sweep", "solver", "preset")
NOT_FACTORS = {"engine": "is speed only (not hashed: the same fits); set it in [engine] for every cell",
               "name": "names the grid, not a cell", "labels": "is descriptive, not a factor",
               "grid": "is the grid itself"}
MAX_CELLS = 10_000


@dataclasses.dataclass(frozen=True)
class GridCell:
    """One cell: its index, its value per factor path (as written) and the sweep config it is."""

    index: int
    values: dict
    config: SweepConfig

    @property
    def dirname(self) -> str:
        return f"cell-{self.index:03d}"

    @property
    def label(self) -> str:
        """`data.sigma=0.1, model.k_fit=3, sweep.sizes=[100,200]` (a whole truth as `truth={...}`)."""
        return ", ".join(f"{path}={_brief(value)}" for path, value in self.values.items())


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """A validated grid: its `name`, `factors` (path -> levels, as written), `zip` groups, `cells` and the
    config as written (`raw`: the base and the `[grid]`). `hash` covers every cell's config hash."""

    name: str
    factors: dict
    zip: tuple
    cells: tuple
    raw: dict

    @property
    def hash(self) -> str:
        text = json.dumps({"factors": list(self.factors), "cells": [[c.values, c.config.hash] for c in self.cells]},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def columns(self, cell: GridCell) -> dict:
        """The cell's value per factor as a results.csv column: scalars as they are, a table or list by its
        position in the factor's levels."""
        return {path: value if _scalar(value) else self.factors[path].index(value)
                for path, value in cell.values.items()}

    def replace(self, **overrides) -> "GridConfig":
        """The grid with command-line overrides (`config.OVERRIDES`) applied to its base; an override of a
        factor is refused (change it in `[grid]`)."""
        for key, value in overrides.items():
            path = OVERRIDES.get(key, key)
            require(value is None or path not in self.factors, f"--{key.replace('_', '-')}", value,
                    f"{path} is a factor of the grid: change its levels in [grid]")
        base = {k: v for k, v in self.raw.items() if k != "grid"}
        return grid_from_dict({**apply_overrides(base, overrides), "grid": self.raw["grid"]})

    def to_dict(self) -> dict:
        """What `grid.json` stores: the grid as written, its hash, and per cell its values, folder and hash."""
        return {"hash": self.hash, "name": self.name, "raw": copy.deepcopy(self.raw),
                "factors": list(self.factors), "zip": [list(g) for g in self.zip],
                "cells": [{"cell": c.index, "dir": f"{CELL_DIR}/{c.dirname}", "values": c.values,
                           "columns": self.columns(c), "config_hash": c.config.hash} for c in self.cells]}


def _scalar(value) -> bool:
    return isinstance(value, (bool, int, float, str))


def _brief(value) -> str:
    """A level in a label: scalars and short lists as JSON, a table (a whole truth) as `{...}`."""
    if isinstance(value, dict):
        return "{...}"
    text = json.dumps(value, separators=(",", ":")) if isinstance(value, list) else json.dumps(value)
    return text if len(text) <= 40 else text[:36] + "...]"


# ---------------------------------------------------------------- reading a grid
def _flatten(table: dict, prefix: str = "") -> dict:
    """`{"data": {"sigma": [..]}}` (nested TOML keys) and `{"data.sigma": [..]}` (a quoted key) -> one path."""
    out = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            require(value, f"grid.{path}", value, "must be a list of levels (one value per cell), not an empty table")
            out.update(_flatten(value, path + "."))
        else:
            require(path not in out, f"grid.{path}", value, "is given twice (quoted and nested)")
            out[path] = value
    return out


def _check_factor(path: str, levels: Any) -> list:
    head = path.split(".")[0]
    field = f"grid.{path}"
    require(head not in NOT_FACTORS, field, levels, NOT_FACTORS.get(head, ""))
    require(head in FACTOR_HEADS, field, levels, f"unknown field; a factor's path starts with one of "
            f"{list(FACTOR_HEADS)} (e.g. data.sigma, model.k_fit, solver.restarts)")
    parts = path.split(".")
    if head == "preset":
        require(path == "preset", field, levels, "takes no sub-path: 'preset' = [names of presets]")
    elif head != "truth":  # truth.<field>: the family's parameter names, checked by the cell's config
        require(len(parts) > 1, field, levels, f"is a whole section: give a field of it (e.g. {head}."
                f"{SECTIONS[head][0]})")
        require(parts[1] in SECTIONS[head], field, levels, f"unknown field; {head} allows {list(SECTIONS[head])}")
    require(isinstance(levels, list) and len(levels) > 0, field, levels,
            "must be a non-empty list of levels (one value per cell)")
    return levels


def _check_repeats(factors: dict, groups: tuple) -> None:
    """A crossed factor's levels are distinct (each is a cell of its own); a zip group's members may repeat a
    level (variants that share a noise level, say), but no two of the group's level tuples may be equal."""
    zipped = {path for group in groups for path in group}
    units = [(f"grid.{path}", [(v,) for v in levels]) for path, levels in factors.items() if path not in zipped]
    units += [(f"grid.zip {list(g)}", list(zip(*(factors[p] for p in g)))) for g in groups]
    for field, levels in units:
        for i, level in enumerate(levels):
            require(level not in levels[:i], field, level[0] if len(level) == 1 else list(level),
                    "repeats a level: every level is a cell of its own")


def _check_zip(groups: Any, factors: dict) -> tuple:
    require(isinstance(groups, list) and all(isinstance(g, list) and len(g) >= 2 for g in groups), "grid.zip", groups,
            'must be a list of lists of at least two factor paths, e.g. [["data.sigma", "sweep.sizes"]]')
    seen: set = set()
    for group in groups:
        for path in group:
            require(isinstance(path, str) and path in factors, "grid.zip", path,
                    f"is not a factor of this grid (factors: {list(factors)})")
            require(path not in seen, "grid.zip", path, "is in two zip groups")
            seen.add(path)
        lengths = {path: len(factors[path]) for path in group}
        require(len(set(lengths.values())) == 1, "grid.zip", group,
                f"zipped factors must have as many levels each (have {lengths})")
    return tuple(tuple(g) for g in groups)


def _combinations(factors: dict, groups: tuple) -> list[dict]:
    """Every cell's {path: level}: crossed in the order written, zip groups moving together."""
    units, placed = [], set()
    for path in factors:
        if path in placed:
            continue
        group = next((g for g in groups if path in g), (path,))
        placed.update(group)
        units.append([dict(zip(group, levels)) for levels in zip(*(factors[p] for p in group))])
    count = 1
    for unit in units:
        count *= len(unit)
    require(count <= MAX_CELLS, "grid", f"{count} cells", f"must have at most {MAX_CELLS} cells")
    cells = []
    for parts in itertools.product(*units):
        values: dict = {}
        for part in parts:
            values.update(part)
        cells.append({path: values[path] for path in factors})  # in the order written
    return cells


def _set_path(raw: dict, path: str, value) -> None:
    """Write `value` at the dotted `path` of the config as written, creating tables on the way."""
    *tables, last = path.split(".")
    node = raw
    for i, key in enumerate(tables):
        node = node.setdefault(key, {})
        require(isinstance(node, dict), f"grid.{path}", value, f"{'.'.join(tables[:i + 1])} is not a table")
    node[last] = copy.deepcopy(value)


def _cell_config(base: dict, index: int, values: dict) -> SweepConfig:
    raw = copy.deepcopy(base)
    if "preset" in values or "truth" in values:  # a whole truth replaces the other one
        raw.pop("truth" if "preset" in values else "preset", None)
    for path, value in values.items():
        _set_path(raw, path, value)
    try:
        return config_from_dict(raw)
    except JaxMoEInputError as err:
        cell = GridCell(index, values, None)
        raise JaxMoEInputError(f"grid[cell {index}: {cell.label}] {err.field}", err.value, err.allowed) from None


def grid_from_dict(raw: dict) -> GridConfig:
    """Validate a config dict with a `[grid]` (as read from TOML) into a `GridConfig` (see the module docstring)."""
    require(isinstance(raw, dict) and isinstance(raw.get("grid"), dict), "grid", raw.get("grid") if
            isinstance(raw, dict) else raw, "must be a table of factor paths and their levels")
    grid = dict(raw["grid"])
    groups = grid.pop("zip", [])
    factors = {path: _check_factor(path, levels) for path, levels in _flatten(grid).items()}
    require(factors, "grid", raw["grid"], 'needs at least one factor, e.g. "data.sigma" = [0.1, 0.03]')
    groups = _check_zip(groups, factors)
    _check_repeats(factors, groups)
    base = {k: v for k, v in raw.items() if k != "grid"}
    cells = tuple(GridCell(i, values, _cell_config(base, i, values))
                  for i, values in enumerate(_combinations(factors, groups)))
    first: dict = {}
    for cell in cells:
        other = first.setdefault(cell.config.hash, cell)
        require(other is cell, "grid", f"cells {other.index} and {cell.index}",
                f"are the same sweep ({other.label} vs {cell.label}): drop a level")
    name = cells[0].config.name if "name" not in raw else raw["name"]
    return GridConfig(name, factors, groups, cells, copy.deepcopy(raw))


def load_sweep(path: str) -> SweepConfig | GridConfig:
    """A TOML config file: a `GridConfig` when it has a `[grid]`, else a `SweepConfig`."""
    raw = read_toml(path)
    return grid_from_dict(raw) if "grid" in raw else config_from_dict(raw)


def as_sweep(config) -> SweepConfig | GridConfig:
    """`config` as a `SweepConfig` or `GridConfig`: one of them, or a config dict (with a `grid` table: a grid)."""
    if isinstance(config, (SweepConfig, GridConfig)):
        return config
    if not isinstance(config, dict):
        value = config if "\n" not in repr(config) else type(config).__name__
        raise JaxMoEInputError("config", value, "must be a SweepConfig, a GridConfig or a config dict")
    return grid_from_dict(config) if "grid" in config else config_from_dict(config)


# ---------------------------------------------------------------- the grid's folder
def is_grid_folder(out: str) -> bool:
    return os.path.isfile(os.path.join(out, GRID_FILE))


def cell_folder(out: str, cell: GridCell) -> str:
    return os.path.join(out, CELL_DIR, cell.dirname)


def read_grid_folder(out: str) -> GridConfig:
    """The grid of a grid folder, re-validated from `grid.json` (its hash must be the stored one)."""
    try:
        with open(os.path.join(out, GRID_FILE)) as fh:
            stored = json.load(fh)
        assert isinstance(stored, dict) and "hash" in stored and "raw" in stored
    except Exception:  # noqa: BLE001
        raise JaxMoEInputError("DIR", out, f"has a {GRID_FILE} that is not a jaxmoe grid") from None
    try:
        grid = grid_from_dict(stored["raw"])
    except JaxMoEInputError as err:
        raise JaxMoEInputError("DIR", out, f"its {GRID_FILE} no longer validates ({err})") from None
    require(grid.hash == stored["hash"], "DIR", out, f"{GRID_FILE} hash {stored['hash']} does not match its content "
            f"({grid.hash}): edited by hand, or a user module changed")
    return grid


def _cells_done(out: str, grid: GridConfig) -> int:
    return sum(os.path.isfile(os.path.join(cell_folder(out, c), "summary.json")) for c in grid.cells)


def _check_grid_folder(out: str, grid: GridConfig, resume: bool) -> bool:
    """Refuse a folder holding another grid, this grid without `resume`, a one-sweep folder or foreign files;
    True when the folder holds this grid already."""
    if is_grid_folder(out):
        stored = read_grid_folder(out)
        if stored.hash != grid.hash:
            new = [c.label for c in grid.cells if c.config.hash not in {s.config.hash for s in stored.cells}]
            raise JaxMoEInputError("out", out, f"holds another grid ({len(stored.cells)} cells; this run's "
                                   f"{len(new)} new: {'; '.join(new[:2]) or 'the factors differ'}); use another "
                                   "--out, or --overwrite to discard it")
        require(resume, "out", out, f"already holds this grid ({_cells_done(out, grid)} of {len(grid.cells)} cells "
                "reported): pass --resume to continue it, or --overwrite to start again")
        return True
    found = [n for n in OUTPUT_FILES + ("chunks", CELL_DIR) if os.path.exists(os.path.join(out, n))]
    require(not found, "out", out, f"has {found} but no {GRID_FILE}, so it is not a jaxmoe grid folder; "
            "use another --out, or --overwrite to replace them")
    return False


def check_grid_folder(out: str, grid: GridConfig, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse `out` as `claim_grid_folder` would (another grid, this grid without `resume`, a one-sweep folder,
    foreign files), touching nothing (see `store.check_folder`)."""
    check_modes(resume, overwrite)
    if not overwrite and os.path.isdir(out):
        _check_grid_folder(out, grid, resume)


def _clear_grid(out: str) -> None:
    """Remove what a grid (or a sweep) writes into `out`, and only that (the lock stays: whoever clears holds it)."""
    clear_outputs(out)
    for name in GRID_OUTPUT_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(out, name))
    cells = os.path.join(out, CELL_DIR)
    if os.path.isdir(cells):
        for name in os.listdir(cells):
            folder = os.path.join(cells, name)
            if name.startswith("cell-") and os.path.isdir(folder):
                clear_outputs(folder)
                for leftover in ("chunks", "sweep.lock"):
                    path = os.path.join(folder, leftover)
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    elif os.path.exists(path):
                        os.unlink(path)
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
        with contextlib.suppress(OSError):
            os.rmdir(cells)


@contextlib.contextmanager
def claim_grid_folder(out: str, grid: GridConfig, *, resume: bool = False, overwrite: bool = False,
                      source_text: str | None = None, log: Callable[[str], None] | None = None,
                      shard: Shard = ONE_SHARD) -> Iterator[FolderLock]:
    """Lock the grid folder `out` (its `sweep.lock`; a shard its own, `Shard.lock_name`), check it against the
    folder rules (as `store.claim_folder` for a sweep; a shard continues the grid as `resume` does) and write
    `grid.json`; yields the held lock, released whatever the exit."""
    check_modes(resume, overwrite)
    check_shard_modes(shard, overwrite)
    resume = resume or not shard.whole
    make_folder(out)
    with FolderLock(out, log, name=shard.lock_name) as lock:
        if overwrite:
            _clear_grid(out)
            holds = False
        else:
            try:
                holds = _check_grid_folder(out, grid, resume)
            except JaxMoEInputError:
                if shard.whole or is_grid_folder(out):
                    raise
                holds = _check_grid_folder(out, grid, resume)  # a sibling shard started the folder meanwhile
        if not holds:  # grid.json before cells/: a sibling shard then finds a grid folder
            atomic_write_json(os.path.join(out, GRID_FILE), grid.to_dict())
            if source_text is not None:
                atomic_write_bytes(os.path.join(out, "config.source.toml"), lambda fh: fh.write(source_text.encode()))
        os.makedirs(os.path.join(out, CELL_DIR), exist_ok=True)
        yield lock
