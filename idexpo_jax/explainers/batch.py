"""A batch of explanations, and its insertion/deletion scores, in one jitted call (SPEC §9).

`explain(explainer, model, xb, key)` explains every example of a batch (the predicted class, given
classes, or every class) with one `jax.jit` of a `jax.vmap`; `batch_insertion_deletion_scores`
scores them with the hard curves of `curves` in the convention of the README's tables.

`model` is a `Predictor`, a logits function `xb -> (B, K)`, or any callable pytree such as a
Flax NNX module (`idexpo_jax.models`) or an `adapters` wrapper of a Linen or Equinox model;
an object with `features` and `head` methods is used as a `Predictor` (for Grad-CAM). The arrays
of a pytree model are traced arguments of the compiled function, so new parameter values reuse
the compilation; its other leaves, and a plain function, are static (a new function object
compiles anew, and the arrays a function closes over are constants of the compilation, as with
any `jax.jit`).
"""

from __future__ import annotations

import functools
import types
from typing import NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax.core import masking
from idexpo_jax.metrics.curves import batch_insertion_deletion, curve_auc
from idexpo_jax.explainers.base import _frozen, resolve_units
from idexpo_jax.core.predictor import as_logits_fn

Array = jax.Array


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


class _ArrayKey:
  """A concrete array as a static argument, hashed and compared by value."""

  __slots__ = ("value", "_key")

  def __init__(self, value):
    self.value = np.asarray(value)
    self._key = _frozen(self.value)

  def __hash__(self):
    return hash(self._key)

  def __eq__(self, other):
    return isinstance(other, _ArrayKey) and self._key == other._key


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


def as_model(model):
  """A `Predictor` for an object with `features`/`head` methods, else `model` itself."""
  from idexpo_jax.core.predictor import Predictor
  if isinstance(model, Predictor):
    return model
  if callable(getattr(model, "features", None)) and callable(getattr(model, "head", None)):
    return Predictor(features=model.features, head=model.head)
  if not callable(model):
    raise TypeError(f"`model` must be a Predictor, a logits function or a callable module; got "
                    f"{type(model).__name__}.")
  return model


def _num_classes(model, xb: Array) -> int:
  out = jax.eval_shape(as_logits_fn(model), jax.ShapeDtypeStruct((1, *xb.shape[1:]), xb.dtype))
  if len(out.shape) != 2:
    raise ValueError(f"`model` must map a batch (B, ...) to logits (B, K); got output shape "
                     f"{tuple(out.shape)} for inputs of shape (1, {', '.join(map(str, xb.shape[1:]))}).")
  return int(out.shape[1])


def _check_targets(targets, xb: Array, n_classes: int) -> str:
  """Validates `targets` and returns the mode: "predicted", "given" or "all"."""
  if targets is None:
    return "predicted"
  if isinstance(targets, str):
    if targets != "all":
      raise ValueError(f"`targets` must be None (the predicted class), an int array (B,) or "
                       f"'all'; got {targets!r}.")
    return "all"
  if jnp.shape(targets) != xb.shape[:1]:
    raise ValueError(f"`targets` must have shape (B,) = ({xb.shape[0]},); got "
                     f"{tuple(jnp.shape(targets))}.")
  if not jnp.issubdtype(jnp.asarray(targets).dtype, jnp.integer):
    raise TypeError(f"`targets` must be integer class indices; got {jnp.asarray(targets).dtype}.")
  if not isinstance(targets, jax.core.Tracer):
    t = np.asarray(targets)
    if t.size and (t.min() < 0 or t.max() >= n_classes):
      raise ValueError(f"`targets` must be in [0, {n_classes}); got values in "
                       f"[{t.min()}, {t.max()}].")
  return "given"


def _check_batch(xb) -> Array:
  xb = jnp.asarray(xb)
  if xb.ndim < 2 or xb.shape[0] == 0:
    raise ValueError(f"`xb` must be a non-empty batch (B, ...) of examples; got shape "
                     f"{tuple(xb.shape)}.")
  return xb


