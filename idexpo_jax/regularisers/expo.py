"""ExpO's explanation regularisers (Plumb et al., NeurIPS 2020).

Each term is `(logits_fn, xb, key, **options) -> (scalar, aux dict)` and composes with any other
loss in one jitted train step, e.g. `mse + weight · expo_fidelity(f, xb[:16], key)[0]`.

* `expo_fidelity`: neighbours `x' = x + N(0, σ²I)` (σ = 0.5, `m = max(20, 2D)` of them), an
  ordinary-least-squares affine fit `[x', 1] → f(x')` per example, loss = mean squared residual.
  The fit's projection is data: the residual is `(I − H) f(x')` with the hat matrix `H` of the
  design, so the gradient flows only through `f(x')`.
* `expo_fidelity_1d`: the same with one random feature per example perturbed (20 samples) and a
  1-D affine fit.
* `expo_stability`: `mean ‖f(x) − f(x + u)‖²`, `u ~ U(−r, r)^D` (r = 0.05).

The fitted outputs are the library's one vocabulary (`idexpo_jax.core.predictor`, as in
`idexpo_jax.explainers.local_linear`): `output="raw"` (the default) fits the model's values as they
are, a regression model's `(B,)` or `(B, 1)` value or every column of a multi-output model;
`"probs"` (`"logits"`) every class probability (logit); `"prob"`, `"log_prob"`, `"logit"` the
score of one class, the one predicted at the clean `x`. Squared errors are summed over outputs and
averaged over neighbours and examples.

The default differs from the one-class explainers' and metrics' `"prob"` on purpose: ExpO
regularises regression models (Plumb et al., NeurIPS 2020: its UCI tables), whose one output has no
softmax, and its terms measure how affine the model's values are, which needs no class.

A concrete `sigma`/`radius <= 0` raises ValueError; a traced one gives NaN losses.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from idexpo_jax.core.lstsq import weighted_least_squares
from idexpo_jax.core.checks import as_operand, check_int, check_positive, poison
from idexpo_jax.explainers.local_linear import (affine_predict, anchor_targets, check_affine_output,
                                                check_tabular, model_outputs, sq_error)

Array = jax.Array


def _check_args(xb: Array, output: str, scale, scale_name: str, n_neighbors: int,
                minimum: int, why: str):
  """Validates the options; returns the traced condition on `scale` and `n_neighbors` as an int."""
  check_tabular(xb, "xb", 2)
  check_affine_output(output)
  ok = check_positive(scale, scale_name)
  n = check_int(n_neighbors, "n_neighbors")
  if n < minimum:
    raise ValueError(f"`n_neighbors` must be at least {minimum}{why}; got {n_neighbors}.")
  return ok, n


def _targets(logits_fn, xb: Array, output: str, n: int):
  """Per-neighbour class of a one-class output (the class predicted at the clean example), else
  None."""
  target = anchor_targets(logits_fn, xb, output)
  return None if target is None else jnp.repeat(target, n)


def _local_fit_loss(logits_fn, xb: Array, design: Array, neighbours: Array, output: str):
  """Mean over neighbours of the squared residual of the affine fit `design → f(neighbours)`.

  Args:
    design: `(B, m, p)` regressors (data).
    neighbours: `(B, m, D)` inputs whose outputs are fitted.

  Returns:
    `(residual_sq (B,), neighbour_var (B,))`.
  """
  b, m = neighbours.shape[:2]
  values = model_outputs(logits_fn, neighbours.reshape(b * m, -1), output=output,
                         target=_targets(logits_fn, xb, output, m))
  values = values.reshape(b, m, *values.shape[1:])
  ones = jnp.ones((m,), values.dtype)

  def one(z, v):
    coef, intercept = weighted_least_squares(z, v, ones)
    resid_sq = sq_error(v, affine_predict(coef, intercept, z.astype(v.dtype))).mean()
    return resid_sq, sq_error(v, v.mean(axis=0)).mean()

  return jax.vmap(one)(design, values)


def expo_fidelity(logits_fn, xb: Array, key: Array, *, n_neighbors: Optional[int] = None,
                  sigma=0.5, output: str = "raw"):
  """ExpO-Fidelity: how badly an affine model fits `f` in a Gaussian neighbourhood of each `x`.

  Args:
    logits_fn: `xb -> (B,)` or `(B, K)`, or a `Predictor`.
    xb: batch `(B, D)` (ExpO regularises a batch of 16 beside the loss batch).
    key: PRNG key for the neighbours.
    n_neighbors: neighbours per example, `m > D` (default `max(20, 2D)`).
    sigma: standard deviation of the neighbourhood (0.5 for regularising in the paper).
    output: the fitted values (module docstring): "raw" (default; regression values, or every
      column), "probs", "logits", or one class's "prob", "log_prob", "logit".

  Returns:
    `(loss, aux)`: `loss = mean_x mean_{x'} ‖f(x') − e_x(x')‖²` with `e_x` the least-squares fit;
    aux `neighbour_var` = mean squared deviation of `f(x')` from its neighbourhood mean (the loss
    divided by it is the unexplained fraction `1 − R²`).
  """
  check_tabular(xb, "xb", 2)
  dim = xb.shape[1]
  m = max(20, 2 * dim) if n_neighbors is None else n_neighbors
  ok, m = _check_args(xb, output, sigma, "sigma", m, dim + 1,
                      f" (more than the D = {dim} features, for an affine fit)")
  offsets = as_operand(sigma, xb.dtype) * jax.random.normal(key, (xb.shape[0], m, dim), xb.dtype)
  resid, var = _local_fit_loss(logits_fn, xb, offsets, xb[:, None] + offsets, output)
  return poison(resid.mean(), ok), {"neighbour_var": poison(var.mean(), ok)}


def expo_fidelity_1d(logits_fn, xb: Array, key: Array, *, n_neighbors: int = 20, sigma=0.5,
                     output: str = "raw"):
  """ExpO-1D-Fidelity: the affine fit along one random feature per example.

  For each `x` a feature `j ~ U{0..D−1}` and `t ~ N(0, σ²)` (`n_neighbors` samples) give
  `x' = x + t·e_j`; the 1-D fit `t → f(x')` (slope and intercept) is least squares.

  Args:
    logits_fn, xb, key, sigma, output: as in `expo_fidelity`.
    n_neighbors: samples per example (20 in the paper, ≥ 3).

  Returns:
    `(loss, aux)` as in `expo_fidelity`.
  """
  ok, n_neighbors = _check_args(xb, output, sigma, "sigma", n_neighbors, 3,
                                " for a 1-D affine fit")
  b, dim = xb.shape
  k_feat, k_t = jax.random.split(key)
  feature = jax.random.randint(k_feat, (b,), 0, dim)
  t = as_operand(sigma, xb.dtype) * jax.random.normal(k_t, (b, n_neighbors, 1), xb.dtype)
  neighbours = xb[:, None] + t * jax.nn.one_hot(feature, dim, dtype=xb.dtype)[:, None]
  resid, var = _local_fit_loss(logits_fn, xb, t, neighbours, output)
  return poison(resid.mean(), ok), {"neighbour_var": poison(var.mean(), ok)}


def expo_stability(logits_fn, xb: Array, key: Array, *, radius=0.05, n_neighbors: int = 1,
                   output: str = "raw"):
  """ExpO-Stability: `mean ‖f(x) − f(x + u)‖²` with `u ~ U(−r, r)^D`.

  Args:
    logits_fn, xb, output: as in `expo_fidelity`.
    key: PRNG key for `u`.
    radius: half-width `r` of the uniform perturbation (0.05 in the paper).
    n_neighbors: perturbations per example (1 in the paper).

  Returns:
    `(loss, aux)`; aux `max_change` = the largest per-example mean squared change.
    For an affine model `f(x) = Wx + b`, `E loss = r²/3 · ‖W‖²_F`.
  """
  ok, n_neighbors = _check_args(xb, output, radius, "radius", n_neighbors, 1, "")
  b, dim = xb.shape
  radius = as_operand(radius, xb.dtype)
  u = jax.random.uniform(key, (b, n_neighbors, dim), xb.dtype, -radius, radius)
  target = _targets(logits_fn, xb, output, 1)
  clean = model_outputs(logits_fn, xb, output=output, target=target)
  moved = model_outputs(logits_fn, (xb[:, None] + u).reshape(b * n_neighbors, dim),
                        output=output, target=_targets(logits_fn, xb, output, n_neighbors))
  change = sq_error(jnp.repeat(clean, n_neighbors, axis=0), moved).reshape(b, n_neighbors)
  per_example = change.mean(axis=1)
  return poison(per_example.mean(), ok), {"max_change": poison(per_example.max(), ok)}
