"""A batch of explanations in one jitted, vmapped call.

`explain(explainer, model, xb, key)` explains every example of a batch (the predicted class, given
classes, or every class) with one `jax.jit` of a `jax.vmap`. `model` is any model kind the
explainers take (an NNX module, an `adapters` wrapper, a `Predictor` or a logits function); its
arrays are traced arguments of the compiled function (`core.jit.split_model`), so new parameter
values reuse the compilation.
"""

from __future__ import annotations

import functools
from typing import Optional, Union

import jax
import jax.numpy as jnp

from idexpo_jax.core import masking
from idexpo_jax.core.jit import merge_model, split_model
from idexpo_jax.core.checks import check_batch, check_target
from idexpo_jax.core.predictor import as_logits_fn, as_predictor, num_outputs

Array = jax.Array


def check_targets(targets, xb: Array, n_classes: int) -> str:
  """Validates `targets` and returns the mode: "predicted", "given" or "all"."""
  if targets is None:
    return "predicted"
  if isinstance(targets, str):
    if targets != "all":
      raise ValueError(f"`targets` must be None (the predicted class), an int array (B,) or "
                       f"'all'; got {targets!r}.")
    return "all"
  check_target(targets, n_classes, name="targets", shape=xb.shape[:1])
  return "given"


def as_batch(xb) -> Array:
  """`xb` as an array, checked to be a non-empty batch (`checks.check_batch`)."""
  xb = jnp.asarray(xb)
  check_batch(xb)
  return xb


@functools.partial(jax.jit, static_argnames=("explainer", "static", "mode", "n_classes",
                                             "chunk_size"))
def _explain(explainer, arrays, static, xb, key, targets, *, mode, n_classes, chunk_size):
  model = as_predictor(merge_model(arrays, static))
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
  xb = as_batch(xb)
  masking.check_chunk_size(chunk_size)
  # Split the model itself (not its bound methods, which would hide its arrays in static leaves).
  n_classes = num_outputs(model, xb)
  mode = check_targets(targets, xb, n_classes)
  t = (jnp.zeros(xb.shape[:1], jnp.int32) if mode != "given"
       else jnp.asarray(targets).astype(jnp.int32))
  arrays, static = split_model(model)
  return _explain(explainer, arrays, static, xb, key, t, mode=mode, n_classes=n_classes,
                  chunk_size=chunk_size)
