"""Local affine explanations of tabular models in input space (LIME with a Gaussian neighbourhood).

ExpO (Plumb et al., NeurIPS 2020) explains, regularises and scores models through local affine
models `e(x)(x') = coef · x' + intercept`. This module holds what the ExpO regularisers
(`idexpo_jax.regularisers.expo`) and metrics (`idexpo_jax.metrics.fidelity`) share:

* `model_outputs`: the values a local model fits, from a logits function (convention below);
* `gaussian_neighbors`: `x' = x + σ·ε`, `ε ~ N(0, I)`;
* `local_linear`: LIME for continuous tabular features (Ribeiro et al., KDD 2016) as in
  `lime.lime_tabular.LimeTabularExplainer(sample_around_instance=True,
  discretize_continuous=False)` on z-scored features: samples `x + N(0, σ²I)` with the first
  sample `x` itself, weights `π = sqrt(exp(−‖x' − x‖² / w²))` with `w = 0.75·sqrt(D)`, and a
  weighted ridge fit (`ridge = 1`, unpenalised intercept) through the one solver
  `weighted_least_squares`. The samples and weights are data; gradients flow through `f(x')`.

Outputs (`output=`, `target=`) are the library's one vocabulary (`idexpo_jax.core.predictor`):
`"raw"` (the default: ExpO is defined on a regression model's value) fits the model's columns as
they are, a `(B,)` or `(B, 1)` regression value giving `coef (D,)`, `intercept ()`, several
columns `coef (D, K)`, `intercept (K,)`; `"probs"` (`"logits"`) fits every class probability
(logit); `"prob"`, `"log_prob"`, `"logit"` fit the score of one class, `target` when given, else
the class predicted at the explained (or regularised) point `x`; `"raw"` with a `target` fits that
column.

Squared errors are summed over outputs and averaged over samples.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp

from idexpo_jax.core.config import Config, config
from idexpo_jax.core.lstsq import weighted_least_squares
from idexpo_jax.core.checks import (all_ok, as_operand, check_int, check_positive, check_target,
                                    poison)
from idexpo_jax.core.predictor import (OUTPUTS, VECTOR_OUTPUTS, as_logits_fn, check_output,
                                       model_output, select_output)

Array = jax.Array

AFFINE_OUTPUTS = OUTPUTS + VECTOR_OUTPUTS
"""The outputs a local affine model fits: every word of `predictor`'s vocabulary."""

_ONE_CLASS = ("prob", "log_prob", "logit")  # whose default target is the predicted class


def check_affine_output(output: str) -> None:
  """`predictor.check_output` against `AFFINE_OUTPUTS`."""
  check_output(output, AFFINE_OUTPUTS)


