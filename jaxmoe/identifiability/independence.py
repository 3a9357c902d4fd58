r"""Strong identifiability (Definition 1) and algebraic independence (Definition 2), decided numerically.

**What is tested.** For the generator $F(x;\theta) = e^{\omega^\top x} e^{g(x,\beta_1)/\tau} h(x,\eta)$ of
`family.build_family` and $P$ distinct random parameter points $\theta_1, \dots, \theta_P$, the set

$$\mathcal F = \bigcup_{k=1}^{P} \Big\{ F(\cdot;\theta_k),\ \partial_{\theta_i} F(\cdot;\theta_k),\
\partial^2_{\theta_i\theta_j} F(\cdot;\theta_k)\ (i \le j) \Big\}$$

of functions of $x$ is evaluated on $n$ inputs $x \sim U[-R, R]^d$ (all by autodiff, float64), and the
$n \times |\mathcal F|$ matrix $A$ is tested for full column rank. $\mathcal F$ is a **set**, as in the
paper's definition: a function listed twice under two names (e.g. $\partial^2 F/\partial\beta_1\partial b =
\partial F/\partial a$, true for *every* expert of the form $h(a^\top x + b)$; or $\partial F/\partial\omega =
\partial F/\partial\beta_1$ for every hierarchical model) counts once. Such coincidences are reported as
`identities`, not as failures (`merge_duplicates=False` tests the list instead). A function that vanishes
identically makes the set dependent.

**The numerical decision** (scale-aware). Rows of $A$ are scaled to max-abs 1 and columns to unit norm
(row scaling by a positive weight $w(x)$ and column scaling leave linear (in)dependence and the
relations unchanged). Let $s_1 \ge \dots \ge s_m$ be the singular values of the scaled matrix and
$r_i = s_i / s_1$. With threshold `tol` ($10^{-10}$) and `margin` ($10^2$):

- `independent` if every $r_i \ge \text{tol}\cdot\text{margin}$ ($10^{-8}$) and no function vanishes;
- `dependent` if some function vanishes, or some $r_i \le \text{tol}/\text{margin}$ ($10^{-12}$) and none
  lies in the band $(\text{tol}/\text{margin}, \text{tol}\cdot\text{margin})$;
- `inconclusive` otherwise: a singular value sits within `margin` of the threshold, so the verdict
  would be a coin toss.

Exact relations sit at round-off ($r \lesssim 10^{-15}$); the independent cases of the paper have
$r_{\min} \gtrsim 10^{-6}$ at the defaults ($d = 2$, $R = 4$, $P = 2$), so both sides clear the band by
several decades. The defaults matter: in $d = 1$ more than about 15 smooth functions on an interval are
numerically rank deficient in float64 whatever their algebra, so $d = 2$ is the default; inputs on a wide
box ($R = 4$) and parameter coordinates away from 0 (`family.draw_points`) improve the conditioning
without changing the mathematics (independence of analytic functions on any open set is the same).

**Relations.** When dependent, the null space is mapped to named derivatives and simplified to the
sparsest relations: supports of size $1, 2, \dots$, `max_support` among the columns that take part in the
null space are tried (screened in batch by the Gram matrix, confirmed by an SVD of $A_S$), accepted greedily
when they enlarge the span of the relations already found (a minimum basis of circuits); any remainder is
completed by a reduced-row-echelon basis of the rest of the null space. Coefficients refer to the raw
(unscaled) functions and are normalised so that the largest is $+1$.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxmoe.validation import JaxMoEInputError, require, require_positive_int
from jaxmoe.identifiability.family import build_family, draw_inputs, draw_points, family_matrix

DEFAULT_TOL = 1e-10
DEFAULT_MARGIN = 1e2


class Relation(NamedTuple):
    """A linear relation $\\sum_j c_j f_j(x) = 0$ among named family members; `residual` is the relative
    smallest singular value that certifies it."""

    terms: tuple[tuple[float, str], ...]
    residual: float

    def __str__(self) -> str:
        return format_relation(self.terms)


class IdentifiabilityReport(NamedTuple):
    """The verdict of `check_independence` and everything it rests on (see the module docstring)."""

    verdict: str  # "independent" | "dependent" | "inconclusive"
    definition: str  # which definition / set of functions was tested
    rank: int  # numerical rank of the scaled matrix of the merged set (threshold `threshold`)
    n_functions: int  # functions listed: P * (1 + p + p(p+1)/2)
    n_tested: int  # after merging duplicates and removing zero functions
    singular_values: np.ndarray  # relative singular values r_i = s_i / s_1, descending
    threshold: float
    margin: float
    gap_decades: float  # log10(r_rank / r_{rank+1}) across the threshold (inf when full rank)
    margin_decades: float  # min_i |log10(r_i / threshold)|: distance of the closest r_i to the threshold
    zero_functions: tuple[str, ...]
    identities: tuple[Relation, ...]  # merged duplicates f_j = f_i
    relations: tuple[Relation, ...]  # sparse basis of the null space of the merged set
    notes: tuple[str, ...]
    settings: dict

    @property
    def independent(self) -> bool:
        return self.verdict == "independent"

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "verdict": self.verdict,
            "definition": self.definition,
            "rank": self.rank,
            "n_functions": self.n_functions,
            "n_tested": self.n_tested,
            "smallest_singular_values": [float(v) for v in self.singular_values[-5:]],
            "min_singular_value": float(self.singular_values[-1]) if len(self.singular_values) else None,
            "threshold": self.threshold,
            "margin": self.margin,
            "gap_decades": _finite_or_none(self.gap_decades),
            "margin_decades": _finite_or_none(self.margin_decades),
            "zero_functions": list(self.zero_functions),
            "identities": [str(r) for r in self.identities],
            "relations": [str(r) for r in self.relations],
            "notes": list(self.notes),
            "settings": self.settings,
        }

    def summary(self, max_relations: int = 8) -> str:
        """Human-readable report."""
        sv = self.singular_values
        lines = [
            f"verdict: {self.verdict}  ({self.definition})",
            f"functions: {self.n_functions} listed, {self.n_tested} tested after merging {len(self.identities)} identities "
            f"and removing {len(self.zero_functions)} zero functions; rank {self.rank}",
            f"relative singular values (smallest): {' '.join(f'{v:.1e}' for v in sv[-5:])}; threshold {self.threshold:.0e}, "
            f"margin x{self.margin:.0e}; closest to threshold: {self.margin_decades:.1f} decades",
        ]
        if self.zero_functions:
            shown = ", ".join(self.zero_functions[:6]) + (" ..." if len(self.zero_functions) > 6 else "")
            lines.append(f"vanishing functions ({len(self.zero_functions)}): {shown}")
        for title, rels in (("identities (merged)", self.identities), ("relations", self.relations)):
            if rels:
                lines.append(f"{title} ({len(rels)}):")
                lines += [f"  {r}" for r in rels[:max_relations]]
                if len(rels) > max_relations:
                    lines.append(f"  ... {len(rels) - max_relations} more")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _finite_or_none(v: float):
    return float(v) if np.isfinite(v) else None


def _fmt_coef(c: float) -> str:
    a = abs(c)
    return f"{a:.3f}" if a >= 1e-3 else f"{a:.3e}"


def format_relation(terms) -> str:
    """`[(1.0, 'd2F/dbeta1[0]db'), (-1.0, 'dF/da[0]')]` -> `1.000 * d2F/dbeta1[0]db - 1.000 * dF/da[0] = 0`."""
    out = ""
    for i, (c, name) in enumerate(terms):
        sign = ("-" if c < 0 else "") if i == 0 else (" - " if c < 0 else " + ")
        out += f"{sign}{_fmt_coef(c)} * {name}"
    return out + " = 0"


def _terms(coefs: np.ndarray, names: list[str], cutoff: float = 1e-9) -> tuple[tuple[float, str], ...]:
    """Normalise so the largest |c| is +1; drop negligible entries; order by decreasing |c|, then by index."""
    k = int(np.argmax(np.abs(coefs)))
    c = coefs / coefs[k]
    idx = [i for i in range(len(c)) if abs(c[i]) > cutoff]
    idx.sort(key=lambda i: (-round(abs(c[i]), 9), i))
    return tuple((float(c[i]), names[i]) for i in idx)


def _rref_basis(null: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Rows spanning the same space as `null` (r x m), in reduced row echelon form (sparser)."""
    M = null.copy()
    r, m = M.shape
    row = 0
    for col in range(m):
        if row >= r:
            break
        piv = row + int(np.argmax(np.abs(M[row:, col])))
        if abs(M[piv, col]) < tol:
            continue
        M[[row, piv]] = M[[piv, row]]
        M[row] /= M[row, col]
        for i in range(r):
            if i != row:
                M[i] -= M[i, col] * M[row]
        row += 1
    return M[:row]