@functools.partial(jax.jit, static_argnames=("explainer", "static", "mode", "n_classes",
                                             "chunk_size"))
def _explain(explainer, arrays, static, xb, key, targets, *, mode, n_classes, chunk_size):
  model = as_model(merge_model(arrays, static))
  logits_fn = as_logits_fn(model)
  keys = jax.random.split(key, xb.shape[0])

  def one(x, t, k):
    if mode == "predicted":
      t = logits_fn(x[None])[0].argmax().astype(jnp.int32)
    if mode == "all":
      return jax.vmap(lambda c: explainer(model, x, c, k))(jnp.arange(n_classes, dtype=jnp.int32))
    return explainer(model, x, t, k)

  return masking.map_chunks(jax.vmap(one), (xb, targets, keys), chunk_size)


def explain(explainer, model, xb: Array, key: Array, *,
            targets: Union[None, str, Array] = None, chunk_size: Optional[int] = None) -> Array:
  """Explains a batch in one jitted, vmapped call.

  Example `i` gets the key `jax.random.split(key, B)[i]` (as `idexpo_penalty` and the
  experiments' evaluation), so `explain(e, m, xb, key, targets=t)[i]` equals
  `e(m, xb[i], t[i], split(key, B)[i])`. With `targets="all"` every class of an example uses the
  example's key: LIME and KernelSHAP then draw the same samples for every class, and since the
  masked inputs do not depend on the class, `vmap` runs the model on them once.

  Args:
    explainer: `explainer(model, x, target, key) -> φ (d,)`, e.g. `ij.Lime(...)`.
    model: a `Predictor`, a logits function or a callable pytree (module docstring).
    xb: a batch of examples `(B, ...)`.
    key: PRNG key, split into one key per example.
    targets: `None` explains the class the model predicts for each example; an int array `(B,)`
      the given classes; `"all"` every class. A traced target out of range is not checked here
      (the explainer's own convention applies).
    chunk_size: optional number of examples per vmapped chunk (`jax.lax.map` over chunks) to
      bound memory; the last chunk is padded by repeating the last example.

  Returns:
    `(B, d)`, or `(B, K, d)` for `targets="all"`.
  """
  xb = _check_batch(xb)
  masking.check_chunk_size(chunk_size)
  # Split the model itself (not its bound methods, which would hide its arrays in static leaves).
  n_classes = _num_classes(as_model(model), xb)
  mode = _check_targets(targets, xb, n_classes)
  t = (jnp.zeros(xb.shape[:1], jnp.int32) if mode != "given"
       else jnp.asarray(targets).astype(jnp.int32))
  arrays, static = split_model(model)
  return _explain(explainer, arrays, static, xb, key, t, mode=mode, n_classes=n_classes,
                  chunk_size=chunk_size)


class InsertionDeletionScores(NamedTuple):
  """Hard insertion (↑) and deletion (↓) scores of a batch.

  Attributes:
    insertion, deletion: per-example scores `(B,)` (`(B, K)` for `targets="all"`).
    insertion_mean, deletion_mean: their means over the batch (per class for `"all"`).
  """

  insertion: Array
  deletion: Array
  insertion_mean: Array
  deletion_mean: Array


@functools.partial(jax.jit, static_argnames=("static", "segments_key", "mode", "step", "fraction",
                                             "auc", "chunk_size"))
def _scores(arrays, static, xb, attributions, targets, baseline, *, segments_key, mode, step,
            fraction, auc, chunk_size):
  model = as_model(merge_model(arrays, static))
  segments = None if segments_key is None else segments_key.value
  if mode == "predicted":
    targets = jnp.argmax(as_logits_fn(model)(xb), axis=-1).astype(jnp.int32)

  def curves(phi, t):
    return batch_insertion_deletion(model, xb, phi, t, baseline=baseline, segments=segments,
                                    step=step, fraction=fraction, chunk_size=chunk_size)

  if mode == "all":
    k = attributions.shape[1]
    fr, ins_c, del_c = jax.vmap(curves, in_axes=(1, 0), out_axes=(None, 1, 1))(
        attributions, jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[:, None], (k, xb.shape[0])))
  else:
    fr, ins_c, del_c = curves(attributions, targets)
  ins, dele = curve_auc(fr, ins_c, auc=auc), curve_auc(fr, del_c, auc=auc)
  return InsertionDeletionScores(ins, dele, ins.mean(0), dele.mean(0))


