"""Does normalising the translation inflate D1, compared with minimising over softmax translations? (issue 4)

    cd experiments && ../.venv/bin/python translation_probe.py results/table1-small-noise/softmax-ridge

For 8 fits at each of the 5th and 7th sizes, prints D1 with the normalisation jaxmoe uses and D1 minimised over
(t0, t1) by Nelder-Mead from 5 starts. The minimum is degenerate: t0 -> -infinity sends every fitted weight to
0 and D1 to sum_j exp(beta0*_j) (= 2 for the presets).
"""
import sys

import jax
import numpy as np
import jaxmoe
from scipy.optimize import minimize
sys.path.insert(0, '.')
import table1
jax.config.update("jax_enable_x64", True)
folder = sys.argv[1]
s, fit, meta = table1.load_row(folder)
truth = s.truth_params()
d1 = jax.jit(lambda p: jaxmoe.voronoi_loss_d1(p, truth, translation="none"))
d1n = jax.jit(lambda p: jaxmoe.voronoi_loss_d1(p, truth))
for i in [4, 6]:
    vals = []
    for r in range(8):
        p = jax.tree_util.tree_map(lambda a: np.asarray(a)[i, r], fit.params)
        def f(t):
            q = p._replace(beta0=p.beta0 + t[0], beta1=p.beta1 + t[1])
            return float(d1(q))
        best = min((minimize(f, x0, method="Nelder-Mead", options=dict(xatol=1e-8, fatol=1e-10, maxiter=4000)) for x0 in ([0,0],[1,0],[-1,0],[0,2],[0,-2])), key=lambda r: r.fun)
        vals.append((float(d1n(p)), best.fun))
    print("n", fit.sizes[i], "normalized vs min over translations:", [(round(a,3), round(b,3)) for a,b in vals])