def _sparse_relations(B: np.ndarray, null: np.ndarray, tol: float, max_support: int, budget: int = 200_000):
    """Sparsest relations B v = 0 spanning the null space `null` (m x r). Returns [(v, residual, sparse?)]."""
    m, r = null.shape
    if r == 0:
        return []
    active = [i for i in range(m) if np.linalg.norm(null[i]) > 1e-7]
    gram = B.T @ B
    found: list[tuple[np.ndarray, float, bool]] = []
    span = np.zeros((0, m))
    for size in range(1, max_support + 1):
        if len(found) >= r or size > len(active):
            break
        n_comb = 1
        for i in range(size):
            n_comb = n_comb * (len(active) - i) // (i + 1)
        if n_comb > budget:
            break
        supports = np.array(list(itertools.combinations(active, size)), dtype=int)
        sub = gram[supports[:, :, None], supports[:, None, :]]
        lam = np.linalg.eigvalsh(sub)[:, 0]
        for S in supports[np.argsort(lam)][: int(np.sum(lam < 1e-10))]:
            _, s, vt = np.linalg.svd(B[:, S], full_matrices=False)
            if s[-1] > tol:
                continue
            v = np.zeros(m)
            v[S] = vt[-1]
            if np.min(np.abs(vt[-1])) < 1e-6 * np.max(np.abs(vt[-1])):
                continue  # not a circuit: a smaller support holds it
            trial = np.vstack([span, v / np.linalg.norm(v)])
            if np.linalg.matrix_rank(trial, tol=1e-8) > span.shape[0]:
                span = trial
                found.append((v, float(s[-1]), True))
                if len(found) >= r:
                    break
    if len(found) < r:  # complete with the RREF of the part of the null space not yet spanned
        basis = null.T  # r x m, orthonormal rows
        if span.shape[0]:
            q, _ = np.linalg.qr(span.T)
            basis = basis - (basis @ q) @ q.T
            u, s, vt = np.linalg.svd(basis, full_matrices=False)
            basis = vt[: r - len(found)]
        for v in _rref_basis(basis)[: r - len(found)]:
            found.append((v, float(np.linalg.norm(B @ v) / np.linalg.norm(v)), False))
    return found


