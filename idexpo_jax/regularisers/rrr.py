"""Right for the Right Reasons: input-gradient penalties and "find another explanation".

Ross, Hughes & Doshi-Velez, "Right for the Right Reasons: Training Differentiable Models by
Constraining their Explanations", IJCAI 2017.

* `rrr_penalty`: with an annotation mask `A` (1 where the input must NOT matter),
  `mean_n Σ_d (A_nd · ∂/∂x_nd Σ_k log p_k(x_n))²`. The paper sums over the batch; this library takes
  the mean over the batch by default (like the cross-entropy it is added to), so `λ₁` has the same
  meaning as in the paper when both terms are means (or both sums: `reduction="sum"`).
* `explanation_mask`: the paper's mask of an explanation,
  `M_c = |∇_x max_k p_k(x)| > c · max_d |∇_x max_k p_k(x)|_d`, a threshold relative to each
  example's largest gradient entry (not a percentile).
* `find_another_explanation`: trains a sequence of models, model 0 with `A_0 = 0` and model `t`
  with `A_t = A_{t−1} OR M_c(model_{t−1})`, so that each is forbidden the features the previous
  ones relied on.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax.core.checks import check_batch, check_fraction, check_int
from idexpo_jax.core.predictor import as_logits_fn, promote_input
from idexpo_jax.explainers.gradients import input_gradients

Array = jax.Array


def _check_batch(xb, name: str = "xb") -> None:
  check_batch(xb, name)


def _annotation_for(xb: Array, annotation) -> Array:
  """Broadcasts `annotation` to the shape of `xb` and casts it to `xb`'s dtype."""
  annotation = jnp.asarray(annotation)
  try:
    shape = np.broadcast_shapes(annotation.shape, xb.shape)
  except ValueError:
    shape = None
  if shape != tuple(xb.shape):
    raise ValueError(f"`annotation` must be broadcastable to the shape of `xb` {tuple(xb.shape)}; "
                     f"got shape {tuple(annotation.shape)}.")
  return jnp.broadcast_to(annotation.astype(xb.dtype), xb.shape)


def batch_input_gradients(logits_fn, xb: Array, *, reduce: str = "sum_log_prob") -> Array:
  """`input_gradients` of every example of a batch (vmapped), shape of `xb`."""
  _check_batch(xb)
  logits_fn = as_logits_fn(logits_fn)
  return jax.vmap(lambda x: input_gradients(logits_fn, x, reduce=reduce))(xb)


def rrr_penalty(logits_fn, xb: Array, annotation, *, reduction: str = "mean"
                ) -> tuple[Array, dict]:
  """The RRR "right reasons" term of a batch.

  `mean_n Σ_d (A_nd · ∂/∂x_nd Σ_k log p_k(x_n))²` (Ross et al., 2017, eq. 1, second term; by default
  the mean over the batch; `reduction="sum"` is the paper's sum, to pair with a cross-entropy summed
  over the batch). The gradient is taken per example and stays in the graph,
  so `jax.grad` of a loss that calls this differentiates through it (double backpropagation).

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor`.
    xb: inputs `(B, ...)`.
    annotation: `A`, 1 (or True) where the input must not matter, broadcastable to `xb`
      (e.g. `(B, ...)` per example or `(...)` shared by the batch); binary or real weights.
    reduction: `"mean"` or `"sum"` over the batch (`sum = B · mean`).

  Returns:
    `(penalty, aux)`: a scalar, and `aux` with `input_grad_sq` (`Σ_d g_nd²` over the whole input,
    reduced over the batch the same way, for monitoring how much of the gradient lies outside the
    annotation).
  """
  if reduction not in ("mean", "sum"):
    raise ValueError(f"`reduction` must be 'mean' or 'sum'; got {reduction!r}.")
  _check_batch(xb)
  xb = promote_input(logits_fn, xb, batched=True)
  a = _annotation_for(xb, annotation)
  g = batch_input_gradients(logits_fn, xb, reduce="sum_log_prob")
  axes = tuple(range(1, xb.ndim))
  reduce = jnp.mean if reduction == "mean" else jnp.sum
  penalty = reduce(jnp.sum((a * g) ** 2, axis=axes))
  return penalty, {"input_grad_sq": reduce(jnp.sum(g ** 2, axis=axes))}


