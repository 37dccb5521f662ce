"""The ID-ExpO regulariser on a batch, for any explainer, configured once (`IdExpo`).

Yoshikawa & Iwata, "Explanation-based training with differentiable insertion/deletion
metric-aware regularizers", AISTATS 2024. The loss of a batch is
`CE + λ · mean_n(cIns_n + cDel_n) + λ₂ · mean(φ²)`; `IdExpo(explainer)(model, xb, yb, key)`
returns the middle term's `mean(cIns + cDel)` and reports `mean(φ²)` in its aux dict, so the
caller composes the weights.

The soft curves evaluate each example's clean input too (the all-ones mask, for the deletion
ratio) in the same batched model call as its soft insertions and deletions, and the penalty reports
the cross-entropy and accuracy of those clean logits (`clean_ce`, `clean_acc`). With `yb` the
labels, `clean_ce` is the batch's `CE`: a loss written `aux["clean_ce"] + λ·penalty + λ₂·mean(φ²)`
calls the model on the clean batch no second time, so its step holds one forward and backward pass
of the model fewer (less to compile, and `B` images fewer to evaluate).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from idexpo_jax.core.config import config
from idexpo_jax.core.predictor import (as_predictor, check_batch_targets, promote_input,
                                       select_output)
from idexpo_jax.explainers.base import resolve_units
from idexpo_jax.metrics.soft_curves import SoftOptions, losses_and_clean_logits

Array = jax.Array


@config
class IdExpo(SoftOptions):
  """The ID-ExpO penalty: soft insertion/deletion of a batch's explanations, stated once.

  The explainer stays in the graph, so the gradient of the penalty flows through the explanation
  into the model (second order for Grad-CAM and the gradient explainers). Units and baseline are
  the explainer's (`segments=`/`baseline=` here only for explainers that carry none, e.g. a plain
  function). The defaults are the reference configuration (CIFAR-10 Grad-CAM: 64 steps over the
  units, up to half of them, τ = 1, the deletion ratio, log-softmax of the attribution).

  Example::

    lime = ij.Lime(segments=ij.grid_segments(32, 32, 4), baseline=mean, n_samples=1000)
    penalty = ij.IdExpo(lime, n_steps=64, fraction=0.5)
    def loss_fn(params, batch, key):
      pen, aux = penalty(model_of(params), *batch, key)
      return aux["clean_ce"] + 0.01 * pen + 1e-4 * aux["attribution_sq"], aux

  The soft-curve options (`n_steps`, `fraction`, `temperature`, `deletion`, `log_softmax`,
  `chunk_size`) are the fields of `soft_curves.SoftOptions`, which this class extends.

  Attributes:
    explainer: `explainer(model, x, target, key) -> φ (d,)`, e.g. `ij.GradCam(baseline=0.)`.
    baseline: the value of removed units (`None`: the explainer's).
    segments: `(H, W)` unit ids (`None`: the explainer's; pixels/features if it has none).
    n_steps: soft steps over all units, `Δ = U // n_steps` units per step.
    fraction: largest kept/removed fraction of the units, in (0, 1].
    temperature: sigmoid temperature `τ > 0` of the soft masks.
    deletion: "ratio" (`log p(x_del) − log p(x)`) or "direct" (`−log(1 − p(x_del))`).
    log_softmax: map the attribution through log-softmax before the masks (reference default;
      masks unchanged in exact arithmetic, only the gradient differs).
    chunk_size: optional bound on the number of soft images per model call.
  """

  explainer: Any
  _: dataclasses.KW_ONLY
  baseline: Any = None
  segments: Any = None

  def __post_init__(self):
    super().__post_init__()
    if not callable(self.explainer):
      raise TypeError(f"`explainer` must be callable as explainer(model, x, target, key); got "
                      f"{type(self.explainer).__name__}.")

  def units(self) -> tuple[Any, Any]:
    """`(segments, baseline)` of the soft curves: this object's, else the explainer's."""
    return resolve_units(self.explainer, self.segments, self.baseline, where="IdExpo")

  def losses(self, model, x: Array, attribution: Array, target) -> tuple[Array, Array]:
    """`(cIns, cDel)` of one example's attribution (`soft_curves.soft_insertion_deletion`)."""
    segments, baseline = self.units()
    return losses_and_clean_logits(model, x, attribution, target, baseline=baseline,
                                   segments=segments, opts=self)[:2]

  def __call__(self, model, xb: Array, yb: Array, key: Array):
    """Soft insertion/deletion penalty of the explanations of a batch.

    Args:
      model: an NNX module with `features`/`head`, a `Predictor`, or a logits function (for
        explainers that need only logits).
      xb: non-empty batch of inputs `(B, ...)` (integer `xb` is promoted to the model's float
        dtype).
      yb: int targets `(B,)` in `[0, K)` (training: the labels). Concrete ones outside raise
        ValueError; traced ones outside (the usual case inside a jitted train step) give a NaN
        penalty.
      key: PRNG key, split into one key per example for the explainer.

    Returns:
      `(penalty, aux)`: `penalty = mean(cIns + cDel)`; aux has `cins`, `cdel` (batch means),
      `attribution_sq` (`mean(φ²)`, the λ₂ term), `clean_ce` (`−mean_n log p_{y_n}(x_n)`, the
      cross-entropy of `yb` on the clean inputs; equal to
      `optax.softmax_cross_entropy_with_integer_labels(model(xb), yb).mean()` up to float32
      rounding) and `clean_acc` (the fraction of examples whose clean logits rank `y_n` first).
      All scalars; a traced `yb` outside `[0, K)` makes every one of them NaN.
    """
    predictor = as_predictor(model)
    segments, baseline = self.units()
    xb, yb = jnp.asarray(xb), jnp.asarray(yb)
    if yb.ndim != 1 or xb.ndim < 2 or yb.shape[0] != xb.shape[0] or xb.shape[0] == 0:
      raise ValueError(f"`yb` must hold one target per example of a non-empty batch `xb`, shape "
                       f"(B,) with B >= 1; got xb {tuple(xb.shape)} and yb {tuple(yb.shape)}.")
    xb = promote_input(predictor, xb, batched=True)
    yb = check_batch_targets(predictor, xb, yb, name="yb")
    keys = jax.random.split(key, xb.shape[0])

    def one(x, y, k):
      phi = self.explainer(predictor, x, y, k)
      cins, cdel, logits = losses_and_clean_logits(predictor, x, phi, y, baseline=baseline,
                                                   segments=segments, opts=self)
      return cins, cdel, jnp.mean(phi ** 2), logits

    cins, cdel, sq, logits = jax.vmap(one)(xb, yb, keys)
    penalty = jnp.mean(cins + cdel)
    log_p = select_output(logits, yb, "log_prob")  # NaN rows: a traced `yb` outside [0, K)
    hit = (jnp.argmax(logits, axis=-1) == yb).astype(log_p.dtype)
    return penalty, {"cins": cins.mean(), "cdel": cdel.mean(), "attribution_sq": sq.mean(),
                     "clean_ce": -log_p.mean(),
                     "clean_acc": jnp.where(jnp.isnan(log_p), jnp.nan, hit).mean()}
