"""Units and the one masking helper that every explainer, metric and regulariser uses.

Units are what an explanation scores:

* pixels of an image `x` of shape `(H, W, C)` when `segments is None` (`U = H·W`, broadcast over C);
* segments: an integer map `segments` of shape `(H, W)` with ids `0..d-1` (`U = d`);
* every entry of `x` otherwise (tabular `(D,)`: `U = D`).

A unit mask `z ∈ [0, 1]^U` (binary or soft) becomes an input-space mask `z[segments]`, and
`apply_unit_mask` returns `m ⊙ x + (1 − m) ⊙ baseline`.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax.core.checks import check_int, check_target, is_traced
from idexpo_jax.core.predictor import OUTPUTS, check_output, model_output, target_scores

Array = jax.Array


def grid_segments(height: int, width: int, cell: int) -> np.ndarray:
  """Square-cell segmentation: an int32 map `(height, width)` with row-major ids `0..d-1`.

  Cells at the right/bottom border are truncated when `cell` does not divide the size, so
  `d = ceil(height / cell) · ceil(width / cell)`.
  """
  height = check_int(height, "height", minimum=1)
  width = check_int(width, "width", minimum=1)
  cell = check_int(cell, "cell", minimum=1)
  rows = np.arange(height) // cell
  cols = np.arange(width) // cell
  n_cols = -(-width // cell)
  return (rows[:, None] * n_cols + cols[None, :]).astype(np.int32)


def check_segments(segments) -> int:
  """Validates a concrete segment map and returns its number of units `d`.

  A segment map is a 2-D integer array whose ids are exactly `0..d-1`, each used at least once
  (a −1, a gap, or labels starting at 1, as `skimage.segmentation.slic` gives by default, would
  add empty units or shift them). Relabel with `np.unique(segments, return_inverse=True)[1]`.
  """
  if is_traced(segments):
    raise ValueError("`segments` must be a concrete array (not traced): it fixes the number of "
                     "units, a static shape.")
  seg = np.asarray(segments)
  if seg.ndim != 2:
    raise ValueError(f"`segments` must be a 2-D map (H, W) of unit ids; got shape {seg.shape}.")
  if not np.issubdtype(seg.dtype, np.integer):
    raise ValueError(f"`segments` must hold integer unit ids 0..d-1; got dtype {seg.dtype}.")
  if seg.size == 0:
    raise ValueError(f"`segments` must not be empty; got shape {seg.shape}.")
  lo = int(seg.min())
  present = np.bincount(seg.reshape(-1) - lo) > 0 if lo >= 0 else None
  if lo != 0 or not present.all():
    ids = np.unique(seg)
    missing = np.setdiff1d(np.arange(ids.max() + 1), ids)[:5] if lo >= 0 else ids[ids < 0][:5]
    raise ValueError(f"`segments` ids must be exactly 0..d-1 (each used); got ids from {lo} to "
                     f"{int(ids.max())} ({len(ids)} distinct; e.g. "
                     f"{'missing' if lo >= 0 else 'negative'}: {missing.tolist()}). Relabel with "
                     f"`np.unique(segments, return_inverse=True)[1].reshape(segments.shape)`.")
  return int(present.size)


def num_units(x_shape, segments: Optional[Array] = None) -> int:
  """Number of units `U` for an example of shape `x_shape` (see the module docstring)."""
  if segments is not None:
    return check_segments(segments)
  if len(x_shape) == 3:
    return int(x_shape[0] * x_shape[1])
  return int(np.prod(x_shape))


def check_units(x: Array, segments: Optional[Array]) -> None:
  """Raises ValueError when `segments` does not fit the spatial shape of `x`."""
  if segments is None:
    return
  check_segments(segments)
  if x.ndim not in (2, 3) or tuple(segments.shape) != tuple(x.shape[:2]):
    raise ValueError(f"`segments` must have the spatial shape (H, W) of `x`; got segments "
                     f"{tuple(segments.shape)} for x {tuple(x.shape)}.")


def check_unit_mask(z: Array, x_shape, segments: Optional[Array]) -> None:
  """Raises ValueError unless `z` has shape `(..., U)` for the units of `x_shape`."""
  if is_traced(segments):
    return
  n_units = num_units(x_shape, segments)
  if z.ndim < 1 or z.shape[-1] != n_units:
    raise ValueError(f"`z` must have shape (..., U) with U={n_units} units for x "
                     f"{tuple(x_shape)}; got {tuple(z.shape)}.")


def unit_mask_to_input(z: Array, x_shape, *, segments: Optional[Array] = None) -> Array:
  """Turns unit masks `z (..., U)` into input-space masks broadcastable to `(..., *x_shape)`."""
  check_unit_mask(z, x_shape, segments)
  lead = z.shape[:-1]
  if segments is not None:
    m = jnp.take(z, jnp.asarray(segments), axis=-1)  # (..., H, W)
    if len(x_shape) == 3:
      m = m[..., None]
    return m
  if len(x_shape) == 3:
    return z.reshape(*lead, x_shape[0], x_shape[1], 1)
  return z.reshape(*lead, *x_shape)


def check_baseline(x: Array, baseline) -> None:
  """Raises ValueError when `baseline` does not broadcast to the shape of `x`."""
  try:
    fits = np.broadcast_shapes(np.shape(baseline), x.shape) == tuple(x.shape)
  except ValueError:
    fits = False
  if not fits:
    raise ValueError(f"`baseline` must be broadcastable to x {tuple(x.shape)}; got shape "
                     f"{np.shape(baseline)}.")


def apply_unit_mask(x: Array, z: Array, baseline, *, segments: Optional[Array] = None) -> Array:
  """Keeps the units where `z = 1` and replaces the others by `baseline`.

  Args:
    x: one example, no batch axis.
    z: unit masks of shape `(..., U)`, binary or soft in [0, 1].
    baseline: array broadcastable to `x`.
    segments: optional `(H, W)` int map of unit ids.

  Returns:
    `m ⊙ x + (1 − m) ⊙ baseline` of shape `(..., *x.shape)`, where `m = z[segments]`; a removed
    entry (`m = 0`) is exactly the baseline even where `x` is not finite. Integer `x` is masked in
    the dtype of a floating `z` (else the default float).
  """
  check_units(x, segments)
  check_unit_mask(z, x.shape, segments)
  check_baseline(x, baseline)
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.inexact):  # integer images: mask in floating point
    x = x.astype(z.dtype if jnp.issubdtype(z.dtype, jnp.inexact) else jnp.result_type(float))
  m = unit_mask_to_input(z, x.shape, segments=segments).astype(x.dtype)
  b = jnp.broadcast_to(jnp.asarray(baseline, dtype=x.dtype), x.shape)
  # A removed unit takes exactly the baseline, even where x is inf or NaN (0 · inf would be NaN).
  x = jnp.where((m == 0) & ~jnp.isfinite(x), b, x)
  return b + m * (x - b)


def unit_sum(values: Array, *, segments: Optional[Array] = None, n_units: Optional[int] = None
             ) -> Array:
  """Aggregates a pixel map `(H, W)` (or `(H, W, C)`, summed over C) to units by summation.

  With `segments is None` a pixel map is returned flattened to `(H·W,)`.
  """
  if segments is not None:
    check_segments(segments)
  if values.ndim == 3:
    values = values.sum(-1)
  if segments is not None and tuple(values.shape) != tuple(segments.shape):
    raise ValueError(f"`values` must be a pixel map (H, W) or (H, W, C) with (H, W) = segments "
                     f"{tuple(segments.shape)}; got {tuple(values.shape)}.")
  if segments is None:
    return values.reshape(-1)
  d = num_units(values.shape, segments)
  n_units = d if n_units is None else n_units
  return jax.ops.segment_sum(values.reshape(-1), jnp.asarray(segments).reshape(-1),
                             num_segments=n_units)


def check_chunk_size(chunk_size) -> None:
  """Raises ValueError unless `chunk_size` is None or a positive int."""
  check_int(chunk_size, "chunk_size", minimum=1, none_ok=True)


def map_chunks(fn, args, chunk_size: Optional[int]):
  """`fn(*args)` for a function of batches, or `jax.lax.map` over chunks of `chunk_size` rows.

  Bounds memory: every array of `args` is cut into chunks of `chunk_size` rows along axis 0 (the
  last chunk padded by repeating the last row, and the padding dropped from the outputs).
  """
  check_chunk_size(chunk_size)
  n = args[0].shape[0]
  if chunk_size is None or chunk_size >= n:
    return fn(*args)
  n_chunks = -(-n // chunk_size)
  pad = n_chunks * chunk_size - n
  padded = [jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a for a in args]
  out = jax.lax.map(lambda c: fn(*c),
                    [a.reshape(n_chunks, chunk_size, *a.shape[1:]) for a in padded])
  return jax.tree_util.tree_map(lambda o: o.reshape(n_chunks * chunk_size, *o.shape[2:])[:n], out)


def evaluate_masked(logits_fn, x: Array, z: Array, target, *, baseline,
                    segments: Optional[Array] = None, chunk_size: Optional[int] = None,
                    output: str = "log_prob") -> Array:
  """The score `output` of `target` for all masked inputs, in batched calls.

  The masked inputs are `apply_unit_mask(x, z_i, baseline)` for every row `z_i` of `z`.

  Args:
    logits_fn: `xb -> logits (B, K)` (or `(B,)` with `output="raw"`).
    x: one example.
    z: unit masks `(N, U)`.
    target: class index (int or traced int scalar). A concrete one outside `[0, K)` raises
      ValueError; a traced one outside `[0, K)` gives NaN.
    baseline: broadcastable to `x`.
    segments: optional `(H, W)` unit ids.
    chunk_size: if set and smaller than `N`, evaluates `chunk_size` rows at a time with
      `jax.lax.map`, so memory stays bounded for large `N`.
    output: one of `predictor.OUTPUTS`: "log_prob" (log-softmax probability of `target`), "prob"
      (its softmax probability), "logit" (its pre-softmax logit) or "raw" (the model's output
      column `target` as it is; regression or probability models); or "logits" (all `K` logits,
      checked like the others).

  Returns:
    The scores of `target`, shape `(N,)`; `(N, K)` for "logits".
  """

  check_output(output, (*OUTPUTS, "logits"))
  check_chunk_size(chunk_size)

  def run(zc):
    xm = apply_unit_mask(x, zc, baseline, segments=segments)
    if output == "logits":
      out = model_output(logits_fn, xm, output="logit")
      check_target(target, out.shape[-1])
      return out
    return target_scores(logits_fn, xm, target, output=output)

  if z.ndim != 2:
    raise ValueError(f"`z` must be a batch of unit masks (N, U); got shape {tuple(z.shape)}.")
  return map_chunks(run, (z,), chunk_size)
