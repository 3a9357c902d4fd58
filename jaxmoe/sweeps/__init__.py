"""Sweeps: rate studies from a TOML config or a preset, run chunk by chunk into a folder, resumable, reported.

The modules, each importing only those above it:

- `config`: the TOML schema -> `SweepConfig` (validated, normalised, hashed) and the `Setting` it describes;
- `store`: the sweep folder and its files: layout, atomic writes, the chunk plan and chunk files (a chunk is
  one size bucket x all replicates), the folder rules, provenance, and the lock (one running sweep per folder);
- `report`: reads a folder (no lock) -> `results.csv` (tidy), `summary.json` (slopes, CIs, laws, theory),
  `rate_curves.png` / `.pdf`;
- `runner`: `run_sweep`: locks the folder, fits the chunks not yet done, saves each as it finishes, reports.
"""

from jaxmoe.sweeps.config import SweepConfig, config_from_dict, load_config, preset_config, setting_to_dict
from jaxmoe.sweeps.report import (
    SweepResults,
    format_summary,
    load_results,
    summarize,
    theory_rates,
    write_report,
)
from jaxmoe.sweeps.runner import SweepResult, run_sweep
from jaxmoe.sweeps.store import ChunkPlan, atomic_write_bytes, atomic_write_json, plan_chunks

__all__ = [
    "SweepConfig", "config_from_dict", "load_config", "preset_config", "setting_to_dict",
    "SweepResults", "format_summary", "load_results", "summarize", "theory_rates", "write_report",
    "SweepResult", "run_sweep",
    "ChunkPlan", "atomic_write_bytes", "atomic_write_json", "plan_chunks",
]