def check_independence(
    expert: Any,
    router: Any = None,
    *,
    temperature: bool = False,
    hierarchical: bool = False,
    d: int = 2,
    n_points: int = 2,
    n_inputs: int | None = None,
    input_range: float = 4.0,
    tol: float = DEFAULT_TOL,
    margin: float = DEFAULT_MARGIN,
    merge_duplicates: bool = True,
    max_support: int = 4,
    seed: int = 0,
) -> IdentifiabilityReport:
    r"""Is the family of Definition 1 (softmax gating; `router=None`) or Definition 2 (`router`,
    `temperature=True`), or of the hierarchical model (`hierarchical=True`), linearly independent?

    `expert`/`router`: a name or a `jaxmoe.Expert` / `jaxmoe.Router` (any user-written one works).
    Returns an `IdentifiabilityReport`; see the module docstring for the exact set of functions tested,
    the threshold and the margin. Runs in float64.
    """
    require(np.isfinite(tol) and 0 < tol < 1, "tol", tol, "must be in (0, 1)")
    require(np.isfinite(margin) and margin >= 1, "margin", margin, "must be >= 1")
    require(np.isfinite(input_range) and input_range > 0, "input_range", input_range, "must be finite and > 0")
    max_support = require_positive_int("max_support", max_support)
    n_points = require_positive_int("n_points", n_points)
    with jax.enable_x64(True):
        fam = build_family(expert, router, temperature=temperature, hierarchical=hierarchical, d=d)
        m_total = fam.n_functions * n_points
        if n_inputs is None:
            n_inputs = max(200, 3 * m_total)
        xs = draw_inputs(jax.random.PRNGKey(seed), fam.d, n_inputs, -input_range, input_range)
        if n_inputs <= m_total:
            raise JaxMoEInputError(
                "n_inputs", n_inputs, f"must exceed the number of functions tested ({m_total}) for a rank test; use >= {3 * m_total}"
            )
        thetas = draw_points(fam, jax.random.fold_in(jax.random.PRNGKey(seed), 1), n_points)
        A = np.asarray(family_matrix(fam, xs, thetas), dtype=np.float64).reshape(n_inputs, m_total)
    base = fam.function_names()
    names = [f"{f}@p{k + 1}" if n_points > 1 else f for k in range(n_points) for f in base]
    bad = ~np.isfinite(A)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise JaxMoEInputError(
            "F", f"{fam.expert.name}/{fam.router.name}",
            f"non-finite values (nan/inf) at {len(set(rows))} of {n_inputs} inputs (first: {names[cols[0]]} at x={np.asarray(xs)[rows[0]].tolist()}); "
            "the expert and router must be finite and twice differentiable on the input box",
        )
    return _decide(A, names, fam, thetas, tol, margin, merge_duplicates, max_support,
                   settings=dict(expert=fam.expert.name, router=fam.router.name, temperature=temperature,
                                 hierarchical=hierarchical, d=fam.d, n_points=n_points, n_inputs=int(n_inputs),
                                 input_range=float(input_range), seed=seed, parameters=list(fam.param_names),
                                 points=np.asarray(thetas).round(6).tolist()))


