"""Models as arguments of a jitted function: arrays traced, everything else static.

`explain` and `InsertionDeletion` jit one function for any model kind: a Flax NNX module, an
`adapters` wrapper of a Linen or Equinox model (pytrees), a `Predictor` of bound methods, or a
plain logits function. `split_model` separates a model's array leaves (traced arguments, so new
parameter values reuse the compilation) from the rest (static, hashed by value where hashable and
by identity otherwise); a bound method of a pytree, e.g. `module.features` in a `Predictor`, is
split into its object's arrays and its function, so parameters are never baked in as constants.
A plain function is static: its closed-over arrays are constants of the compilation, as with any
`jax.jit`.
"""

from __future__ import annotations

import types

import jax
import numpy as np

from idexpo_jax.core.config import frozen_key


class _Static:
  """A static leaf: compared by value when hashable, by identity otherwise."""

  __slots__ = ("value",)

  def __init__(self, value):
    self.value = value

  def _key(self):
    try:
      hash(self.value)
      return (True, self.value)
    except TypeError:
      return (False, id(self.value))

  def __hash__(self):
    return hash(self._key())

  def __eq__(self, other):
    if not isinstance(other, _Static):
      return False
    a, b = self._key(), other._key()
    return a[0] == b[0] and (a[1] is b[1] or a[1] == b[1]) if a[0] else a == b


class ArrayKey:
  """A concrete array as a static argument, hashed and compared by value."""

  __slots__ = ("value", "_key")

  def __init__(self, value):
    self.value = np.asarray(value)
    self._key = frozen_key(self.value)

  def __hash__(self):
    return hash(self._key)

  def __eq__(self, other):
    return isinstance(other, ArrayKey) and self._key == other._key


@jax.tree_util.register_pytree_node_class
class _Method:
  """A bound method as a pytree: its object's arrays are leaves, its function is static."""

  def __init__(self, obj, func):
    self.obj, self.func = obj, func

  def __call__(self, *args, **kwargs):
    return self.func(self.obj, *args, **kwargs)

  def tree_flatten(self):
    return (self.obj,), self.func

  @classmethod
  def tree_unflatten(cls, func, children):
    return cls(children[0], func)


def _unbind(leaf):
  if isinstance(leaf, types.MethodType) and jax.tree_util.tree_leaves(leaf.__self__):
    return _Method(leaf.__self__, leaf.__func__)
  return leaf


def split_model(model):
  """`(arrays, static)`: a model's array leaves (traced) and the rest (hashable, static).

  A bound method of a pytree (e.g. `nnx_module.features` in a `Predictor`) is split into its
  object's arrays and its function, so its parameters are traced rather than baked in.
  """
  leaves, treedef = jax.tree_util.tree_flatten(jax.tree_util.tree_map(_unbind, model))
  is_array = [isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves]
  arrays = [leaf if a else None for leaf, a in zip(leaves, is_array)]
  static = (treedef, tuple(None if a else _Static(leaf) for leaf, a in zip(leaves, is_array)))
  return arrays, static


def merge_model(arrays, static):
  """Inverse of `split_model`."""
  treedef, rest = static
  leaves = [a if s is None else s.value for a, s in zip(arrays, rest)]
  return jax.tree_util.tree_unflatten(treedef, leaves)
