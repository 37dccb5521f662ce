"""The ID-ExpO regulariser on a batch, for any explainer (SPEC §2.7, §5).

Yoshikawa & Iwata, AISTATS 2024. The loss of a batch is
`CE + λ · mean_n(cIns_n + cDel_n) + λ₂ · mean(φ²)`; `idexpo_penalty` returns the middle term's
`mean(cIns + cDel)` and reports `mean(φ²)` in its aux dict, so the caller composes the weights.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from idexpo_jax.explainers import resolve_units
from idexpo_jax.predictor import as_predictor, check_batch_targets, promote_input
from idexpo_jax.soft_curves import soft_insertion_deletion

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
    `(penalty, aux)`: `penalty = mean(cIns + cDel)`; aux has `cins`, `cdel` (batch means) and
    `attribution_sq` (`mean(φ²)`, the λ₂ term).
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
    cins, cdel = soft_insertion_deletion(
        predictor, x, phi, y, baseline=baseline, segments=segments, n_steps=n_steps,
        fraction=fraction, temperature=temperature, deletion=deletion, log_softmax=log_softmax,
        chunk_size=chunk_size)
    return cins, cdel, jnp.mean(phi ** 2)

  cins, cdel, sq = jax.vmap(one)(xb, yb, keys)
  penalty = jnp.mean(cins + cdel)
  return penalty, {"cins": cins.mean(), "cdel": cdel.mean(), "attribution_sq": sq.mean()}