def _definition(fam) -> str:
    if fam.hierarchical:
        head = "hierarchical: F = exp(omega^T x) exp(g(x, beta1)" + ("/tau" if fam.temperature else "") + ") h(x, eta)"
    elif fam.temperature or fam.router.name != "linear":
        head = "Definition 2: F = exp(g(x, beta1)" + ("/tau" if fam.temperature else "") + ") h(x, eta)"
    else:
        head = "Definition 1: F = exp(beta1^T x) h(x, eta)"
    return head + "; the set of F and its 1st and 2nd partial derivatives in (" + ", ".join(
        s for s in ("omega" if fam.hierarchical else "", "beta1", "tau" if fam.temperature else "", "eta") if s
    ) + ") at distinct parameter points"


def _decide(A, names, fam, thetas, tol, margin, merge_duplicates, max_support, settings) -> IdentifiabilityReport:
    n, m = A.shape
    low, high = tol / margin, tol * margin
    rowmax = np.max(np.abs(A), axis=1, keepdims=True)
    A = A[rowmax[:, 0] > 0] / rowmax[rowmax[:, 0] > 0]
    norms = np.linalg.norm(A, axis=0)
    top = norms.max()
    if not top > 0:
        raise JaxMoEInputError("F", settings["expert"], "vanishes at every input drawn: nothing to test")
    zero = [j for j in range(m) if norms[j] <= low * top]
    ambiguous_zero = [j for j in range(m) if low * top < norms[j] < high * top]
    keep = [j for j in range(m) if norms[j] > low * top]
    B = A[:, keep] / norms[keep]
    identities: list[Relation] = []
    if merge_duplicates and keep:
        gram = B.T @ B
        dropped: set[int] = set()
        for a in range(len(keep)):
            if a in dropped:
                continue
            for b in np.nonzero(gram[a, a + 1 :] > 1 - 1e-8)[0] + a + 1:
                if b in dropped:
                    continue
                i, j = keep[a], keep[b]
                diff = np.linalg.norm(A[:, j] - A[:, i]) / max(norms[i], norms[j])
                if diff <= low:
                    dropped.add(int(b))
                    identities.append(Relation(((1.0, names[j]), (-1.0, names[i])), float(diff)))
        kept2 = [b for b in range(len(keep)) if b not in dropped]
        keep = [keep[b] for b in kept2]
        B = B[:, kept2]
    if B.shape[1]:
        _, s, vt = np.linalg.svd(B, full_matrices=False)
        rel = s / s[0]
    else:
        rel, vt = np.zeros(0), np.zeros((0, 0))
    rank = int(np.sum(rel > tol))
    in_band = bool(np.any((rel > low) & (rel < high))) or bool(ambiguous_zero)
    if zero:
        verdict = "dependent"
    elif not np.any(rel < high):
        verdict = "independent"
    elif in_band:
        verdict = "inconclusive"
    else:
        verdict = "dependent"
    gap = float(np.log10(rel[rank - 1] / max(rel[rank], 1e-300))) if 0 < rank < len(rel) else float("inf")
    margin_dec = float(np.min(np.abs(np.log10(np.maximum(rel, 1e-300) / tol)))) if len(rel) else float("inf")
    relations: list[Relation] = []
    if rank < len(rel):
        null = vt[rank:].T  # columns span the null space (in B coordinates)
        kept_names = [names[j] for j in keep]
        scale = norms[keep]
        for v, res, _sparse in _sparse_relations(B, null, tol, max_support):
            relations.append(Relation(_terms(v / scale, kept_names), res))
        relations.sort(key=_relation_order)
    notes = _notes(fam, [names[j] for j in zero], identities, relations, verdict, in_band)
    return IdentifiabilityReport(
        verdict=verdict, definition=_definition(fam), rank=rank, n_functions=m, n_tested=len(keep),
        singular_values=rel, threshold=tol, margin=margin, gap_decades=gap, margin_decades=margin_dec,
        zero_functions=tuple(names[j] for j in zero), identities=tuple(identities), relations=tuple(relations),
        notes=tuple(notes), settings=settings,
    )


