"""Sweeps: rate studies from a TOML config or a preset, run chunk by chunk into a folder, resumable, reported.

- `config`: the TOML schema -> `SweepConfig` (validated, normalised, hashed) and the `Setting` it describes;
- `runner`: the chunk plan (one size bucket x all replicates per chunk), atomic chunk files, resume, provenance;
- `report`: `results.csv` (tidy), `summary.json` (slopes, CIs, laws, theory), `rate_curves.png` / `.pdf`.
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
from jaxmoe.losses.curve import fit_metrics
from jaxmoe.sweeps.runner import ChunkPlan, SweepResult, plan_chunks, run_sweep

__all__ = [
    "SweepConfig", "config_from_dict", "load_config", "preset_config", "setting_to_dict",
    "SweepResults", "format_summary", "load_results", "summarize", "theory_rates", "write_report",
    "ChunkPlan", "SweepResult", "fit_metrics", "plan_chunks", "run_sweep",
]
