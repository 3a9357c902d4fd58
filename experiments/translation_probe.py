"""Does normalising the translation inflate D1, compared with minimising over softmax translations? (issue 4)

    cd experiments && ../.venv/bin/python translation_probe.py results/table1-small-noise/softmax-ridge

For 8 fits at each of the 5th and 7th sizes, prints D1 with the normalisation jaxmoe uses and D1 minimised over
(t0, t1) by Nelder-Mead from 5 starts. The minimum is degenerate: t0 -> -infinity sends every fitted weight to
0 and D1 to sum_j exp(beta0*_j) (= 2 for the presets).
"""
import sys

import jax
import numpy as np
from scipy.optimize import minimize

import jaxmoe
from table1 import load_row

STARTS = ([0, 0], [1, 0], [-1, 0], [0, 2], [0, -2])  # (t0, t1)


def main(folder: str) -> None:
    jax.config.update("jax_enable_x64", True)
    setting, fit, _ = load_row(folder)
    truth = setting.truth_params()
    d1_raw = jax.jit(lambda p: jaxmoe.voronoi_loss_d1(p, truth, translation="none"))
    d1_normalized = jax.jit(lambda p: jaxmoe.voronoi_loss_d1(p, truth))
    for i in [4, 6]:
        pairs = []
        for r in range(8):
            p = jax.tree_util.tree_map(lambda a: np.asarray(a)[i, r], fit.params)

            def translated(t, p=p):
                return float(d1_raw(p._replace(beta0=p.beta0 + t[0], beta1=p.beta1 + t[1])))

            best = min((minimize(translated, x0, method="Nelder-Mead",
                                 options=dict(xatol=1e-8, fatol=1e-10, maxiter=4000)) for x0 in STARTS),
                       key=lambda res: res.fun)
            pairs.append((round(float(d1_normalized(p)), 3), round(float(best.fun), 3)))
        print("n", fit.sizes[i], "normalized vs min over translations:", pairs)


if __name__ == "__main__":
    main(sys.argv[1])
