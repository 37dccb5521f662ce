"""The ID-ExpO regulariser on a batch, for any explainer (SPEC §2.7, §5).

Yoshikawa & Iwata, AISTATS 2024. The loss of a batch is
`CE + λ · mean_n(cIns_n + cDel_n) + λ₂ · mean(φ²)`; `idexpo_penalty` returns the middle term's
`mean(cIns + cDel)` and reports `mean(φ²)` in its aux dict, so the caller composes the weights.

The soft curves evaluate each example's clean input too (the all-ones mask, for the deletion
ratio) in the same batched model call as its soft insertions and deletions, and the penalty reports
the cross-entropy and accuracy of those clean logits (`clean_ce`, `clean_acc`). With `yb` the
labels, `clean_ce` is the batch's `CE`: a loss written `aux["clean_ce"] + λ·penalty + λ₂·mean(φ²)`
calls the model on the clean batch no second time, so its step holds one forward and backward pass
of the model fewer (about a quarter less to compile for a ResNet-18, docs/benchmarks.md "Compile
time") and evaluates `B` images fewer.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from idexpo_jax.explainers.base import resolve_units
from idexpo_jax.core.predictor import (as_predictor, check_batch_targets, promote_input,
                                  select_output)
from idexpo_jax.metrics.soft_curves import _soft_losses_and_clean_logits

Array = jax.Array


def idexpo_penalty(predictor, xb: Array, yb: Array, key: Array, *, explainer: Callable,
                   baseline=None, segments: Optional[Array] = None, n_steps: int = 64,
                   fraction: float = 0.5, temperature: float = 1.0, deletion: str = "ratio",
                   log_softmax: bool = True, chunk_size: Optional[int] = None):
  """Soft insertion/deletion penalty of the explanations of a batch.

  Args:
    predictor: a `Predictor` (or a logits function for explainers that need only logits).
    xb: non-empty batch of inputs `(B, ...)` (integer `xb` is promoted to the model's float
      dtype).
    yb: int targets `(B,)` in `[0, K)` (training: the labels). Concrete ones outside raise
      ValueError; traced ones outside (the usual case inside a jitted train step) give a NaN
      penalty.
    key: PRNG key, split into one key per example for the explainer.
    explainer: `explainer(predictor, x, target, key) -> φ` with one score per unit, e.g.
      `ij.Lime(segments=..., baseline=...)`, `ij.GradCam(baseline=...)`, `grad_cam`, or
      `functools.partial(lime, segments=..., baseline=...)`. It stays in the graph, so the
      gradient of the penalty flows through the explanation into the model.
    baseline: broadcastable to an example; `None` takes the explainer's (`explainers.units_of`:
      an `Explainer`'s field or a `partial`'s keyword); one of them must give it.
    segments: `None` takes the explainer's units (pixels/features if it has none); segments
      given here must equal the explainer's.
    n_steps, fraction, temperature, deletion, log_softmax, chunk_size: see
      `soft_insertion_deletion`.

  Returns:
    `(penalty, aux)`: `penalty = mean(cIns + cDel)`; aux has `cins`, `cdel` (batch means),
    `attribution_sq` (`mean(φ²)`, the λ₂ term), `clean_ce` (`−mean_n log p_{y_n}(x_n)`, the
    cross-entropy of `yb` on the clean inputs; equal to
    `optax.softmax_cross_entropy_with_integer_labels(predictor(xb), yb).mean()` up to float32
    rounding) and `clean_acc` (the fraction of examples whose clean logits rank `y_n` first).
    All scalars; a traced `yb` outside `[0, K)` makes every one of them NaN.
  """
  predictor = as_predictor(predictor)
  segments, baseline = resolve_units(explainer, segments, baseline, where="idexpo_penalty")
  xb, yb = jnp.asarray(xb), jnp.asarray(yb)
  if yb.ndim != 1 or xb.ndim < 2 or yb.shape[0] != xb.shape[0] or xb.shape[0] == 0:
    raise ValueError(f"`yb` must hold one target per example of a non-empty batch `xb`, shape "
                     f"(B,) with B >= 1; got xb {tuple(xb.shape)} and yb {tuple(yb.shape)}.")
  xb = promote_input(predictor, xb, batched=True)
  yb = check_batch_targets(predictor, xb, yb, name="yb")
  keys = jax.random.split(key, xb.shape[0])

  def one(x, y, k):
    phi = explainer(predictor, x, y, k)
    cins, cdel, logits = _soft_losses_and_clean_logits(
        predictor, x, phi, y, baseline=baseline, segments=segments, n_steps=n_steps,
        fraction=fraction, temperature=temperature, deletion=deletion, log_softmax=log_softmax,
        chunk_size=chunk_size, explainer=None)
    return cins, cdel, jnp.mean(phi ** 2), logits

  cins, cdel, sq, logits = jax.vmap(one)(xb, yb, keys)
  penalty = jnp.mean(cins + cdel)
  log_p = select_output(logits, yb, "log_prob")  # NaN rows: a traced `yb` outside [0, K)
  hit = (jnp.argmax(logits, axis=-1) == yb).astype(log_p.dtype)
  return penalty, {"cins": cins.mean(), "cdel": cdel.mean(), "attribution_sq": sq.mean(),
                   "clean_ce": -log_p.mean(),
                   "clean_acc": jnp.where(jnp.isnan(log_p), jnp.nan, hit).mean()}
