"""Soft, differentiable insertion/deletion: the curves of the ID-ExpO regulariser.

Yoshikawa & Iwata, "Explanation-based training with differentiable insertion/deletion metric-aware
regularizers", AISTATS 2024. The hard curves of `curves.py` are relaxed by replacing the top-`k`
keep-mask with a sigmoid of the attribution around a threshold between the `k`-th and `(k+1)`-th
largest attributions, so the curve is differentiable in the attribution (and the model).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax.core import masking
from idexpo_jax.core.config import Config, config
from idexpo_jax.core.checks import as_operand, check_fraction, check_int, check_positive, poison
from idexpo_jax.core.predictor import as_logits_fn, model_output, promote_input, select_output
from idexpo_jax.metrics.curves import flat_attribution, nan_attribution

Array = jax.Array


def soft_step_counts(n_units: int, n_steps: int, fraction: float) -> tuple[int, int]:
  """`(Δ, M)`: units per soft step and the number of soft steps."""
  n_steps = check_int(n_steps, "n_steps", minimum=1)
  fraction = check_fraction(fraction, "fraction")
  delta = max(n_units // n_steps, 1)
  m = -(-int(np.floor(fraction * n_units)) // delta)
  m = min(m, (n_units - 1) // delta)  # m·Δ < U: thresholds never index past the end
  if m == 0 and n_units >= 2:
    raise ValueError(f"`fraction`={fraction} of U={n_units} units covers no soft step of "
                     f"Δ={delta} units (the penalty would be 0); use fraction >= {1 / n_units:.3g}.")
  return delta, m


def soft_keep_masks(attribution: Array, *, n_steps: int = 64, fraction: float = 0.5,
                    temperature: float = 1.0, log_softmax: bool = True) -> Array:
  """Soft keep-masks `α_m(u) = sigmoid(τ (φ_u − t_m) / s)` for `m = 1..M`, shape `(M, U)`.

  Thresholds `t_m` (midpoints between the `mΔ`-th and `(mΔ+1)`-th largest attributions) and the
  scale `s` (mean strictly positive gap of the sorted attributions, 1 if there is none) are
  computed per example under `stop_gradient`. With `log_softmax=True` the attribution is first
  mapped through `log_softmax`; this shifts every unit by the same amount, so the masks are
  unchanged and only the gradient differs (the reference default).

  `temperature` must be positive: a concrete `τ <= 0` raises ValueError (0 gives constant ½ masks,
  a negative one inverts them); a traced one gives NaN masks.
  """
  temperature_ok = check_positive(temperature, "temperature")
  phi = jnp.asarray(attribution).reshape(-1)
  n_units = phi.shape[0]
  if n_units < 2:
    # One unit: nothing to rank, no soft step fits (m·Δ < U); a single all-or-nothing step.
    return jnp.ones((0, n_units), phi.dtype)
  if log_softmax:
    phi = jax.nn.log_softmax(phi)
  delta, n_soft = soft_step_counts(n_units, n_steps, fraction)
  srt = jnp.sort(jax.lax.stop_gradient(phi))[::-1]
  idx = np.arange(1, n_soft + 1) * delta  # 1-based φ(mΔ) is srt[mΔ−1]
  thresholds = 0.5 * (srt[idx - 1] + srt[idx])
  gaps = srt[:-1] - srt[1:]
  pos = gaps > 0
  n_pos = pos.sum().astype(srt.dtype)
  scale = jnp.where(n_pos > 0, jnp.where(pos, gaps, 0.0).sum() / jnp.maximum(n_pos, 1.0), 1.0)
  scale = jax.lax.stop_gradient(scale)
  tau = as_operand(temperature, phi.dtype)
  return poison(jax.nn.sigmoid(tau * (phi[None, :] - thresholds[:, None]) / scale),
                temperature_ok)


@config
class SoftOptions(Config):
  """The options of the soft curves, stated once (`soft_insertion_deletion` for their meaning).

  Validated when built. `regularisers.IdExpo` extends this class with its explainer and units; the
  internal functions of this module take one such object instead of each keyword.
  """

  _: dataclasses.KW_ONLY
  n_steps: int = 64
  fraction: float = 0.5
  temperature: float = 1.0
  deletion: str = "ratio"
  log_softmax: bool = True
  chunk_size: Optional[int] = None

  def __post_init__(self):
    super().__post_init__()
    if self.deletion not in ("ratio", "direct"):
      raise ValueError(f"`deletion` must be 'ratio' or 'direct'; got {self.deletion!r}.")
    object.__setattr__(self, "n_steps", check_int(self.n_steps, "n_steps", minimum=1))
    object.__setattr__(self, "fraction", check_fraction(self.fraction, "fraction"))
    check_positive(self.temperature, "temperature")
    masking.check_chunk_size(self.chunk_size)


def soft_curves(logits_fn, x: Array, attribution: Array, target, *, baseline,
                segments: Optional[Array] = None, n_steps: int = 64, fraction: float = 0.5,
                temperature: float = 1.0, log_softmax: bool = True,
                chunk_size: Optional[int] = None):
  """Soft insertion and deletion curves in log-probability (needs a model with `K >= 2` logits).

  Args: see `soft_insertion_deletion`.

  Returns:
    `(log_p_ins (M,), log_p_del (M,), log_p_clean ())` for steps `m = 1..M`; NaN for a traced
    target outside `[0, K)` or a traced attribution with a NaN.
  """
  opts = SoftOptions(n_steps=n_steps, fraction=fraction, temperature=temperature,
                     log_softmax=log_softmax, chunk_size=chunk_size)
  return curves_and_clean_logits(logits_fn, x, attribution, target, baseline=baseline,
                                 segments=segments, opts=opts)[:3]


def curves_and_clean_logits(logits_fn, x, attribution, target, *, baseline, segments, opts):
  """`soft_curves` and the clean input's logits `(K,)`, all from one batched model call.

  The clean input is the last row of the batch (the all-ones mask, `log_p_clean` of the deletion
  ratio); its logits are returned as the model gave them (not poisoned by a NaN attribution,
  on which they do not depend), so a loss can take its cross-entropy from them instead of
  evaluating the model on the clean input again. `opts` is a `SoftOptions` (e.g. an `IdExpo`).
  """
  x = promote_input(logits_fn, x)
  logits_fn = as_logits_fn(logits_fn)
  phi, _ = flat_attribution(x, attribution, segments)
  alpha = soft_keep_masks(phi, n_steps=opts.n_steps, fraction=opts.fraction,
                          temperature=opts.temperature, log_softmax=opts.log_softmax)
  n_soft = alpha.shape[0]
  z = jnp.concatenate([alpha, 1.0 - alpha, jnp.ones((1, phi.shape[0]), alpha.dtype)], axis=0)
  # All logits (the clean row's are returned), each call checked as a softmax score (K >= 2).
  checked = lambda xb: model_output(logits_fn, xb, output="log_prob")
  logits = masking.evaluate_masked(checked, x, z.astype(x.dtype), target, baseline=baseline,
                                   segments=segments, chunk_size=opts.chunk_size,
                                   output="logits")
  log_p = select_output(logits, jnp.asarray(target), "log_prob")
  log_p = poison(nan_attribution(phi, log_p), check_positive(opts.temperature, "temperature"))
  return log_p[:n_soft], log_p[n_soft:2 * n_soft], log_p[-1], logits[-1]


def log1m_exp(log_p: Array) -> Array:
  """`log(1 − exp(log_p))` computed stably for `log_p ≤ 0`."""
  clipped = jnp.minimum(log_p, -1e-7)
  out = jnp.where(clipped > -0.6931472, jnp.log(-jnp.expm1(clipped)),
                  jnp.log1p(-jnp.exp(clipped)))
  return jnp.where(jnp.isnan(log_p), log_p, out)  # NaN stays NaN (see `checks.poison`)


def soft_insertion_deletion(logits_fn, x: Array, attribution: Array, target, *, baseline,
                            segments: Optional[Array] = None, n_steps: int = 64,
                            fraction: float = 0.5, temperature: float = 1.0,
                            deletion: str = "ratio", log_softmax: bool = True,
                            chunk_size: Optional[int] = None):
  """Differentiable insertion and deletion losses `(cIns, cDel)` of one example (lower is better).

  Yoshikawa & Iwata, AISTATS 2024: `cIns = −(1/M) Σ_m log p_y(x_ins^m)`. `cDel` is "ratio"
  (default), `(1/M) Σ_m [log p_y(x_del^m) − log p_y(x)]`, or "direct",
  `−(1/M) Σ_m log(1 − p_y(x_del^m))`. Steps: `Δ = U // n_steps` units,
  `M = ceil(floor(fraction·U)/Δ)` soft steps with `MΔ < U`. As `temperature → ∞` the soft curves
  equal the hard curves of `insertion_deletion_curves` at `k = mΔ` (for attributions without ties
  at the thresholds).

  Invalid values known only inside `jit` give NaN losses: a traced `target` outside `[0, K)`, a
  traced attribution with a NaN, a traced `temperature <= 0`. Concrete ones raise ValueError.

  Args:
    logits_fn: `xb -> logits (B, K)` with `K >= 2`, a module or a `Predictor`.
    x: one example (image `(H, W, C)` or tabular `(D,)`), no batch axis; integer `x` is promoted
      to the model's float dtype.
    attribution: one score per unit, differentiable.
    target: the class scored (training: the label), in `[0, K)`.
    baseline: broadcastable to `x`.
    segments: optional `(H, W)` unit ids.
    n_steps: number of steps over all units (reference: 64).
    fraction: largest kept/removed fraction (reference: 0.5).
    temperature: sigmoid temperature `τ > 0` (reference: 1).
    deletion: "ratio" or "direct".
    log_softmax: map the attribution through log-softmax first (reference default).
    chunk_size: optional bound on inputs per model call.

  Returns:
    `(cins, cdel)` scalars. With a single unit there is no soft step and both are 0.

  Example::

    cins, cdel = soft_insertion_deletion(model, x, phi, y, baseline=0.0)
  """
  opts = SoftOptions(n_steps=n_steps, fraction=fraction, temperature=temperature,
                     deletion=deletion, log_softmax=log_softmax, chunk_size=chunk_size)
  return losses_and_clean_logits(logits_fn, x, attribution, target, baseline=baseline,
                                 segments=segments, opts=opts)[:2]


def losses_and_clean_logits(logits_fn, x, attribution, target, *, baseline, segments, opts):
  """`soft_insertion_deletion` and the clean input's logits `(K,)` from the same model call."""
  lp_ins, lp_del, lp_x, logits = curves_and_clean_logits(
      logits_fn, x, attribution, target, baseline=baseline, segments=segments, opts=opts)
  if lp_ins.shape[0] == 0:
    zero = jnp.where(jnp.isnan(lp_x), jnp.nan, 0.0).astype(x.dtype)  # NaN: invalid traced target
    return zero, zero, logits
  cins = -lp_ins.mean()
  if opts.deletion == "ratio":
    cdel = (lp_del - lp_x).mean()
  else:
    cdel = -log1m_exp(lp_del).mean()
  return cins, cdel, logits