def _order(name: str) -> int:
    return 2 if name.startswith("d2F") else 1 if name.startswith("dF") else 0


def _relation_order(rel: Relation):
    """Lowest derivative order first, then fewest terms: the PDE-like relations lead."""
    orders = [_order(n) for _, n in rel.terms]
    return (max(orders), len(orders), sum(orders), rel.terms[0][1].rsplit("@", 1)[-1])


def _notes(fam, zero, identities, relations, verdict, in_band) -> list[str]:
    notes = []
    if zero:
        notes.append(
            f"{len(zero)} functions vanish identically on the inputs (e.g. {zero[0]}): h is affine in those parameters, "
            "or h is not twice differentiable and autodiff returns the almost-everywhere value 0 (ReLU: relu'' = 0 a.e., "
            "the second derivative is a Dirac mass at the kink that no pointwise evaluation sees). A vanishing function "
            "makes the set dependent."
        )
    if identities:
        notes.append(
            f"{len(identities)} identities were merged (the set counts a function once), e.g. {identities[0]}. "
            "For every expert h(a^T x + b), dh/da = x dh/db, so d2F/dbeta1 db = dF/da (PDE 9) holds for ridge experts "
            "too; in the hierarchical model dF/domega = dF/dbeta1 (PDE 28) holds for every expert. These alone do not "
            "separate linear from ridge experts; what does is the further relations (F = a^T dF/da + b dF/db, "
            "vanishing second derivatives in (a, b))."
        )
    if fam.temperature and fam.router.is_linear:
        notes.append("linear router with temperature: u = exp(beta1^T x / tau) is homogeneous of degree 0 in (beta1, tau), "
                     "so dF/dtau = -(1/tau) beta1^T dF/dbeta1 (PDE 15) for any expert.")
    if verdict == "inconclusive" or in_band:
        notes.append("a singular value lies within the margin of the threshold: try more distinct inputs (larger d "
                     "or input_range), fewer parameter points, or another seed.")
    return notes
