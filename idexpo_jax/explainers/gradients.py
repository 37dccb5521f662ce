"""Gradient attributions of one class, aggregated to units: differentiable, second order in ID-ExpO.

Every function explains one example `x` (no batch axis) for class `target` and returns one score per
unit `(d,)` (pixels, segments or tabular features, see `masking`): the input-space attribution is
summed over the channels and the pixels of each unit (`masking.unit_sum`). The explained output
`f` is chosen by `output`:

* `"prob"`: the softmax probability `p_target(x)` (the score of the insertion/deletion curves);
* `"log_prob"`: `log p_target(x)`;
* `"logit"`: the target's pre-softmax logit;
* `"raw"`: the model's output at index `target` as it is (regression, or a model that already
  returns probabilities).

The gradients are `jax.grad` of the model, so a loss that calls these functions is differentiated
through them (second order: `∂/∂θ` of `∂f/∂x`), as ID-ExpO needs (Yoshikawa & Iwata, AISTATS 2024).
The input gradients of a batch of points are one `jax.grad` of the sum of their outputs, which
equals the per-point gradients because the model treats rows independently (inference mode: no
batch statistics), as in `grad_cam_batch`.

* `integrated_gradients`: Sundararajan, Taly & Yan, "Axiomatic attribution for deep networks",
  ICML 2017: `IG_i = (x_i − b_i) ∫_0^1 ∂f(b + α(x − b))/∂x_i dα` by a quadrature in `α`;
  completeness `Σ_i IG_i = f(x) − f(b)` holds up to the quadrature error.
* `smooth_grad`: Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017:
  `mean_s ∇f(x + ε_s)`, `ε_s ~ N(0, σ² I)`, with `σ` in input units (the paper recommends 10–20 %
  of the input range).
* `gradient_times_input`: `(x − b) ⊙ ∇f(x)` (Shrikumar et al., 2016, with `b = 0`); on a model
  linear in `x` it equals integrated gradients, `w ⊙ (x − b)`.
* `target_gradient`: the plain gradient `∇f(x)` (Simonyan et al., 2014, signed).
* `input_gradients`: the gradient of a summary of all outputs, `∂/∂x Σ_k log p_k(x)` or
  `∂/∂x max_k p_k(x)`, in input space: the explanation that RRR constrains (Ross, Hughes &
  Doshi-Velez, IJCAI 2017).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax.core import masking
from idexpo_jax.core.checks import check_int, check_positive, is_traced, poison, valid_target
from idexpo_jax.core.predictor import (as_logits_fn, check_output, num_outputs, promote_input,
                                      target_scores)

Array = jax.Array

QUADRATURES = ("trapezoid", "left", "right", "middle", "gausslegendre")


def target_output(logits_fn, xb: Array, target, output: str) -> Array:
  """The explained output `f` (module docstring) of `target` for every row of `xb`, `(B,)`.

  `predictor.target_scores`, the one output selection of the library: a concrete `target` outside
  `[0, K)` raises ValueError, a traced one gives NaN; `"prob"` on a one-output model raises.
  """
  return target_scores(logits_fn, xb, target, output=output)


def check_gradient_args(x: Array, target, segments, output: str) -> Array:
  """Validates the arguments shared by the gradient attributions; returns `x` as a float array."""
  check_output(output)
  x = jnp.asarray(x)
  if x.ndim == 0:
    raise ValueError("`x` must be one example without batch axis, e.g. tabular (D,) or an image "
                     "(H, W, C); got a scalar.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"`x` must be a floating-point array to be differentiated; got {x.dtype}.")
  masking.check_units(x, segments)
  if jnp.ndim(target) != 0:
    raise ValueError(f"`target` must be a scalar class index; got shape {jnp.shape(target)}.")
  return x


def input_gradients_at(logits_fn, xs: Array, target, *, output: str = "prob",
                       chunk_size: Optional[int] = None) -> Array:
  """`∇f` at every row of `xs (N, ...)` for class `target`, shape `(N, ...)`.

  A traced `target` outside `[0, K)` gives NaN gradients (the gradient of a NaN-poisoned score
  would be 0, a silent wrong attribution); a concrete one raises ValueError.

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor`.
    xs: points, one per row.
    target: the class.
    output: the explained output, one of `OUTPUTS`.
    chunk_size: optional number of rows per model call (`jax.lax.map` over chunks).
  """
  fn = as_logits_fn(logits_fn)
  grad = jax.grad(lambda xc: target_output(fn, xc, target, output).sum())
  grads = masking.map_chunks(grad, (xs,), chunk_size)
  if is_traced(target):
    grads = poison(grads, valid_target(target, num_outputs(fn, xs)))
  return grads


def to_units(values: Array, x_shape, segments: Optional[Array]) -> Array:
  """Sums an input-space attribution (the shape of `x`) over channels and units: `(d,)`."""
  if len(x_shape) == 3 or segments is not None:
    return masking.unit_sum(values, segments=segments,
                            n_units=masking.num_units(x_shape, segments))
  return values.reshape(-1)


def path_quadrature(n_steps: int, method: str = "trapezoid") -> tuple[np.ndarray, np.ndarray]:
  """Nodes `α_k ∈ [0, 1]` and weights `w_k` (summing to 1) of a rule for `∫_0^1 g(α) dα`.

  `n_steps` is the number of nodes (model gradients): "trapezoid" on `linspace(0, 1, n)` (needs
  `n >= 2`), Riemann sums "left" (`k/n`), "right" (`(k+1)/n`), "middle" (`(k+½)/n`), or
  "gausslegendre" (exact for polynomials of degree `2n − 1`).
  """
  if method not in QUADRATURES:
    raise ValueError(f"`method` must be one of {QUADRATURES}; got {method!r}.")
  n_steps = check_int(n_steps, "n_steps", minimum=2 if method == "trapezoid" else 1)
  k = np.arange(n_steps, dtype=np.float64)
  if method == "trapezoid":
    alphas = k / (n_steps - 1)
    weights = np.full(n_steps, 1.0 / (n_steps - 1))
    weights[[0, -1]] *= 0.5
  elif method == "left":
    alphas, weights = k / n_steps, np.full(n_steps, 1.0 / n_steps)
  elif method == "right":
    alphas, weights = (k + 1) / n_steps, np.full(n_steps, 1.0 / n_steps)
  elif method == "middle":
    alphas, weights = (k + 0.5) / n_steps, np.full(n_steps, 1.0 / n_steps)
  else:  # "gausslegendre"
    nodes, w = np.polynomial.legendre.leggauss(n_steps)
    alphas, weights = 0.5 * (nodes + 1.0), 0.5 * w
  return alphas, weights


def integrated_gradients(logits_fn, x: Array, target, key: Optional[Array] = None, *, baseline,
                         segments: Optional[Array] = None, n_steps: int = 32,
                         method: str = "trapezoid", output: str = "prob",
                         chunk_size: Optional[int] = None) -> Array:
  """Integrated gradients of one example, summed to units (module docstring).

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor`.
    x: one example without batch axis: tabular `(D,)` or an image `(H, W, C)`.
    target: scalar class index.
    key: unused (deterministic); accepted so that every explainer has the call
      `(model, x, target, key)`.
    baseline: the path's start `b`, broadcastable to `x`.
    segments: optional `(H, W)` int map of unit ids; pixels (or features) otherwise.
    n_steps: number of points on the path (model gradients), see `path_quadrature`.
    method: the quadrature rule, one of `QUADRATURES`.
    output: the explained output, one of `OUTPUTS`.
    chunk_size: optional number of path points per model call.

  Returns:
    `φ (d,)` with `Σφ ≈ f(x) − f(b)` (completeness, up to the quadrature error).
  """
  del key
  x = check_gradient_args(x, target, segments, output)
  masking.check_baseline(x, baseline)
  alphas, weights = path_quadrature(n_steps, method)
  b = jnp.broadcast_to(jnp.asarray(baseline, x.dtype), x.shape)
  a = jnp.asarray(alphas, x.dtype).reshape(-1, *([1] * x.ndim))
  grads = input_gradients_at(logits_fn, b + a * (x - b), target, output=output,
                             chunk_size=chunk_size)
  mean_grad = jnp.tensordot(jnp.asarray(weights, x.dtype), grads, axes=1)
  return to_units((x - b) * mean_grad, x.shape, segments)


def smooth_grad(logits_fn, x: Array, target, key: Array, *, segments: Optional[Array] = None,
                n_samples: int = 50, sigma: float = 0.15, output: str = "prob",
                chunk_size: Optional[int] = None) -> Array:
  """SmoothGrad of one example, summed to units (module docstring).

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor`.
    x: one example without batch axis.
    target: scalar class index.
    key: PRNG key of the noise (same key, same result).
    segments: optional `(H, W)` int map of unit ids.
    n_samples: number of noisy copies.
    sigma: standard deviation of the Gaussian noise, in input units (`>= 0`; 0 gives the plain
      gradient). A concrete negative one raises ValueError; a traced one gives NaN.
    output: the explained output, one of `OUTPUTS`.
    chunk_size: optional number of noisy copies per model call.

  Returns:
    `φ (d,)`: the mean gradient, summed over each unit's pixels and channels.
  """
  x = check_gradient_args(x, target, segments, output)
  n_samples = check_int(n_samples, "n_samples", minimum=1)
  sigma_ok = check_positive(sigma, "sigma", allow_zero=True)
  try:
    if np.broadcast_shapes(np.shape(sigma), x.shape) != x.shape:
      raise ValueError
  except ValueError as err:
    raise ValueError(f"`sigma` must be a scalar or broadcastable to x {tuple(x.shape)}; got "
                     f"shape {np.shape(sigma)}.") from err
  noise = jax.random.normal(key, (n_samples, *x.shape), x.dtype)
  grads = input_gradients_at(logits_fn, x + jnp.asarray(sigma, x.dtype) * noise, target,
                             output=output, chunk_size=chunk_size)
  return poison(to_units(grads.mean(0), x.shape, segments), sigma_ok)


def target_gradient(logits_fn, x: Array, target, key: Optional[Array] = None, *,
                    segments: Optional[Array] = None, output: str = "prob") -> Array:
  """The gradient `∇f(x)` of one example, summed to units (signed; `key` is unused)."""
  del key
  x = check_gradient_args(x, target, segments, output)
  grads = input_gradients_at(logits_fn, x[None], target, output=output)[0]
  return to_units(grads, x.shape, segments)


def gradient_times_input(logits_fn, x: Array, target, key: Optional[Array] = None, *,
                         baseline=0.0, segments: Optional[Array] = None,
                         output: str = "prob") -> Array:
  """`(x − b) ⊙ ∇f(x)` of one example, summed to units (`key` is unused).

  With `baseline = 0` this is the classic gradient × input; on a model whose output is linear in
  `x` (`output="logit"` of a linear model) it equals `w ⊙ (x − b)`, i.e. integrated gradients.
  """
  del key
  x = check_gradient_args(x, target, segments, output)
  masking.check_baseline(x, baseline)
  grads = input_gradients_at(logits_fn, x[None], target, output=output)[0]
  b = jnp.asarray(baseline, x.dtype)
  return to_units((x - b) * grads, x.shape, segments)

def input_gradients(logits_fn, x: Array, *, reduce: str = "sum_log_prob") -> Array:
  """Gradient of a scalar summary of the model's output w.r.t. one input `x`.

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor`.
    x: one example, no batch axis (integer `x` is promoted to the model's float dtype).
    reduce: "sum_log_prob" — `∂/∂x Σ_k log p_k(x)` (the RRR penalty); "max_prob" —
      `∂/∂x max_k p_k(x)` (the find-another-explanation mask).

  Both summaries take a softmax over the logits, so the model needs `K >= 2` outputs (with one,
  both are constant and the gradient would be 0): one output raises ValueError.

  Returns:
    An array of the shape of `x`.
  """
  x = promote_input(logits_fn, x)
  logits_fn = as_logits_fn(logits_fn)
  if reduce not in ("sum_log_prob", "max_prob"):
    raise ValueError(f"`reduce` must be 'sum_log_prob' or 'max_prob'; got {reduce!r}.")

  def summary(xi):
    logits = logits_fn(xi[None])
    if logits.ndim != 2 or logits.shape[0] != 1:
      raise ValueError(f"`x` must be one example without batch axis (the model maps x[None] to "
                       f"logits (1, K)); got x {tuple(x.shape)} giving logits "
                       f"{tuple(logits.shape)}.")
    if logits.shape[1] < 2:
      raise ValueError(f"`reduce={reduce!r}` takes a softmax over the logits, which needs K >= 2 "
                       f"outputs; the model returns {tuple(logits.shape)} (a one-output model's "
                       f"softmax is constant, so its gradient would be 0).")
    logits = logits[0]
    if reduce == "sum_log_prob":
      return jax.nn.log_softmax(logits).sum()
    if reduce == "max_prob":
      return jax.nn.softmax(logits).max()
    raise ValueError(f"`reduce` must be 'sum_log_prob' or 'max_prob'; got {reduce!r}.")

  return jax.grad(summary)(x)
