"""LIME as a closed-form weighted ridge regression, differentiable in the model.

Ribeiro, Singh & Guestrin, "Why should I trust you?", KDD 2016. The interpretable representation is
a binary unit mask `z ∈ {0,1}^d` (a unit is kept, or replaced by the baseline; units are image
segments, pixels, or tabular features, see `masking`). For one example:

1. Samples `Z (N, d)`: row 0 all ones (the example itself), the other rows i.i.d. Bernoulli(½)
   (the `lime` package's image explainer draws `randint(0, 2)` and sets row 0 to ones), drawn as
   random bits (`random_binary_masks`: one 32-bit word gives 32 mask entries); with `paired=True`
   the rows after row 0 come in antithetic pairs `(z, 1 − z)` (each row still Bernoulli(½)).
2. Values `f_i = g(apply_unit_mask(x, z_i, baseline))`: by default the softmax probability
   `p_target` (`output="prob"`, `lime`'s classifier_fn); `"log_prob"`, `"logit"` or `"raw"` (the
   model's own output, for regression or a model that returns probabilities) otherwise.
3. Distances `D_i = D(z_i, 1)` to the all-ones row and weights `π_i = sqrt(exp(−D_i² / w²))`
   (the `lime` package's kernel). Distance conventions of this module:

   * `"cosine"`: the cosine distance of binary vectors, `D = 1 − z·1 / (‖z‖ ‖1‖) = 1 − sqrt(|z|/d)`
     (`D = 1` for `z = 0`, as `sklearn.metrics.pairwise_distances(metric="cosine")`). This is
     `lime.lime_image`'s convention with its default width `w = 0.25`. (`lime.lime_text` multiplies
     the cosine distance by 100 and uses `w = 25`, the same weights.)
   * `"euclidean"`: `D = ‖z − 1‖₂ = sqrt(d − |z|)` in the binary space, with default width
     `w = 0.75·sqrt(d)`, the width of `lime.lime_tabular`. (`lime_tabular` measures distances
     between Gaussian samples in standardised feature space; here tabular features are switched
     between `x` and the baseline like segments, so the distance lives in the binary space.)

4. Weighted ridge with an unpenalised intercept, solved in closed form after weighted centring
   (`lstsq.weighted_least_squares`); this equals `sklearn.linear_model.Ridge(alpha=ridge)
   .fit(Z, f, sample_weight=π)` and `lime.lime_base.LimeBase.explain_instance_with_data` with
   `feature_selection="none"`. `φ` is the coefficient vector.

`Z` and `π` are data (they do not depend on the model); gradients flow through `f`.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax.core import masking
from idexpo_jax.core.sampling import random_binary_masks
from idexpo_jax.core.lstsq import weighted_least_squares
from idexpo_jax.core.checks import as_operand, check_int, check_positive, is_traced, poison
from idexpo_jax.core.predictor import as_logits_fn, check_output, promote_input

Array = jax.Array

_DISTANCES = ("cosine", "euclidean")


class LimeSamples(NamedTuple):
  """The regression problem LIME solves for one example.

  Attributes:
    z: binary samples `(N, d)` (row 0 all ones).
    f: the scores (`output`, default the target probability) of the masked inputs `(N,)`.
    distances: `D(z_i, 1)`, `(N,)`.
    weights: kernel weights `π_i`, `(N,)`.
  """

  z: Array
  f: Array
  distances: Array
  weights: Array


def check_explainer_args(x: Array, target, segments, n_samples: int, minimum: int
                         ) -> tuple[int, int]:
  """Validates the arguments shared by `lime` and `kernel_shap`; returns `(d, n_samples)`."""
  x = jnp.asarray(x)
  if x.ndim == 0:
    raise ValueError("`x` must be one example without batch axis, e.g. tabular (D,) or an image "
                     "(H, W, C); got a scalar.")
  masking.check_units(x, segments)
  if jnp.ndim(target) != 0:
    raise ValueError(f"`target` must be a scalar class index; got shape {jnp.shape(target)}.")
  if not jnp.issubdtype(jnp.result_type(target), jnp.integer):
    raise TypeError(f"`target` must be an integer class index; got dtype "
                    f"{jnp.result_type(target)}.")
  n_samples = check_int(n_samples, "n_samples", minimum=minimum)
  return masking.num_units(x.shape, segments), n_samples


def lime_distances(z: Array, *, distance: str = "cosine") -> Array:
  """Distances `D(z_i, 1)` of binary samples `z (N, d)` to the all-ones vector (see the module)."""
  n_kept = z.sum(-1)
  d = z.shape[-1]
  if distance == "cosine":
    return jnp.where(n_kept > 0, 1.0 - jnp.sqrt(n_kept / d), 1.0)
  if distance == "euclidean":
    return jnp.sqrt(d - n_kept)
  raise ValueError(f"`distance` must be one of {_DISTANCES}; got {distance!r}.")


def default_kernel_width(n_units: int, distance: str) -> float:
  """`lime`'s widths: 0.25 for "cosine" (image), `0.75·sqrt(d)` for "euclidean" (tabular)."""
  if distance == "cosine":
    return 0.25
  if distance == "euclidean":
    return 0.75 * float(n_units) ** 0.5
  raise ValueError(f"`distance` must be one of {_DISTANCES}; got {distance!r}.")


