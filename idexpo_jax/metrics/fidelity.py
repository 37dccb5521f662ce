"""ExpO's metrics of local affine explanations (Plumb et al., NeurIPS 2020).

For an explainer that returns a local affine model `e(x)(x') = x'·coef + intercept` in input space
(e.g. `local_linear`) and a neighbourhood `x' = x + N(0, σ²I)` (σ = 0.1, 5 neighbours):

* point fidelity `PF(x) = ‖e(x)(x) − f(x)‖²`;
* neighbourhood fidelity `NF(x) = mean_{x'} ‖e(x)(x') − f(x')‖²`;
* stability `S(x) = mean_{x'} ‖coef(x') − coef(x)‖²`, where the explainer is **re-run at x'**
  (the ExpO reference code re-explained `x`, which measures only the explainer's sampling noise).

Squared norms sum over outputs (`coef` of shape `(D,)` or `(D, K)`). Every function takes one
example `(D,)`, is pure and `vmap`s over examples; `expo_metrics_batch` does that for a batch.
`output`/`target` select the values `f` as in `idexpo_jax.explainers.local_linear`; they must match the
explainer's. The explainer is a callable `explainer(x, key) -> (coef, intercept)`, e.g.
`lambda x, k: local_linear(logits_fn, x, k, n_samples=1000)`.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax

from idexpo_jax.explainers.local_linear import (affine_predict, anchor_target, check_output, check_tabular,
                                     gaussian_neighbors, model_outputs, sq_error)
from idexpo_jax.core.predictor import check_positive, poison

Array = jax.Array


def _check_explanation(x: Array, coef: Array, intercept: Array) -> None:
  if coef.ndim not in (1, 2) or coef.shape[0] != x.shape[0] or intercept.shape != coef.shape[1:]:
    raise ValueError(f"`coef` must be (D,) or (D, K) with D = {x.shape[0]} and `intercept` () or "
                     f"(K,); got coef {coef.shape}, intercept {intercept.shape}.")


def point_fidelity(logits_fn, x: Array, coef: Array, intercept: Array, *, output: str = "raw",
                   target: Optional[Array] = None) -> Array:
  """`‖e(x)(x) − f(x)‖²` for one example `x (D,)` (a scalar)."""
  check_tabular(x, "x", 1)
  check_output(output)
  _check_explanation(x, coef, intercept)
  target = anchor_target(logits_fn, x, output, target)
  xb = x[None]
  return sq_error(model_outputs(logits_fn, xb, output=output, target=target),
                  affine_predict(coef, intercept, xb))[0]


def neighborhood_fidelity(logits_fn, x: Array, coef: Array, intercept: Array, key: Array, *,
                          n_neighbors: int = 5, sigma=0.1, output: str = "raw",
                          target: Optional[Array] = None) -> Array:
  """`mean_{x'} ‖e(x)(x') − f(x')‖²` over `n_neighbors` draws `x' = x + N(0, σ²I)` (a scalar)."""
  check_tabular(x, "x", 1)
  check_output(output)
  _check_explanation(x, coef, intercept)
  target = anchor_target(logits_fn, x, output, target)
  xs = gaussian_neighbors(x, key, n=n_neighbors, sigma=sigma)
  return poison(sq_error(model_outputs(logits_fn, xs, output=output, target=target),
                         affine_predict(coef, intercept, xs)).mean(),
                check_positive(sigma, "sigma"))


def explanation_stability(explainer: Callable, x: Array, key: Array, *,
                          coef: Optional[Array] = None, n_neighbors: int = 5,
                          sigma=0.1) -> Array:
  """`mean_{x'} ‖coef(x') − coef(x)‖²`, re-explaining at each `x' = x + N(0, σ²I)` (a scalar).

  Args:
    explainer: `explainer(x, key) -> (coef, intercept)`.
    x: one example `(D,)`.
    key: PRNG key (split for the neighbours and one explainer key per point).
    coef: the explanation at `x` when already computed (else the explainer runs at `x`).
    n_neighbors, sigma: the neighbourhood.
  """
  check_tabular(x, "x", 1)
  k_nb, k_x, k_re = jax.random.split(key, 3)
  if coef is None:
    coef, _ = explainer(x, k_x)
  xs = gaussian_neighbors(x, k_nb, n=n_neighbors, sigma=sigma)
  coefs, _ = jax.vmap(explainer)(xs, jax.random.split(k_re, n_neighbors))
  diff = (coefs - coef) ** 2
  return poison(diff.reshape(n_neighbors, -1).sum(axis=1).mean(), check_positive(sigma, "sigma"))


def expo_metrics(logits_fn, explainer: Callable, x: Array, key: Array, *, n_neighbors: int = 5,
                 sigma=0.1, output: str = "raw", target: Optional[Array] = None,
                 stability: bool = True) -> dict:
  """Point fidelity, neighbourhood fidelity and stability of one explanation of `x`.

  The explainer runs once at `x` (its key is split from `key`) and the three metrics use that
  explanation. `stability=False` skips the `n_neighbors` re-explanations (returns NaN for it).

  Returns:
    `{"pf", "nf", "stability"}`, scalars.
  """
  k_exp, k_nf, k_st = jax.random.split(key, 3)
  coef, intercept = explainer(x, k_exp)
  kw = dict(output=output, target=target)
  out = {"pf": point_fidelity(logits_fn, x, coef, intercept, **kw),
         "nf": neighborhood_fidelity(logits_fn, x, coef, intercept, k_nf,
                                     n_neighbors=n_neighbors, sigma=sigma, **kw)}
  if stability:
    out["stability"] = explanation_stability(explainer, x, k_st, coef=coef,
                                             n_neighbors=n_neighbors, sigma=sigma)
  return out


def expo_metrics_batch(logits_fn, explainer: Callable, xb: Array, key: Array, **kwargs) -> dict:
  """`expo_metrics` for every row of `xb (B, D)` (one key per row): a dict of `(B,)` arrays."""
  check_tabular(xb, "xb", 2)
  keys = jax.random.split(key, xb.shape[0])
  return jax.vmap(lambda x, k: expo_metrics(logits_fn, explainer, x, k, **kwargs))(xb, keys)
