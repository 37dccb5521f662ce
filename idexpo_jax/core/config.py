"""Frozen configuration objects: hashed and compared by value, owning copies of their arrays.

The explainers (`explainers.base`), the ID-ExpO penalty (`regularisers.idexpo.IdExpo`) and the hard
scores (`metrics.scores.InsertionDeletion`) are configurations: frozen dataclasses whose fields
are options, captured once. `Config` gives them value semantics that `jax.jit` can use as static
arguments: equal configurations hash equal (arrays by shape, dtype and bytes), and a concrete
array given to a field is copied into a read-only NumPy array, so changing the caller's array
later changes neither the object nor its hash.
"""

from __future__ import annotations

import dataclasses
import typing

import jax
import numpy as np
from jax.core import Tracer


def frozen_key(value):
  """A hashable stand-in for a field value (arrays by shape, dtype and bytes)."""
  if isinstance(value, (np.ndarray, jax.Array, np.generic)):
    try:
      arr = np.asarray(value)
    except jax.errors.TracerArrayConversionError as err:
      raise TypeError("A configuration holding a traced array (e.g. a baseline computed inside "
                      "`jit`) cannot be hashed; build it inside the traced function and call it "
                      "there, or pass the array to the pure function.") from err
    return ("array", arr.shape, arr.dtype.str, arr.tobytes())
  return value


def own_copy(value):
  """A read-only NumPy copy of a concrete array; a traced array or a non-array as it is."""
  if isinstance(value, Tracer) or not isinstance(value, (np.ndarray, jax.Array)):
    return value
  arr = np.array(value, copy=True)
  arr.setflags(write=False)
  return arr


class Config:
  """Value semantics for a frozen dataclass: hash, equality, `replace`, owned arrays."""

  def _key(self):
    return (type(self),) + tuple(frozen_key(getattr(self, f.name))
                                 for f in dataclasses.fields(self))

  def __hash__(self):
    return hash(self._key())

  def __eq__(self, other):
    return type(other) is type(self) and self._key() == other._key()

  def __post_init__(self):
    for f in dataclasses.fields(self):
      object.__setattr__(self, f.name, own_copy(getattr(self, f.name)))

  def replace(self, **changes):
    """A copy with some fields changed (`dataclasses.replace`)."""
    return dataclasses.replace(self, **changes)


@typing.dataclass_transform(frozen_default=True)
def config(cls=None, *, kw_only: bool = False):
  """Class decorator: a frozen dataclass with `Config` semantics, registered as a static pytree.

  With `kw_only=False`, fields after a `_: dataclasses.KW_ONLY` marker are keyword-only.
  """
  def wrap(c):
    c = dataclasses.dataclass(frozen=True, kw_only=kw_only, eq=False)(c)
    return jax.tree_util.register_static(c)

  return wrap if cls is None else wrap(cls)
