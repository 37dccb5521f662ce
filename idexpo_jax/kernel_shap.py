"""KernelSHAP with the efficiency constraint solved exactly, differentiable in the model (SPEC §4).

Lundberg & Lee, "A unified approach to interpreting model predictions", NeurIPS 2017. With the
value function `v(z) = g(apply_unit_mask(x, z, baseline))` of a binary coalition `z ∈ {0,1}^d`
(a single background row `b`, as `shap.KernelExplainer` with one background sample), the Shapley
values are the solution of the weighted least-squares problem

  `min_φ Σ_z π(z) (v(z) − v(0) − z·φ)²`  s.t.  `Σ_j φ_j = v(1) − v(0)`,

with the Shapley kernel `π(z) = (d − 1) / (C(d, |z|) |z| (d − |z|))` over `0 < |z| < d`.

* Exact regime (`2^d − 2 ≤ n_samples`): all `2^d − 2` coalitions with their exact kernel weights;
  the solution equals the Shapley values exactly (up to floating point).
* Sampling regime: coalition sizes `k ∈ 1..d−1` drawn with probability `∝ (d − 1)/(k (d − k))`
  (the kernel mass of all coalitions of size `k`), then a uniform subset of that size; with
  `paired=True` every drawn coalition is followed by its complement (Covert & Lee, AISTATS 2021).
  The samples then carry equal weights, since they are drawn from the kernel itself.

The constraint is eliminated exactly by `lstsq.constrained_least_squares` (no huge weights).
`output="prob"` explains the softmax probability of the target (`g = p_target`);
`output="logit"` explains the target's logit (the pre-softmax score `l_target`), for which a linear
model `l = Wx + c` gives `φ_i = W_{target,i} (x_i − b_i)`. (`shap`'s `link="logit"` is the
log-odds `log(p/(1 − p))`, which equals this only for two-class logits `(0, s)`.)
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax import masking
from idexpo_jax.lime import check_explainer_args
from idexpo_jax.lstsq import constrained_least_squares
from idexpo_jax.predictor import as_logits_fn

Array = jax.Array

_OUTPUTS = ("prob", "logit")


def shapley_kernel_weight(n_units: int, size) -> np.ndarray:
  """Shapley kernel `π = (d − 1) / (C(d, k) k (d − k))` for sizes `0 < k < d` (float64)."""
  size = np.asarray(size, np.int64)
  binom = np.array([math.comb(n_units, int(k)) for k in size.ravel()], np.float64)
  return (n_units - 1) / (binom.reshape(size.shape) * size * (n_units - size))


@functools.lru_cache(maxsize=32)
def exact_coalitions(n_units: int) -> tuple[np.ndarray, np.ndarray]:
  """All `2^d − 2` proper, non-empty coalitions `(M, d)` (float32) and their Shapley kernel weights.

  The weights are normalised to sum to 1 (the solution does not depend on their scale).
  """
  if not 2 <= n_units <= 20:
    raise ValueError(f"Exact enumeration needs 2 <= d <= 20 units; got d={n_units}.")
  codes = np.arange(1, 2 ** n_units - 1, dtype=np.int64)
  z = ((codes[:, None] >> np.arange(n_units)) & 1).astype(np.float32)
  w = shapley_kernel_weight(n_units, z.sum(1).astype(np.int64))
  return z, (w / w.sum()).astype(np.float32)


def sample_coalitions(key: Array, n_units: int, n_samples: int, *, paired: bool = True,
                      dtype=jnp.float32) -> Array:
  """Coalitions `(N, d)` drawn from the Shapley kernel (module docstring; equal weights).

  Args:
    key: PRNG key.
    n_units: `d >= 2`.
    n_samples: number of coalitions; with `paired=True`, `n_samples // 2` coalitions are drawn
      and each is followed by its complement (so `N = 2·(n_samples // 2)`).
    paired: add complements.
    dtype: dtype of the returned 0/1 matrix.

  Returns:
    Binary coalitions with `0 < |z| < d`.
  """
  if n_units < 2:
    raise ValueError(f"Sampling coalitions needs d >= 2 units; got d={n_units}.")
  n_draw = n_samples // 2 if paired else n_samples
  sizes = np.arange(1, n_units)
  log_p = jnp.asarray(np.log((n_units - 1) / (sizes * (n_units - sizes))), jnp.float32)
  k_size, k_perm = jax.random.split(key)
  k = 1 + jax.random.categorical(k_size, log_p, shape=(n_draw,))
  # A uniform subset of size k: the k units with the smallest i.i.d. uniform scores.
  scores = jax.random.uniform(k_perm, (n_draw, n_units))
  rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
  z = (rank < k[:, None]).astype(dtype)
  if paired:
    z = jnp.stack([z, 1 - z], axis=1).reshape(2 * n_draw, n_units)
  return z


def kernel_shap(logits_fn, x: Array, target, key: Array, *, segments: Optional[Array] = None,
                baseline, n_samples: int = 512, paired: bool = True, output: str = "prob",
                chunk_size: Optional[int] = None) -> Array:
  """KernelSHAP attribution of one example with a single background row (module docstring).

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor`.
    x: one example without batch axis: tabular `(D,)` or an image `(H, W, C)`.
    target: scalar class index.
    key: PRNG key for the coalitions (unused in the exact regime).
    segments: optional `(H, W)` int map of unit ids; pixels otherwise.
    baseline: the background row, broadcastable to `x`.
    n_samples: coalition budget; all `2^d − 2` coalitions are enumerated when they fit. Sampling
      needs at least `2(d − 1)` (`paired`) or `d − 1` coalitions for the `d − 1` unknowns left
      after the constraint (a complement repeats its coalition's equation up to sign); fewer
      raise. Near that minimum repeated coalitions can still make the system singular (NaN):
      on d = 13, 84 % of keys at 24, 16 % at 32, 0.5 % at 48, none of 200 at 64.
    paired: add the complement of every sampled coalition.
    output: "prob" (softmax probability of `target`) or "logit" (its logit).
    chunk_size: optional number of masked inputs per model call (`jax.lax.map` over chunks).

  Returns:
    `φ` of shape `(d,)` with `Σφ = v(1) − v(0)` exactly (up to rounding).
  """
  if output not in _OUTPUTS:
    raise ValueError(f"`output` must be one of {_OUTPUTS}; got {output!r}.")
  x = jnp.asarray(x)
  d = check_explainer_args(x, target, segments, n_samples, minimum=2)
  masking.check_baseline(x, baseline)
  needed = 2 * (d - 1) if paired else d - 1
  if n_samples < min(needed, 2 ** d - 2):
    raise ValueError(
        f"`n_samples` must be >= {needed} for d={d} units with paired={paired}: the sampled "
        f"regression has d − 1 = {d - 1} unknowns"
        f"{' and a coalition and its complement give one equation (up to sign)' if paired else ''}"
        f" (or >= 2^d − 2 = {2 ** d - 2} for exact enumeration); got {n_samples}. Fewer give an "
        f"under-determined (singular) system; prefer several times the minimum, since repeated "
        f"coalitions can leave it singular near the minimum.")
  if 2 ** d - 2 <= n_samples:
    z_np, w_np = exact_coalitions(d) if d >= 2 else (np.ones((0, 1), np.float32),
                                                     np.ones((0,), np.float32))
    z, w = jnp.asarray(z_np, x.dtype), jnp.asarray(w_np, x.dtype)
  else:
    z = sample_coalitions(key, d, n_samples, paired=paired, dtype=x.dtype)
    w = jnp.ones((z.shape[0],), x.dtype)
  z_all = jnp.concatenate([z, jnp.ones((1, d), x.dtype), jnp.zeros((1, d), x.dtype)])
  fn = as_logits_fn(logits_fn)
  values = masking.evaluate_masked(fn, x, z_all, target, baseline=baseline, segments=segments,
                                   chunk_size=chunk_size,
                                   output="log_prob" if output == "prob" else "logit")
  if output == "prob":
    values = jnp.exp(values)
  v_full, v_empty = values[-2], values[-1]
  return constrained_least_squares(z, values[:-2], w, total=v_full - v_empty, offset=v_empty)
