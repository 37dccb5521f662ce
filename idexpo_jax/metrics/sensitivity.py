"""Sensitivity-n: do attributions add up to the output change when units are removed?

Ancona, Ceolini, Öztireli & Gross, "Towards better understanding of gradient-based attribution
methods for deep neural networks", ICLR 2018. For random subsets `S` of exactly `n` units,
sensitivity-n is the Pearson correlation, over the subsets, between

* the attribution mass `Σ_{u∈S} φ_u`, and
* the output change `p_target(x) − p_target(x with the units of S set to the baseline)`,

where `p_target` is the softmax probability of `target` (the score of the ID-ExpO paper's Figure 3,
Yoshikawa & Iwata, AISTATS 2024, with `n = 0.3·U`). A value of 1 means the attribution of any
`n`-subset predicts the effect of removing it exactly (e.g. `φ = w ⊙ (x − b)` for a model whose
probability is linear in `x`).

Convention: when either side has zero variance over the drawn subsets (e.g. a constant
attribution with `n` fixed, or a model whose output does not move), the correlation is undefined
and this module returns 0 rather than NaN. A NaN on either side (a traced target outside
`[0, K)`, a traced attribution with a NaN, a model returning NaN) gives NaN, not 0.
"""

from __future__ import annotations

from typing import Optional

import chex
import jax
import jax.numpy as jnp

from idexpo_jax.core import masking
from idexpo_jax.core.checks import check_int
from idexpo_jax.core.sampling import uniform_subsets
from idexpo_jax.metrics.curves import flat_attribution
from idexpo_jax.core.predictor import as_logits_fn, check_batch_targets, promote_input

Array = jax.Array


def random_subsets(key: Array, n_units: int, n: int, n_subsets: int) -> Array:
  """Indicator rows of `n_subsets` uniformly random subsets of exactly `n` of `n_units` units.

  Subsets are drawn independently (`sampling.uniform_subsets`), so two rows may coincide.

  Returns:
    float32 array `(n_subsets, n_units)` with exactly `n` ones per row.
  """
  n, n_subsets = check_int(n, "n"), check_int(n_subsets, "n_subsets")
  if not 1 <= n < n_units:
    raise ValueError(f"`n` must satisfy 1 <= n < U={n_units} (n = U removes every unit in every "
                     f"subset, so the correlation is undefined); got n={n}.")
  if n_subsets < 2:
    raise ValueError(f"`n_subsets` must be >= 2 to correlate; got {n_subsets}.")
  return uniform_subsets(key, n_units, jnp.full((int(n_subsets),), int(n), jnp.int32))


def pearson(a: Array, b: Array) -> Array:
  """Pearson correlation of two vectors; 0 when either has zero variance (see module docs)."""
  a = a - a.mean()
  b = b - b.mean()
  den = jnp.sqrt((a * a).sum() * (b * b).sum())
  ok = den > 0
  r = jnp.where(ok, (a * b).sum() / jnp.where(ok, den, 1.0), 0.0)
  return jnp.where(jnp.isnan(den), jnp.nan, r)


def sensitivity_n(logits_fn, x: Array, attribution: Array, target, key: Array, *, n: int,
                  n_subsets: int = 100, baseline, segments: Optional[Array] = None,
                  chunk_size: Optional[int] = None, output: str = "prob") -> Array:
  """Sensitivity-n of one explanation (Ancona et al., ICLR 2018).

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor`.
    x: one example, no batch axis (integer `x` is promoted to the model's float dtype).
    attribution: one score per unit (`(U,)`, or `(H, W)` for pixel units), without NaN.
    target: the class whose score is taken, in `[0, K)` (a traced one outside gives NaN).
    key: PRNG key for the subsets (same key, same subsets, same value).
    n: the number of units removed per subset, `1 <= n < U` (static).
    n_subsets: number of random subsets (static, >= 2).
    baseline: broadcastable to `x`; the value of removed units.
    segments: optional `(H, W)` int map of unit ids.
    chunk_size: optional bound on the number of inputs per model call.
    output: the score, one of `predictor.OUTPUTS` (default "prob", the softmax probability).

  Returns:
    The correlation, a scalar in [-1, 1] (NaN, see the module docstring).
  """
  x = promote_input(logits_fn, x)
  phi, n_units = flat_attribution(x, attribution, segments)
  removed = random_subsets(key, n_units, n, n_subsets).astype(x.dtype)  # (S, U)
  z = jnp.concatenate([jnp.ones((1, n_units), x.dtype), 1.0 - removed], axis=0)
  probs = masking.evaluate_masked(as_logits_fn(logits_fn), x, z, target, baseline=baseline,
                                  segments=segments, chunk_size=chunk_size, output=output)
  drop = probs[0] - probs[1:]
  mass = removed @ phi.astype(x.dtype)
  return pearson(mass, drop)


def batch_sensitivity_n(logits_fn, xb: Array, attributions: Array, targets: Array, key: Array, *,
                        n: int, n_subsets: int = 100, baseline,
                        segments: Optional[Array] = None,
                        chunk_size: Optional[int] = None, output: str = "prob") -> Array:
  """Vmapped `sensitivity_n` with one key per example (`jax.random.split(key, B)`): `(B,)`.

  Concrete `targets` outside `[0, K)` raise ValueError; traced ones give NaN entries.
  """
  xb = promote_input(logits_fn, xb, batched=True)
  chex.assert_equal_shape_prefix([xb, attributions, targets], 1)
  targets = check_batch_targets(logits_fn, xb, targets)
  keys = jax.random.split(key, xb.shape[0])
  fn = lambda x, a, t, k: sensitivity_n(
      logits_fn, x, a, t, k, n=n, n_subsets=n_subsets, baseline=baseline, segments=segments,
      chunk_size=chunk_size, output=output)
  return jax.vmap(fn)(xb, attributions, targets, keys)