def check_tabular(x: Array, name: str, rank: int) -> None:
  """Raises ValueError unless `x` is a floating array of rank 1 (`(D,)`) or 2 (`(B, D)`)."""
  shape = "(D,)" if rank == 1 else "(B, D)"
  if getattr(x, "ndim", None) != rank or x.shape[-1] < 1 or x.shape[0] < 1:
    raise ValueError(f"`{name}` must be a tabular {'example' if rank == 1 else 'batch'} of shape "
                     f"{shape}; got shape {getattr(x, 'shape', None)}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"`{name}` must be floating point; got dtype {x.dtype}.")


def predicted_class(logits_fn, xb: Array, *, output: str = "prob") -> Array:
  """`argmax_k logits_k(x)` per row `(B,)`, under `stop_gradient` (a label, not a value): the
  class of a one-class `output` without a `target`."""
  logits = jax.lax.stop_gradient(as_logits_fn(logits_fn)(xb))
  if logits.ndim != 2 or logits.shape[1] < 2:
    raise ValueError(f"`output={output!r}` without a `target` scores the predicted class, which "
                     f"needs logits of shape (B, K) with K ≥ 2; got {logits.shape} (a regression "
                     f"model: use output='raw').")
  return jnp.argmax(logits, axis=-1)


def model_outputs(logits_fn, xb: Array, *, output: str = "raw",
                  target: Optional[Array] = None) -> Array:
  """The values that a local model fits, for every row of `xb` (module docstring: `output`).

  Args:
    logits_fn: `xb -> (B,)` or `(B, K)` (regression values or logits), or a `Predictor`.
    xb: inputs `(B, D)`.
    output: one of `AFFINE_OUTPUTS` ("raw", "probs", "logits"; "prob", "log_prob", "logit").
    target: int class per row `(B,)` or a scalar, selecting one column; for "prob", "log_prob"
      and "logit" the default is each row's own predicted class, for "raw" every column. A
      concrete target outside `[0, K)` raises ValueError; a traced one (under `jit`/`vmap`)
      outside it gives NaN in the rows it selects.

  Returns:
    `(B,)` for a single value per row (one class, or "raw" with one column), else `(B, K)`.
  """
  check_affine_output(output)
  check_tabular(xb, "xb", 2)
  if output in VECTOR_OUTPUTS and target is not None:
    raise ValueError(f"`target` must be None for `output={output!r}` (every class); got "
                     f"{target!r}.")
  out = model_output(logits_fn, xb, output=output)
  if target is None and output in _ONE_CLASS:
    target = jnp.argmax(jax.lax.stop_gradient(out), axis=-1)
  if target is not None:
    shape = jnp.shape(target)
    if shape not in ((), (xb.shape[0],)):
      raise ValueError(f"`target` must be a scalar or one class index per row, shape "
                       f"({xb.shape[0]},); got shape {shape}.")
    target = check_target(target, out.shape[1], shape=shape)
  values = select_output(out, target, output)
  return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values


def anchor_targets(logits_fn, xb: Array, output: str, target: Optional[Array] = None):
  """For a one-class output without a `target`, the class predicted at each anchor row of
  `xb (B, D)` (`(B,)`); else `target` unchanged."""
  if output in _ONE_CLASS and target is None:
    return predicted_class(logits_fn, xb, output=output)
  return target


def anchor_target(logits_fn, x: Array, output: str, target: Optional[Array]):
  """`anchor_targets` of one anchor point `x (D,)` (a scalar class, or `target` unchanged)."""
  if output in _ONE_CLASS and target is None:
    return predicted_class(logits_fn, x[None], output=output)[0]
  return target


def gaussian_neighbors(x: Array, key: Array, *, n: int, sigma) -> Array:
  """`n` neighbours `x + σ·ε`, `ε ~ N(0, I)`, shape `(n, *x.shape)`, in the dtype of `x`.

  `σ > 0`: a concrete `σ <= 0` raises ValueError, a traced one gives NaN neighbours.
  """
  ok = check_positive(sigma, "sigma")
  n = check_int(n, "n", minimum=1)
  return poison(x + as_operand(sigma, x.dtype) * jax.random.normal(key, (n, *x.shape), x.dtype),
                ok)


def sq_error(values: Array, predictions: Array) -> Array:
  """Squared error summed over outputs: `(N,)` from `(N,)` or `(N, K)` arrays."""
  err = (values - predictions) ** 2
  return err if err.ndim == 1 else err.sum(axis=-1)


def affine_predict(coef: Array, intercept: Array, xb: Array) -> Array:
  """`e(x') = x' · coef + intercept` for rows `xb (N, D)`: `(N,)` or `(N, K)`."""
  return jnp.tensordot(xb, coef, axes=1) + intercept


def local_linear_fit(logits_fn, x: Array, samples: Array, *, kernel_width: Optional[float] = None,
                     ridge: float = 1.0, output: str = "raw", target: Optional[Array] = None,
                     values: Optional[Array] = None):
  """LIME's weighted ridge fit of `f` on given samples around one example `x` (input space).

  Weights `π_i = sqrt(exp(−‖x_i − x‖² / w²))`; solves `min Σ π_i (f(x_i) − c − coef·x_i)² +
  ridge·‖coef‖²` with `weighted_least_squares`. `local_linear` draws the samples; this function
  takes any (e.g. the `lime` package's own, to compare with it).

  Args:
    logits_fn, x, kernel_width, ridge, output, target: as in `local_linear`.
    samples: `(N, D)` points at which `f` is fitted (LIME puts `x` itself first).
    values: the model outputs at `samples` when already computed (e.g. samples shared between
      several explained points); `logits_fn` is then not called.

  Returns:
    `(coef, intercept)` with `e(x') = x'·coef + intercept`.
  """
  check_tabular(x, "x", 1)
  check_tabular(samples, "samples", 2)
  check_affine_output(output)
  if samples.shape[1] != x.shape[0]:
    raise ValueError(f"`samples` must be (N, D) with D = {x.shape[0]}; got {samples.shape}.")
  width = 0.75 * x.shape[0] ** 0.5 if kernel_width is None else kernel_width
  ok = all_ok(check_positive(width, "kernel_width"),
              check_positive(ridge, "ridge", allow_zero=True))
  offsets = samples - x
  if values is None:
    target = anchor_target(logits_fn, x, output, target)
    values = model_outputs(logits_fn, samples, output=output, target=target)
  weights = jnp.sqrt(jnp.exp(-jnp.sum(offsets ** 2, axis=-1) / width ** 2))
  coef, c = weighted_least_squares(offsets, values, weights, ridge=ridge)
  return poison(coef, ok), poison(c - jnp.tensordot(x.astype(coef.dtype), coef, axes=1), ok)


def local_linear(logits_fn, x: Array, key: Array, *, n_samples: int = 1000, sigma=1.0,
                 kernel_width: Optional[float] = None, ridge: float = 1.0,
                 output: str = "raw", target: Optional[Array] = None,
                 center: Optional[Array] = None):
  """LIME's local affine model of `f` around one tabular example, in input space.

  Samples `x_0 = x`, `x_i = x + σ·ε_i` (i ≥ 1), weights `π_i = sqrt(exp(−‖x_i − x‖² / w²))` and
  solves `min Σ π_i (f(x_i) − c − coef·x_i)² + ridge·‖coef‖²` with `weighted_least_squares`
  (Ribeiro et al., KDD 2016; the ExpO paper's explainer). With z-scored features and the defaults
  this is `lime_tabular` with `sample_around_instance=True, discretize_continuous=False`
  (which samples at the training standard deviation, 1 after z-scoring).

  With `center` given the samples are `x_i = center + σ·ε_i` instead (`x_0 = x` still, and the
  kernel still measures the distance to `x`): with `center` the training mean (0 after z-scoring)
  and `σ = 1` this is `lime_tabular`'s default `sample_around_instance=False` (with
  `discretize_continuous=False`), the convention of ExpO's published numbers. The fit then uses
  points spread over the whole data distribution, weighted towards `x`.

  Args:
    logits_fn: `xb -> (B,)` or `(B, K)`, or a `Predictor`.
    x: one example `(D,)`.
    key: PRNG key for the samples.
    n_samples: number of samples including `x` itself (≥ 2).
    sigma: standard deviation of the Gaussian samples (a scalar or per feature `(D,)`), `> 0`.
    kernel_width: `w > 0` of the exponential kernel (default `0.75·sqrt(D)`, LIME's).
    ridge: L2 penalty `>= 0` on `coef` (LIME's default 1; 0 gives weighted least squares).
      Traced invalid `sigma`, `kernel_width` or `ridge` give NaN.
    output: one of `AFFINE_OUTPUTS` (module docstring; default "raw", the regression value).
    target: the class of a one-class output (default: the class predicted at `x`; for "raw",
      every column).
    center: `(D,)` centre of the samples (default: `x`, LIME's `sample_around_instance=True`).

  Returns:
    `(coef, intercept)` with `e(x') = x'·coef + intercept`: `(D,)` and `()` for one output,
    `(D, K)` and `(K,)` for several.
  """
  check_tabular(x, "x", 1)
  n_samples = check_int(n_samples, "n_samples", minimum=2)
  sigma_ok = check_positive(sigma, "sigma")
  sigma = as_operand(sigma, x.dtype)
  dim = x.shape[0]
  base = x if center is None else jnp.broadcast_to(jnp.asarray(center, x.dtype), x.shape)
  samples = base + sigma * jax.random.normal(key, (n_samples, dim), x.dtype)
  samples = samples.at[0].set(x)
  coef, intercept = local_linear_fit(logits_fn, x, samples, kernel_width=kernel_width,
                                     ridge=ridge, output=output, target=target)
  return poison(coef, sigma_ok), poison(intercept, sigma_ok)


@config(kw_only=True)
class LocalLinear(Config):
  """ExpO's local affine explainer (`local_linear`), configured once.

  A local-affine explainer has its own contract, `explainer(model, x, key) -> (coef, intercept)`
  with `e(x') = x'·coef + intercept` in input space (Plumb et al., NeurIPS 2020), unlike the unit
  attributions `φ (d,)` of `Explainer`s. Its fields are the options of `local_linear`.

  Example::

    lime = ij.LocalLinear(n_samples=1000, sigma=1.0)
    coef, intercept = lime(model, x, key)

  Attributes:
    n_samples: samples including `x` itself (≥ 2).
    sigma: standard deviation `σ > 0` of the Gaussian samples, a scalar or per feature `(D,)`
      (1: `lime_tabular`'s training standard deviation after z-scoring).
    kernel_width: `w > 0` of the kernel `sqrt(exp(−‖x_i − x‖²/w²))`; `None`: LIME's
      `0.75·sqrt(D)`.
    ridge: L2 penalty `>= 0` on `coef` (LIME's `Ridge(alpha=1)`; 0: weighted least squares).
    output: "raw" (the model's outputs, e.g. a regression), "prob" or "predicted_prob".
    target: the class for "predicted_prob" (`None`: the class predicted at `x`).
    center: `(D,)` centre of the samples (`None`: `x`, `lime_tabular`'s
      `sample_around_instance=True`; the training mean gives its default).
  """

  n_samples: int = 1000
  sigma: Any = 1.0
  kernel_width: Optional[float] = None
  ridge: float = 1.0
  output: str = "raw"
  target: Optional[Array] = None
  center: Optional[Array] = None

  def __call__(self, model, x: Array, key: Array):
    return local_linear(model, x, key, **{f.name: getattr(self, f.name)
                                          for f in dataclasses.fields(self)})
