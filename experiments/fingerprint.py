"""Bit-for-bit fingerprint of the engine: fits and metrics of a fixed reduced study, to compare two commits.

    python experiments/fingerprint.py --out /tmp/new.npz            # fit and save every array
    python experiments/fingerprint.py --compare /tmp/old.npz /tmp/new.npz
    python experiments/fingerprint.py --compare-sweeps OLD_DIR NEW_DIR   # two `jaxmoe sweep` folders, chunk by chunk

The study: the Table 1 reduced checks of tests/table1_reduced_test.py (softmax-ridge and softmax-linear
over-fitted at n = 250, 1000, 4000 x 8 replicates, seed 4; the exactly fitted sigma = 0.01 ridge truth, seed 3)
and every preset at n = 100, 400 x 2 replicates with 4 starts (seed 0), so each family's Jacobian, starts and
losses are exercised. `--compare` reports, per array, whether it is identical (bit for bit, NaNs equal).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import jax
import numpy as np

import jaxmoe
from jaxmoe import JaxMoEInputError


def _studies():
    base = jaxmoe.get_preset("softmax-ridge")
    truth = base.truth._replace(eta={"a": np.array([[8.0], [-8.0]]), "b": np.array([-4.0, -4.0])})
    yield "exact-ridge", base.replace(truth=truth, k_fit=2, sigma=0.01), [250, 1000, 4000], 8, 3, {}
    for name in ("softmax-ridge", "softmax-linear"):
        yield f"reduced-{name}", jaxmoe.get_preset(name), [250, 1000, 4000], 8, 4, {}
    for name in jaxmoe.PRESET_NAMES:
        yield f"small-{name}", jaxmoe.get_preset(name), [100, 400], 2, 0, {"restarts": 4}


def fingerprint() -> dict[str, np.ndarray]:
    arrays = {}
    for label, setting, sizes, replicates, seed, options in _studies():
        with jax.enable_x64(True):
            fit = jaxmoe.fit_curve(setting, sizes, replicates, seed=seed, **options)
        for field in ("objective", "objective_truth", "iterations", "status", "converged"):
            arrays[f"{label}/{field}"] = np.asarray(getattr(fit, field))
        for path, leaf in jax.tree_util.tree_flatten_with_path(fit.params)[0]:
            arrays[f"{label}/param{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
        for name, values in jaxmoe.curve_metrics(setting, fit).items():
            arrays[f"{label}/metric/{name}"] = np.asarray(values)
        print(f"{label}: {fit.objective.size} fits, converged {fit.converged_fraction:.3f}", flush=True)
    return arrays


def _difference(a: np.ndarray, b: np.ndarray) -> str:
    """Max absolute and relative difference of two arrays of one shape (NaN where only one is NaN counts)."""
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    a, b = a.astype(float), b.astype(float)
    nan_mismatch = int(np.sum(np.isnan(a) != np.isnan(b)))
    both = ~np.isnan(a) & ~np.isnan(b)
    if not both.any():
        return f"{nan_mismatch} NaN mismatches"
    diff = np.abs(a[both] - b[both])
    rel = diff / np.maximum(np.abs(a[both]), np.finfo(float).tiny)
    return (f"max abs difference {diff.max():.3g}, max relative {rel.max():.3g}, {int(np.sum(diff > 0))} of "
            f"{a.size} differ" + (f", {nan_mismatch} NaN mismatches" if nan_mismatch else ""))


def compare(old: str, new: str) -> int:
    a, b = np.load(old), np.load(new)
    bad = 0
    for name in sorted(set(a.files) | set(b.files)):
        if name not in a.files or name not in b.files:
            print(f"{name}: only in {'new' if name in b.files else 'old'}")
            bad += 1
            continue
        same = a[name].shape == b[name].shape and np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f")
        if not same:
            print(f"{name}: DIFFERS ({_difference(a[name], b[name])})")
            bad += 1
    print(f"{len(set(a.files) | set(b.files)) - bad} arrays identical, {bad} differ")
    return 1 if bad else 0


def compare_sweeps(old: str, new: str) -> int:
    """Every array of every chunk file of two sweep folders (timings, in each chunk's info, excluded)."""
    names = sorted(os.listdir(os.path.join(old, "chunks")))
    if names != sorted(os.listdir(os.path.join(new, "chunks"))):
        raise JaxMoEInputError("NEW_DIR", new, f"must hold the chunks {names}")
    bad = 0
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, folder in enumerate((old, new)):
                with np.load(os.path.join(folder, "chunks", name)) as data:
                    paths.append(os.path.join(tmp, f"{i}.npz"))
                    np.savez(paths[-1], **{k: data[k] for k in data.files if k != "info"})
            print(f"{name}:", end=" ")
            bad += compare(*paths)
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the fingerprint (.npz) here")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    parser.add_argument("--compare-sweeps", nargs=2, metavar=("OLD_DIR", "NEW_DIR"))
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if args.compare_sweeps:
        return compare_sweeps(*args.compare_sweeps)
    if not args.out:
        parser.error("--out or --compare is required")
    np.savez(args.out, **fingerprint())
    return 0


if __name__ == "__main__":
    sys.exit(main())
