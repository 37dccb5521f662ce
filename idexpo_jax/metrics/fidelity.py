"""ExpO's metrics of local affine explanations (Plumb et al., NeurIPS 2020).

For an explainer that returns a local affine model `e(x)(x') = x'·coef + intercept` in input space
(e.g. `local_linear`, MAPLE) and a neighbourhood `x' = x + N(0, σ²I)` (σ = 0.1, 5 neighbours):

* point fidelity `PF(x) = ‖e(x)(x) − f(x)‖²`;
* neighbourhood fidelity `NF(x) = mean_{x'} ‖e(x)(x') − f(x')‖²`;
* stability `S(x) = mean_{x'} ‖coef(x') − coef(x)‖²`, where the explainer is **re-run at x'**
  (the ExpO reference code re-explained `x`, which measures only the explainer's sampling noise).

Squared norms sum over outputs (`coef` of shape `(D,)` or `(D, K)`). The formulas are written
once: `affine_fidelity` (PF and NF) and `coef_change` (S), composed by `expo_scores`, a pure
function of the explanations and the model values that every path calls: the explainer-driven
`expo_metrics` here, and batched explainers that explain many points in one call (MAPLE's
`maple_metrics`). Every function takes one example `(D,)`, is pure and `vmap`s over examples;
`expo_metrics_batch` does that for a batch.

`output`/`target` select the values `f` (`idexpo_jax.explainers.local_linear`; default `"raw"`,
ExpO's regression value); they must match the explainer's. The explainer is a callable
`explainer(x, key) -> (coef, intercept)`, e.g.
`lambda x, k: local_linear(logits_fn, x, k, n_samples=1000)`.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax

from idexpo_jax.core.checks import check_positive, poison
from idexpo_jax.explainers.local_linear import (affine_predict, anchor_target, check_affine_output,
                                                check_tabular, gaussian_neighbors, model_outputs,
                                                sq_error)

Array = jax.Array


def _check_explanation(x: Array, coef: Array, intercept: Array) -> None:
  if coef.ndim not in (1, 2) or coef.shape[0] != x.shape[0] or intercept.shape != coef.shape[1:]:
    raise ValueError(f"`coef` must be (D,) or (D, K) with D = {x.shape[0]} and `intercept` () or "
                     f"(K,); got coef {coef.shape}, intercept {intercept.shape}.")


def affine_fidelity(coef: Array, intercept: Array, points: Array, values: Array) -> Array:
  """`mean_i ‖e(p_i) − f(p_i)‖²` of `e(x') = x'·coef + intercept` at `points (N, D)`.

  PF is this at the explained point alone (`points = x[None]`), NF at its neighbours.

  Args:
    coef, intercept: the local model, `(D,)` and `()` or `(D, K)` and `(K,)`.
    points: `(N, D)`.
    values: the model values `f` at `points`, `(N,)` or `(N, K)`.
  """
  return sq_error(values, affine_predict(coef, intercept, points)).mean()


def coef_change(coef: Array, neighbour_coefs: Array) -> Array:
  """`mean_{x'} ‖coef(x') − coef(x)‖²` (summed over every entry) from `neighbour_coefs (N, ...)`."""
  n = neighbour_coefs.shape[0]
  return ((neighbour_coefs - coef) ** 2).reshape(n, -1).sum(axis=1).mean()


def expo_scores(x: Array, coef: Array, intercept: Array, f_x: Array, neighbours: Array,
                f_neighbours: Array, neighbour_coefs: Optional[Array] = None) -> dict:
  """PF, NF and stability of one explanation from its values (pure; `vmap` over examples).

  Args:
    x: the explained example `(D,)`.
    coef, intercept: its explanation, `(D,)` and `()` or `(D, K)` and `(K,)`.
    f_x: the model value at `x`, `()` or `(K,)`.
    neighbours: `(N, D)` points `x'` of the neighbourhood fidelity.
    f_neighbours: the model values there, `(N,)` or `(N, K)`.
    neighbour_coefs: `(M, D)` or `(M, D, K)` explanations at the (same or other) neighbours;
      `None` leaves stability out.

  Returns:
    `{"pf", "nf"[, "stability"]}`, scalars.
  """
  out = {"pf": affine_fidelity(coef, intercept, x[None], f_x[None]),
         "nf": affine_fidelity(coef, intercept, neighbours, f_neighbours)}
  if neighbour_coefs is not None:
    out["stability"] = coef_change(coef, neighbour_coefs)
  return out


def point_fidelity(logits_fn, x: Array, coef: Array, intercept: Array, *, output: str = "raw",
                   target: Optional[Array] = None) -> Array:
  """`‖e(x)(x) − f(x)‖²` for one example `x (D,)` (a scalar)."""
  check_tabular(x, "x", 1)
  check_affine_output(output)
  _check_explanation(x, coef, intercept)
  target = anchor_target(logits_fn, x, output, target)
  xb = x[None]
  return affine_fidelity(coef, intercept, xb,
                         model_outputs(logits_fn, xb, output=output, target=target))


def neighborhood_fidelity(logits_fn, x: Array, coef: Array, intercept: Array, key: Array, *,
                          n_neighbors: int = 5, sigma=0.1, output: str = "raw",
                          target: Optional[Array] = None) -> Array:
  """`mean_{x'} ‖e(x)(x') − f(x')‖²` over `n_neighbors` draws `x' = x + N(0, σ²I)` (a scalar).

  A traced `σ <= 0` gives NaN.
  """
  check_tabular(x, "x", 1)
  check_affine_output(output)
  _check_explanation(x, coef, intercept)
  target = anchor_target(logits_fn, x, output, target)
  xs = gaussian_neighbors(x, key, n=n_neighbors, sigma=sigma)
  return poison(affine_fidelity(coef, intercept, xs,
                                model_outputs(logits_fn, xs, output=output, target=target)),
                check_positive(sigma, "sigma"))


def _neighbour_coefs(explainer: Callable, x: Array, key: Array, n_neighbors: int, sigma):
  """`(k_x, coefs)`: the explainer re-run at `n_neighbors` draws `x + N(0, σ²I)`, and the key
  of the explanation at `x` itself."""
  k_nb, k_x, k_re = jax.random.split(key, 3)
  xs = gaussian_neighbors(x, k_nb, n=n_neighbors, sigma=sigma)
  coefs, _ = jax.vmap(explainer)(xs, jax.random.split(k_re, n_neighbors))
  return k_x, coefs


def explanation_stability(explainer: Callable, x: Array, key: Array, *,
                          coef: Optional[Array] = None, n_neighbors: int = 5,
                          sigma=0.1) -> Array:
  """`mean_{x'} ‖coef(x') − coef(x)‖²`, re-explaining at each `x' = x + N(0, σ²I)` (a scalar).

  Args:
    explainer: `explainer(x, key) -> (coef, intercept)`.
    x: one example `(D,)`.
    key: PRNG key (split for the neighbours and one explainer key per point).
    coef: the explanation at `x` when already computed (else the explainer runs at `x`).
    n_neighbors, sigma: the neighbourhood (a traced `σ <= 0` gives NaN).
  """
  check_tabular(x, "x", 1)
  k_x, coefs = _neighbour_coefs(explainer, x, key, n_neighbors, sigma)
  if coef is None:
    coef, _ = explainer(x, k_x)
  return poison(coef_change(coef, coefs), check_positive(sigma, "sigma"))


def expo_metrics(logits_fn, explainer: Callable, x: Array, key: Array, *, n_neighbors: int = 5,
                 sigma=0.1, output: str = "raw", target: Optional[Array] = None,
                 stability: bool = True) -> dict:
  """Point fidelity, neighbourhood fidelity and stability of one explanation of `x`.

  The explainer runs once at `x` (its key is split from `key`) and the three metrics use that
  explanation (`expo_scores`); the neighbours of NF and of stability are independent draws.
  `stability=False` skips the `n_neighbors` re-explanations (the result has no "stability").
  A traced `σ <= 0` gives NaN NF and stability.

  Returns:
    `{"pf", "nf"[, "stability"]}`, scalars.
  """
  check_tabular(x, "x", 1)
  check_affine_output(output)
  ok = check_positive(sigma, "sigma")
  k_exp, k_nf, k_st = jax.random.split(key, 3)
  coef, intercept = explainer(x, k_exp)
  _check_explanation(x, coef, intercept)
  target = anchor_target(logits_fn, x, output, target)
  xs = gaussian_neighbors(x, k_nf, n=n_neighbors, sigma=sigma)
  f_x = model_outputs(logits_fn, x[None], output=output, target=target)[0]
  f_xs = model_outputs(logits_fn, xs, output=output, target=target)
  coefs = _neighbour_coefs(explainer, x, k_st, n_neighbors, sigma)[1] if stability else None
  out = expo_scores(x, coef, intercept, f_x, xs, f_xs, coefs)
  return {k: v if k == "pf" else poison(v, ok) for k, v in out.items()}


def expo_metrics_batch(logits_fn, explainer: Callable, xb: Array, key: Array, **kwargs) -> dict:
  """`expo_metrics` for every row of `xb (B, D)` (one key per row): a dict of `(B,)` arrays."""
  check_tabular(xb, "xb", 2)
  keys = jax.random.split(key, xb.shape[0])
  return jax.vmap(lambda x, k: expo_metrics(logits_fn, explainer, x, k, **kwargs))(xb, keys)
