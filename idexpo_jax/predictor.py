"""The `Predictor` contract shared by every explainer, metric and regulariser.

Library code never touches a neural-network module: it receives pure functions on batches, so the
same code serves Flax NNX, Linen, Equinox or a hand-written function.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp

Array = jax.Array
LogitsFn = Callable[[Array], Array]


def _identity(xb: Array) -> Array:
  return xb


class Predictor(NamedTuple):
  """A model split into a feature extractor and a head, both pure functions on batches.

  `predictor(xb) == head(features(xb))` gives logits `(B, K)`. For Grad-CAM `features` returns the
  chosen convolutional maps `(B, h, w, F)`; for models without a spatial feature map `features`
  may be the identity.

  Attributes:
    features: `xb -> A` (batched).
    head: `A -> logits (B, K)` (batched).
  """

  features: Callable[[Array], Array]
  head: Callable[[Array], Array]

  def __call__(self, xb: Array) -> Array:
    return self.head(self.features(xb))


def as_logits_fn(model: Union[Predictor, LogitsFn]) -> LogitsFn:
  """Returns a plain `xb -> logits` function for a `Predictor` or a logits function."""
  if isinstance(model, Predictor):
    return lambda xb: model.head(model.features(xb))
  if not callable(model):
    raise TypeError(f"`logits_fn` must be callable or a Predictor, got {type(model).__name__}.")
  return model


def as_predictor(model: Union[Predictor, LogitsFn]) -> Predictor:
  """Wraps a plain logits function as a `Predictor` with identity features."""
  if isinstance(model, Predictor):
    return model
  return Predictor(features=_identity, head=model)


def target_log_prob(logits_fn: LogitsFn, xb: Array, target) -> Array:
  """`log p_target(x)` for every row of `xb` (log-softmax of the logits), shape `(B,)`."""
  logits, target = _checked_logits(logits_fn, xb, target)
  return jnp.take(jax.nn.log_softmax(logits, axis=-1), target, axis=-1)


def target_logit(logits_fn: LogitsFn, xb: Array, target) -> Array:
  """The logit (pre-softmax score) of `target` for every row of `xb`, shape `(B,)`."""
  logits, target = _checked_logits(logits_fn, xb, target)
  return jnp.take(logits, target, axis=-1)


def _checked_logits(logits_fn: LogitsFn, xb: Array, target) -> tuple[Array, Array]:
  """`(logits_fn(xb), target)` after checking the logits' shape and the target's range."""
  logits = logits_fn(xb)
  if logits.ndim != 2:
    raise ValueError(f"`logits_fn` must return logits of shape (B, K); got {logits.shape}.")
  target = jnp.asarray(target)
  if target.ndim != 0:
    raise ValueError(f"`target` must be a scalar class index; got shape {target.shape}.")
  if not isinstance(target, jax.core.Tracer) and not 0 <= int(target) < logits.shape[-1]:
    raise ValueError(f"`target` must be in [0, {logits.shape[-1]}); got {int(target)}.")
  return logits, target


def target_prob(logits_fn: LogitsFn, xb: Array, target) -> Array:
  """Softmax probability of `target` for every row of `xb`, shape `(B,)`."""
  return jnp.exp(target_log_prob(logits_fn, xb, target))