def lime_samples(logits_fn, x: Array, target, key: Array, *, segments: Optional[Array] = None,
                 baseline, n_samples: int = 1000, kernel_width: Optional[float] = None,
                 distance: str = "cosine", chunk_size: Optional[int] = None,
                 output: str = "prob", paired: bool = False) -> LimeSamples:
  """Draws LIME's samples for one example and evaluates the model on them (steps 1–3).

  Args: see `lime`.

  Returns:
    A `LimeSamples` with `z`, `f`, `distances` and `weights`.
  """
  if distance not in _DISTANCES:
    raise ValueError(f"`distance` must be one of {_DISTANCES}; got {distance!r}.")
  check_output(output)
  x = promote_input(logits_fn, x)
  d, n_samples = check_explainer_args(x, target, segments, n_samples, minimum=2)
  masking.check_baseline(x, baseline)
  width = default_kernel_width(d, distance) if kernel_width is None else kernel_width
  width_ok = check_positive(width, "kernel_width")
  rest = random_binary_masks(key, n_samples - 1, d, paired=paired, dtype=x.dtype)
  z = jnp.concatenate([jnp.ones((1, d), x.dtype), rest])
  f = masking.evaluate_masked(as_logits_fn(logits_fn), x, z, target, baseline=baseline,
                              segments=segments, chunk_size=chunk_size, output=output)
  dist = lime_distances(z, distance=distance)
  width = as_operand(width, dist.dtype)
  weights = poison(jnp.sqrt(jnp.exp(-(dist ** 2) / width ** 2)), width_ok)
  return LimeSamples(z=z, f=f, distances=dist, weights=weights)


def lime(logits_fn, x: Array, target, key: Array, *, segments: Optional[Array] = None, baseline,
         n_samples: int = 1000, kernel_width: Optional[float] = None, distance: str = "cosine",
         ridge: float = 1.0, chunk_size: Optional[int] = None, output: str = "prob",
         paired: bool = False) -> Array:
  """LIME attribution of one example: the coefficients of a weighted ridge fit (module docstring).

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor` (`(B,)` or `(B, 1)` with `output="raw"`).
    x: one example without batch axis: tabular `(D,)` or an image `(H, W, C)`. Integer `x` is
      promoted to the float dtype of the model's output.
    target: scalar class index whose score is explained, in `[0, K)`: a concrete one outside
      raises ValueError, a traced one outside (under `jit`/`vmap`) gives NaN.
    key: PRNG key for the samples (same key, same samples).
    segments: optional `(H, W)` int map of unit ids `0..d-1` (e.g. `grid_segments`); pixels
      otherwise.
    baseline: value of removed units, broadcastable to `x`.
    n_samples: number of samples `N` (row 0 is the example itself), at least 2.
    kernel_width: `w > 0` of the kernel; `None` picks `lime`'s default for `distance` (0.25 for
      "cosine", `0.75·sqrt(d)` for "euclidean"). A traced `w <= 0` gives NaN.
    distance: "cosine" (images, `lime_image`) or "euclidean" (tabular, `lime_tabular`'s width).
    ridge: L2 penalty `λ >= 0` (`lime`'s default `Ridge(alpha=1)`); a traced negative one gives
      NaN.
    chunk_size: optional number of masked inputs per model call (`jax.lax.map` over chunks).
    output: the explained score, one of `predictor.OUTPUTS`: "prob" (default; softmax probability
      of `target`), "log_prob", "logit", or "raw" (the model's output column `target` as it is:
      regression, or a model that already returns probabilities). "prob"/"log_prob" on a model
      with one output raise ValueError.
    paired: draw the samples after row 0 as antithetic pairs `(z, 1 − z)` (module docstring).

  Returns:
    `φ` of shape `(d,)`, one coefficient per unit.

  A concrete `ridge > 0` makes the normal matrix positive definite, so it is solved by one
  Cholesky factorisation (`lstsq`, `method="cholesky"`); `ridge = 0` or a traced ridge uses the
  rank-revealing eigendecomposition (minimum-norm when singular).
  """
  samples = lime_samples(logits_fn, x, target, key, segments=segments, baseline=baseline,
                         n_samples=n_samples, kernel_width=kernel_width, distance=distance,
                         chunk_size=chunk_size, output=output, paired=paired)
  check_positive(ridge, "ridge", allow_zero=True)  # a named error before `float(ridge)`
  positive = not is_traced(ridge) and np.ndim(ridge) == 0 and float(ridge) > 0
  coef, _ = weighted_least_squares(samples.z, samples.f, samples.weights, ridge=ridge,
                                   method="cholesky" if positive else "eigh")
  if kernel_width is not None:  # a traced invalid width: NaN weights, poison the result too
    coef = poison(coef, check_positive(kernel_width, "kernel_width"))
  return coef
