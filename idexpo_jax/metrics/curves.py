"""Hard insertion/deletion curves and their AUC scores (evaluation).

Units are sorted by attribution, descending, with ties broken by unit index (stable sort).
Insertion keeps the top `k` units of `x` and sets the rest to the baseline; deletion sets the top
`k` units to the baseline. `k = 0, step, 2·step, …` up to `floor(fraction·U)`. The score is the
softmax probability of `target` (Petsiuk et al., RISE, BMVC 2018; the ID-ExpO protocol of
Yoshikawa & Iwata, AISTATS 2024), or another `output` of `predictor.OUTPUTS` ("raw" for a
regression model).

Invalid values known only inside `jit` give NaN curves: a traced `target` outside `[0, K)`, or a
traced attribution with a NaN (a concrete one raises ValueError).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax.core import masking
from idexpo_jax.core.checks import check_fraction, check_int, is_traced, poison
from idexpo_jax.core.predictor import as_logits_fn, check_batch_targets, promote_input

Array = jax.Array


def flat_attribution(x: Array, attribution: Array, segments: Optional[Array]) -> tuple[Array, int]:
  """Validates `attribution` against the units of `x` and returns it flattened to `(U,)`.

  A concrete attribution with a NaN raises ValueError (its ranking would be arbitrary); callers
  poison their output with `nan_attribution` for a traced one.
  """
  masking.check_units(x, segments)
  n_units = masking.num_units(x.shape, segments)
  attribution = jnp.asarray(attribution)
  if attribution.size != n_units:
    raise ValueError(f"`attribution` must have one value per unit (U={n_units} for x "
                     f"{tuple(x.shape)}{' with segments' if segments is not None else ''}); "
                     f"got shape {tuple(attribution.shape)}.")
  if not is_traced(attribution) and np.isnan(np.asarray(attribution, np.float64)).any():
    raise ValueError(f"`attribution` has {int(np.isnan(np.asarray(attribution, np.float64)).sum())}"
                     f" NaN value(s): units cannot be ranked.")
  return attribution.reshape(-1), n_units


def nan_attribution(phi: Array, value: Array) -> Array:
  """`value` where the traced attribution `phi` has no NaN, else NaN (concrete: `value`)."""
  if not is_traced(phi):
    return value
  return poison(value, ~jnp.isnan(phi).any())


def default_step(n_units: int, n_steps: int) -> int:
  """`max(U // n_steps, 1)`: units per point of a curve with `n_steps` points over all units."""
  return max(n_units // check_int(n_steps, "n_steps", minimum=1), 1)


def curve_steps(n_units: int, step: int, fraction: float) -> np.ndarray:
  """The numbers of perturbed units `k = 0, step, …, floor(fraction·U)` (static)."""
  fraction = check_fraction(fraction, "fraction")
  step = check_int(step, "step", minimum=1)
  ks = np.arange(0, int(np.floor(fraction * n_units)) + 1, step)
  if len(ks) < 2:
    raise ValueError(f"`step`={step} exceeds `fraction`·U = {fraction}·{n_units}: the curve would "
                     f"have no point besides k = 0.")
  return ks


def insertion_deletion_curves(logits_fn, x: Array, attribution: Array, target, *, baseline,
                              segments: Optional[Array] = None, n_steps: int = 16,
                              step: Optional[int] = None, fraction: float = 0.5,
                              chunk_size: Optional[int] = None, output: str = "prob"):
  """Hard insertion and deletion curves for one example.

  Args:
    logits_fn: `xb -> logits (B, K)` (or a `Predictor`).
    x: one example without batch axis (integer `x` is promoted to the model's float dtype).
    attribution: one score per unit (`(U,)`, or `(H, W)` for pixel units), without NaN.
    target: the class whose score is taken, in `[0, K)` (a traced one outside gives NaN).
    baseline: broadcastable to `x`; the value of removed units.
    segments: optional `(H, W)` int map of unit ids (pixels or features otherwise).
    n_steps: points per full curve, `step = max(U // n_steps, 1)` (ignored if `step` is given;
      16 is the ID-ExpO protocol's 64 px of a 32×32 image).
    step: units added/removed per point.
    fraction: the largest perturbed fraction of units (0.5: the ID-ExpO protocol; 1.0: RISE).
    chunk_size: optional bound on the number of inputs per model call.
    output: the score, one of `predictor.OUTPUTS` (default "prob", the softmax probability).

  Returns:
    `(fractions, ins_curve, del_curve)`, each of shape `(P,)` with `fractions[0] = 0`.
  """
  x = promote_input(logits_fn, x)
  phi, n_units = flat_attribution(x, attribution, segments)
  ks = curve_steps(n_units, default_step(n_units, n_steps) if step is None else step, fraction)
  order = jnp.argsort(-jax.lax.stop_gradient(phi), stable=True)
  rank = jnp.zeros((n_units,), jnp.int32).at[order].set(jnp.arange(n_units, dtype=jnp.int32))
  top = (rank[None, :] < jnp.asarray(ks, jnp.int32)[:, None]).astype(x.dtype)  # (P, U)
  z = jnp.concatenate([top, 1.0 - top], axis=0)
  probs = masking.evaluate_masked(as_logits_fn(logits_fn), x, z, target, baseline=baseline,
                                  segments=segments, chunk_size=chunk_size, output=output)
  probs = nan_attribution(phi, probs)
  n_points = len(ks)
  fractions = jnp.asarray(ks / n_units, dtype=x.dtype)
  return fractions, probs[:n_points], probs[n_points:]


def curve_auc(fractions: Array, curve: Array, *, auc: str = "mean") -> Array:
  """Scores a curve: "mean" of the points without `k = 0` (ID-ExpO) or normalised "trapezoid".

  "trapezoid" integrates over the perturbed fraction with both ends (RISE) and divides by the
  covered range, so `fraction = 1` gives the plain area on [0, 1].
  """
  if jnp.shape(fractions)[-1:] != jnp.shape(curve)[-1:] or jnp.shape(curve)[-1:] < (2,):
    raise ValueError(f"`curve` needs at least 2 points, as many as `fractions`; got curve "
                     f"{tuple(jnp.shape(curve))}, fractions {tuple(jnp.shape(fractions))}.")
  if auc == "mean":
    return curve[..., 1:].mean(-1)
  if auc == "trapezoid":
    width = fractions[..., 1:] - fractions[..., :-1]
    area = (0.5 * (curve[..., 1:] + curve[..., :-1]) * width).sum(-1)
    return area / (fractions[..., -1] - fractions[..., 0])
  raise ValueError(f"`auc` must be 'mean' or 'trapezoid'; got {auc!r}.")


def insertion_deletion_scores(logits_fn, x: Array, attribution: Array, target, *, baseline,
                              segments: Optional[Array] = None, n_steps: int = 16,
                              step: Optional[int] = None, fraction: float = 0.5,
                              auc: str = "mean", chunk_size: Optional[int] = None,
                              output: str = "prob"):
  """Insertion (higher is better) and deletion (lower is better) scores of one example.

  See `insertion_deletion_curves` for the arguments and `curve_auc` for the conventions.

  Returns:
    `(ins, del)` scalars.
  """
  fractions, ins_c, del_c = insertion_deletion_curves(
      logits_fn, x, attribution, target, baseline=baseline, segments=segments, n_steps=n_steps,
      step=step, fraction=fraction, chunk_size=chunk_size, output=output)
  return curve_auc(fractions, ins_c, auc=auc), curve_auc(fractions, del_c, auc=auc)


def batch_insertion_deletion(logits_fn, xb: Array, attributions: Array, targets: Array, *,
                             baseline, segments: Optional[Array] = None, n_steps: int = 16,
                             step: Optional[int] = None, fraction: float = 0.5,
                             chunk_size: Optional[int] = None, output: str = "prob"):
  """Vmapped `insertion_deletion_curves` over a batch: `(fractions (P,), ins (B, P), del (B, P))`.

  Concrete `targets` outside `[0, K)` raise ValueError; traced ones give NaN rows.
  """
  xb = promote_input(logits_fn, xb, batched=True)
  attributions = jnp.asarray(attributions)
  if attributions.shape[:1] != xb.shape[:1] or jnp.shape(targets) != xb.shape[:1]:
    raise ValueError(f"`xb`, `attributions` and `targets` need the same batch size, targets of "
                     f"shape (B,); got xb {tuple(xb.shape)}, attributions "
                     f"{tuple(attributions.shape)}, targets {tuple(jnp.shape(targets))}.")
  targets = check_batch_targets(logits_fn, xb, targets)
  if not is_traced(attributions) and np.isnan(np.asarray(attributions, np.float64)).any():
    raise ValueError("`attributions` has NaN values: units cannot be ranked.")
  fn = lambda x, a, t: insertion_deletion_curves(
      logits_fn, x, a, t, baseline=baseline, segments=segments, n_steps=n_steps, step=step,
      fraction=fraction, chunk_size=chunk_size, output=output)
  fr, ins_c, del_c = jax.vmap(fn)(xb, attributions, targets)
  return fr[0], ins_c, del_c