def explanation_mask(logits_fn, xb: Array, *, cutoff: float = 0.67) -> Array:
  """The input entries an explanation relies on: `|∇ max_k p_k| > c · max|∇ max_k p_k|`.

  The threshold is relative to each example's largest absolute gradient entry (Ross et al.,
  2017, §4.2), so a model with small gradients still has a mask. An example whose gradient is
  exactly zero gets an empty mask.

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor`.
    xb: inputs `(B, ...)`.
    cutoff: `c` in `[0, 1)`.

  Returns:
    A boolean array of the shape of `xb`.
  """
  cutoff = check_fraction(cutoff, "cutoff", low_open=False, high_open=True)
  g = jnp.abs(batch_input_gradients(logits_fn, xb, reduce="max_prob"))
  axes = tuple(range(1, xb.ndim))
  return g > cutoff * jnp.max(g, axis=axes, keepdims=True)


class AnotherExplanations(NamedTuple):
  """The result of `find_another_explanation`.

  Attributes:
    models: what `train_fn` returned for each model, in order.
    annotations: the annotation `A_t` each model was trained with (NumPy bool, shape of `X`).
    masks: the explanation mask `M_c` of each model on `X` (NumPy bool, shape of `X`).
  """

  models: list
  annotations: list
  masks: list


def find_another_explanation(train_fn: Callable[[Any, Any, np.ndarray], Any], X, y, *,
                             n_models: int, cutoff: float = 0.67,
                             annotation: Optional[np.ndarray] = None,
                             batch_size: int = 4096) -> AnotherExplanations:
  """Trains `n_models` models, each forbidden the input features the previous ones relied on.

  Model 0 is trained with `A_0` (zeros unless `annotation` is given); after training model `t`,
  `A_{t+1} = A_t OR M_c(model_t)` per example, with `M_c` from `explanation_mask` on `X`
  (Ross et al., 2017, §4.2). This is a driver that calls `train_fn`; it is not jittable itself.

  Args:
    train_fn: `train_fn(X, y, A) -> model`, where `model` is a logits function (or `Predictor`)
      trained with `rrr_penalty(..., annotation=A)` on the examples `X`.
    X: inputs `(N, ...)`.
    y: labels `(N,)`, passed through to `train_fn`.
    n_models: number of models to train (>= 1).
    cutoff: `c` of `explanation_mask`.
    annotation: optional initial annotation `A_0`, broadcastable to `X`.
    batch_size: examples per jitted call when computing masks.

  Returns:
    `AnotherExplanations(models, annotations, masks)`.
  """
  n_models = check_int(n_models, "n_models", minimum=1)
  batch_size = check_int(batch_size, "batch_size", minimum=1)
  check_fraction(cutoff, "cutoff", low_open=False, high_open=True)
  X = np.asarray(X)
  _check_batch(X, "X")
  if len(y) != X.shape[0]:
    raise ValueError(f"`y` must have one label per row of `X` ({X.shape[0]}); got {len(y)}.")
  a = np.zeros(X.shape, bool) if annotation is None else np.broadcast_to(
      np.asarray(annotation, bool), X.shape).copy()
  models, annotations, masks = [], [], []
  for _ in range(n_models):
    model = train_fn(X, y, a)
    mask_fn = jax.jit(lambda xb, m=model: explanation_mask(m, xb, cutoff=cutoff))
    mask = np.concatenate([np.asarray(mask_fn(X[i:i + batch_size]))
                           for i in range(0, X.shape[0], batch_size)])
    models.append(model)
    annotations.append(a)
    masks.append(mask)
    a = a | mask
  return AnotherExplanations(models, annotations, masks)
