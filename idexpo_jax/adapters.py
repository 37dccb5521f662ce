"""Adapters: a `Predictor` for Flax Linen and Equinox models (Flax NNX modules need none).

The library's convention is a batch of examples, images channels-last `(B, H, W, C)`, and a
`Predictor(features, head)` of pure functions on batches (`predictor.py`). Models of other
conventions are wrapped:

* Flax NNX: a module with `features`/`head` methods (e.g. `idexpo_jax.models`) is used as it is
  by `explain` and `InsertionDeletion`; inside a jitted loss, rebuild it with
  `models.predictor_fn(graphdef, params, rest)`.
* Flax Linen: `linen_predictor(module, variables, features="features", head="head")` calls
  `module.apply(variables, x, method=...)`; Linen convolutions are already NHWC.
* Equinox: `equinox_predictor(model, channels_first=True)` maps the model, which takes one example,
  over the batch with `jax.vmap`, and transposes images `(H, W, C)` to Equinox's `(C, H, W)`; the
  feature maps `(F, h, w)` come back as `(h, w, F)` for Grad-CAM.

The returned functions are pytrees whose leaves are the model's arrays (`variables`, or the
Equinox model), with the module and method names static: `explain` traces them, so new parameters
reuse its compilation.
"""

from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp

from idexpo_jax.core.predictor import Predictor, _identity

Array = jax.Array


@jax.tree_util.register_pytree_node_class
class LinenApply:
  """`xb -> module.apply(variables, xb, method=method)` as a pytree (leaves: `variables`)."""

  def __init__(self, module, variables, method: Union[str, Callable, None] = None):
    self.module, self.variables, self.method = module, variables, method

  def __call__(self, xb: Array) -> Array:
    if self.method is None:
      return self.module.apply(self.variables, xb)
    return self.module.apply(self.variables, xb, method=self.method)

  def tree_flatten(self):
    return (self.variables,), (self.module, self.method)

  @classmethod
  def tree_unflatten(cls, aux, children):
    return cls(aux[0], children[0], aux[1])


def linen_predictor(module, variables, *, features: Union[str, Callable, None] = None,
                    head: Union[str, Callable, None] = None) -> Predictor:
  """A `Predictor` of a Flax Linen module.

  Args:
    module: the `flax.linen.Module` (NHWC images, as every Linen conv).
    variables: its variables, e.g. `{"params": params}` (no batch statistics are updated).
    features: the method (name or unbound function) returning the feature maps `(B, h, w, F)`
      for Grad-CAM; `None` uses the identity (LIME, KernelSHAP and gradients need no split).
    head: the method mapping the features to logits; `None` is `module.__call__` (then
      `features` must be `None` too).

  Returns:
    `Predictor(features, head)` with `head(features(xb))` the logits `(B, K)`.
  """
  if (features is None) != (head is None):
    raise ValueError("`linen_predictor` needs both `features` and `head` methods, or neither "
                     "(then the module's `__call__` gives the logits).")
  feats = _identity if features is None else LinenApply(module, variables, features)
  return Predictor(features=feats, head=LinenApply(module, variables, head))


def _to_chw(xb: Array) -> Array:
  return jnp.moveaxis(xb, -1, 1) if xb.ndim == 4 else xb


def _to_hwc(out: Array) -> Array:
  return jnp.moveaxis(out, 1, -1) if out.ndim == 4 else out


@jax.tree_util.register_pytree_node_class
class EquinoxApply:
  """A per-example Equinox callable vmapped over a batch, with NHWC ↔ CHW transposes.

  `fn(model, x)` (or the method `fn` of the model, or the model itself when `fn` is None) gets one
  example; with `channels_first`, 4-D batches are moved from `(B, H, W, C)` to `(B, C, H, W)`
  before and 4-D outputs back to channels-last after.
  """

  def __init__(self, model, fn: Union[str, Callable, None] = None, channels_first: bool = True):
    self.model, self.fn, self.channels_first = model, fn, channels_first

  def _one(self, x: Array) -> Array:
    if self.fn is None:
      return self.model(x)
    if isinstance(self.fn, str):
      return getattr(self.model, self.fn)(x)
    return self.fn(self.model, x)

  def __call__(self, xb: Array) -> Array:
    if self.channels_first:
      return _to_hwc(jax.vmap(self._one)(_to_chw(xb)))
    return jax.vmap(self._one)(xb)

  def tree_flatten(self):
    return (self.model,), (self.fn, self.channels_first)

  @classmethod
  def tree_unflatten(cls, aux, children):
    return cls(children[0], *aux)


def equinox_predictor(model, *, channels_first: bool = True,
                      features: Union[str, Callable, None] = None,
                      head: Union[str, Callable, None] = None) -> Predictor:
  """A `Predictor` of an Equinox model that takes one example.

  Args:
    model: an `equinox.Module` (or any pytree callable) mapping one example to logits `(K,)`.
    channels_first: the model takes images `(C, H, W)` (Equinox's convolutions); batches
      `(B, H, W, C)` are transposed before the call and feature maps back after. Set False for
      channels-last models and for tabular inputs (a 1-D example is never transposed).
    features: a method name or `fn(model, x)` giving one example's feature maps `(F, h, w)`
      (`(h, w, F)` if not `channels_first`) for Grad-CAM; `None` uses the identity.
    head: a method name or `fn(model, a)` mapping one example's features to logits; `None`
      calls the model (then `features` must be `None` too).

  Returns:
    `Predictor(features, head)` on channels-last batches.
  """
  if (features is None) != (head is None):
    raise ValueError("`equinox_predictor` needs both `features` and `head`, or neither (then the "
                     "model itself gives the logits).")
  feats = _identity if features is None else EquinoxApply(model, features, channels_first)
  return Predictor(features=feats, head=EquinoxApply(model, head, channels_first))

