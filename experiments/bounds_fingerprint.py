"""Every field of five short inverse-bound profiles (and their pooled envelope and Taylor check) saved, to
compare two commits of `jaxmoe.bounds` array by array (as `fingerprint.py` does for the fits), with the cold
seconds of the five (compile included: run with JAXMOE_COMPILATION_CACHE=0).

    JAXMOE_COMPILATION_CACHE=0 PYTHONPATH=<tree> .venv/bin/python experiments/bounds_fingerprint.py --out A.npz
    .venv/bin/python experiments/bounds_fingerprint.py --compare A.npz B.npz
"""
import argparse
import sys
import time

import numpy as np

FIELDS = ("omega", "omega_found", "loss_found", "spread", "floor", "resolvable", "quadrature_error",
          "start_status", "measures_low", "measure_loss")
CASES = [("softmax-ridge", dict(loss="d1", optimiser="gauss_newton", difference="path")),
         ("softmax-ridge", dict(loss="d1")),
         ("softmax-linear", dict(loss="d2r", r=1.0, iterations=100)),
         ("dts-linear-router", dict(loss="temperature", r=2.0, divide_out=True, optimiser="gauss_newton",
                                    continuation="secant", difference="path")),
         ("hierarchical-ridge", dict(loss="hierarchical", optimiser="gauss_newton", difference="path",
                                     continuation="secant"))]


def record(out: str) -> None:
    import jax
    from jaxmoe import get_preset
    from jaxmoe.bounds import inverse_bound, pool_profiles, taylor_check
    from jaxmoe.sweeps import atomic_write_bytes
    arrays, t = {}, time.perf_counter()
    for i, (row, kw) in enumerate(CASES):
        kw = dict(dict(eps=np.array([0.3, 0.1, 0.01, 1e-3]), starts=4, iterations=30), **kw)
        p = inverse_bound(get_preset(row), **kw)
        arrays.update({f"{i}-{f}": np.asarray(getattr(p, f)) for f in FIELDS})
        arrays.update({f"{i}-measure{j}": np.asarray(a) for j, a in enumerate(jax.tree_util.tree_leaves(p.measures))})
        arrays[f"{i}-symmetry_loss"] = np.array(list(p.symmetry_loss.values()))
        pooled = pool_profiles(get_preset(row), {"own": p})["own"]
        arrays[f"{i}-pooled_omega"], arrays[f"{i}-pooled_floor"] = pooled.omega, pooled.floor
        arrays[f"{i}-taylor"] = taylor_check(get_preset(row), p).omega_taylor
    seconds = time.perf_counter() - t
    atomic_write_bytes(out, lambda fh: np.savez(fh, seconds=seconds, **arrays))  # complete or absent
    print(f"{len(arrays)} arrays, {seconds:.1f} s -> {out}")


def compare(a_path: str, b_path: str) -> None:
    a, b = np.load(a_path), np.load(b_path)
    keys = [k for k in a.files if k != "seconds"]
    same = [k for k in keys if k in b.files and np.array_equal(a[k], b[k], equal_nan=True)]
    print(f"{len(same)} of {len(keys)} identical; seconds {float(a['seconds']):.1f} vs {float(b['seconds']):.1f}")
    for k in keys:
        if k not in same:
            x, y = a[k].astype(float), b[k].astype(float)
            print(f"  {k}: max abs diff {np.nanmax(np.abs(x - y)):.3g}, max rel "
                  f"{np.nanmax(np.abs(x - y) / np.maximum(np.abs(x), 1e-300)):.3g}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="record the arrays here (.npz)")
    g.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two recordings")
    a = p.parse_args()
    if a.compare:
        for path in a.compare:
            try:
                np.load(path)
            except (OSError, ValueError):
                p.error(f"compare={path}: must be a .npz written by --out")
        compare(*a.compare)
    else:
        record(a.out)


if __name__ == "__main__":
    sys.exit(main())