def batch_insertion_deletion_scores(model, xb: Array, attributions: Array,
                                    targets: Union[None, str, Array] = None, *, explainer=None,
                                    baseline=None, segments: Optional[Array] = None,
                                    n_steps: int = 16, step: Optional[int] = None,
                                    fraction: float = 0.5, auc: str = "mean",
                                    chunk_size: Optional[int] = None) -> InsertionDeletionScores:
  """Hard insertion/deletion scores of a batch of explanations, in one jitted call.

  The defaults are the convention of the README's tables (the ID-ExpO protocol, Yoshikawa &
  Iwata, AISTATS 2024): `step = U // n_steps` units per point with `n_steps = 16` (the
  reference's 64 px of 32×32 images), the "mean" of the curve points `0 < k ≤ fraction·U` with
  `fraction = 0.5`, the target the predicted class. The tables' "trapezoid" columns are
  `auc="trapezoid", fraction=1.0` (RISE). See `curves.insertion_deletion_curves`.

  Args:
    model: a `Predictor`, a logits function or a callable pytree (module docstring).
    xb: the examples `(B, ...)`.
    attributions: `(B, d)` (or `(B, K, d)` with `targets="all"`), e.g. from `explain`.
    targets: `None` scores the predicted class, an int array `(B,)` the given classes, `"all"`
      class `c` with `attributions[:, c]`.
    explainer: optional explainer whose units and baseline are used when not given here.
    baseline: the value of removed units (`None`: the explainer's).
    segments: `(H, W)` unit ids (`None`: the explainer's, if any).
    n_steps: points per full curve, `step = max(U // n_steps, 1)` (ignored if `step` is given).
    step: units per point.
    fraction: the largest perturbed fraction.
    auc: "mean" or "trapezoid" (`curves.curve_auc`).
    chunk_size: optional bound on the number of inputs per model call.

  Returns:
    `InsertionDeletionScores` with per-example scores and their batch means.
  """
  xb = _check_batch(xb)
  segments, baseline = resolve_units(explainer, segments, baseline,
                                     where="batch_insertion_deletion_scores")
  n_classes = _num_classes(as_model(model), xb)
  mode = _check_targets(targets, xb, n_classes)
  attributions = jnp.asarray(attributions)
  want = (xb.shape[0], n_classes) if mode == "all" else (xb.shape[0],)
  if attributions.shape[:len(want)] != want or attributions.ndim != len(want) + 1:
    raise ValueError(f"`attributions` must have shape {want + ('d',)} for targets="
                     f"{'all' if mode == 'all' else 'None or (B,)'}; got "
                     f"{tuple(attributions.shape)}.")
  n_units = masking.num_units(xb.shape[1:], segments)
  if step is None:
    if not isinstance(n_steps, int) or n_steps < 1:
      raise ValueError(f"`n_steps` must be a positive int; got {n_steps!r}.")
    step = max(n_units // n_steps, 1)
  if auc not in ("mean", "trapezoid"):
    raise ValueError(f"`auc` must be 'mean' or 'trapezoid'; got {auc!r}.")
  masking.check_baseline(xb[0], baseline)
  t = (jnp.zeros(xb.shape[:1], jnp.int32) if mode != "given"
       else jnp.asarray(targets).astype(jnp.int32))
  arrays, static = split_model(model)
  seg_key = None if segments is None else _ArrayKey(segments)
  return _scores(arrays, static, xb, attributions, t, jnp.asarray(baseline, xb.dtype),
                 segments_key=seg_key, mode=mode, step=int(step), fraction=float(fraction),
                 auc=auc, chunk_size=chunk_size)
