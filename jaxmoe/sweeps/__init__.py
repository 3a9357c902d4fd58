"""Sweeps: rate studies from a TOML config or a preset, run chunk by chunk into a folder, resumable, reported.

The modules, each importing only those above it:

- `config`: the TOML schema -> `SweepConfig` (validated, normalised, hashed) and the `Setting` it describes;
- `store`: the sweep folder and its files: layout, atomic writes, the chunk plan and chunk files (a chunk is
  one size bucket x all replicates), the folder rules, provenance, and the lock (one running sweep per folder);
- `grid`: a `[grid]` of config fields crossed (or zipped) into cells, each an ordinary sweep in its own folder;
  the grid folder's rules and lock (after `store`: it writes through it);
- `report`: reads a folder (no lock) -> `results.csv` (tidy), `summary.json` (slopes, CIs, laws, theory),
  `rate_curves.png` / `.pdf`;
- `grid_report`: the same for a grid folder, over its cells (a `cell` column and one column per factor);
- `runner`: `run_sweep`: locks the folder, fits the chunks not yet done, saves each as it finishes, reports;
  `run_grid` (also `run_sweep` of a grid): the cells one by one, then the grid's report;
- `table1`: `run_table1`: one TOML per row of Table 1 run as ordinary sweeps into one folder, then one report
  (`table1.md`, `summary.json`, plots) with a verdict per row and variant, read on the median.
"""

from jaxmoe.sweeps.config import SweepConfig, config_from_dict, load_config, preset_config, setting_to_dict
from jaxmoe.sweeps.grid import GridCell, GridConfig, grid_from_dict, is_grid_folder, load_sweep
from jaxmoe.sweeps.grid_report import format_grid_summary, load_grid_results, write_grid_report
from jaxmoe.sweeps.report import (
    SweepResults,
    format_summary,
    load_results,
    summarize,
    theory_rates,
    write_report,
)
from jaxmoe.sweeps.runner import GridResult, SweepResult, run_grid, run_sweep
from jaxmoe.sweeps.store import ChunkPlan, atomic_write_bytes, atomic_write_json, plan_chunks
from jaxmoe.sweeps.table1 import (
    Table1Result,
    check_onsets,
    load_rows,
    rate_verdict,
    row_folders,
    run_table1,
    table1_markdown,
    variant_label,
    write_table1_report,
)

__all__ = [
    "SweepConfig", "config_from_dict", "load_config", "preset_config", "setting_to_dict",
    "SweepResults", "format_summary", "load_results", "summarize", "theory_rates", "write_report",
    "GridCell", "GridConfig", "grid_from_dict", "is_grid_folder", "load_sweep",
    "format_grid_summary", "load_grid_results", "write_grid_report",
    "GridResult", "SweepResult", "run_grid", "run_sweep",
    "ChunkPlan", "atomic_write_bytes", "atomic_write_json", "plan_chunks",
    "Table1Result", "check_onsets", "load_rows", "rate_verdict", "row_folders", "run_table1", "table1_markdown", "variant_label",
    "write_table1_report",
]
