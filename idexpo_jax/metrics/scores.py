"""Hard insertion/deletion scores of a batch, configured once (`InsertionDeletion`).

The ID-ExpO evaluation protocol (Yoshikawa & Iwata, AISTATS 2024): units sorted by attribution,
`step = U // n_steps` units inserted/deleted per point (the reference's 64 px of 32×32 images is
`n_steps = 16`), the softmax probability of the target (the class predicted at the clean input),
and the "mean" of the curve points `0 < k ≤ fraction·U` with `fraction = 0.5`. The RISE
convention (Petsiuk, Das & Saenko, BMVC 2018) is `auc="trapezoid", fraction=1.0`. The curves are
`curves.insertion_deletion_curves`, vmapped over the batch and jitted once per configuration.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

from idexpo_jax.core import masking
from idexpo_jax.core.config import Config, config
from idexpo_jax.core.checks import check_fraction, check_int
from idexpo_jax.core.jit import ArrayKey, merge_model, split_model
from idexpo_jax.core.predictor import as_logits_fn, as_predictor, check_output, num_outputs
from idexpo_jax.explainers.base import resolve_units
from idexpo_jax.explainers.batch import as_batch, check_targets
from idexpo_jax.metrics.curves import batch_insertion_deletion, curve_auc, default_step

Array = jax.Array


class InsertionDeletionScores(NamedTuple):
  """Hard insertion (↑) and deletion (↓) scores of a batch.

  Attributes:
    insertion: per-example insertion scores `(B,)` (`(B, K)` for `targets="all"`), higher is
      more faithful.
    deletion: per-example deletion scores, the same shape, lower is more faithful.
    insertion_mean: the mean of `insertion` over the batch (per class for `"all"`).
    deletion_mean: the mean of `deletion` over the batch (per class for `"all"`).
  """

  insertion: Array
  deletion: Array
  insertion_mean: Array
  deletion_mean: Array


@config
class InsertionDeletion(Config):
  """Hard insertion/deletion of a batch of explanations, with its protocol stated once.

  `explainer` gives the units (`segments`) and the `baseline` (the value of removed units);
  `segments=`/`baseline=` given here are for explainers that carry none (a plain function) and
  must agree with the explainer's. Defaults: the ID-ExpO protocol (module docstring).

  Example::

    lime = ij.Lime(segments=ij.grid_segments(32, 32, 4), baseline=0.0)
    phi = ij.explain(lime, model, xb, key)                          # predicted classes
    scores = ij.InsertionDeletion(lime)(model, xb, phi)             # .insertion (B,), ...
    rise = ij.InsertionDeletion(lime, auc="trapezoid", fraction=1.0)

  Attributes:
    explainer: the explainer whose explanations are scored (or None with `baseline` given).
    baseline: the value of removed units (`None`: the explainer's).
    segments: `(H, W)` unit ids (`None`: the explainer's, if any).
    n_steps: points per full curve, `step = max(U // n_steps, 1)` (ignored if `step` is given);
      16 is the ID-ExpO protocol (64 pixels per point on 32×32 images).
    step: units inserted/deleted per point (`None`: from `n_steps`).
    fraction: the largest perturbed fraction of units, in (0, 1]; 0.5 in the ID-ExpO protocol,
      1.0 in RISE's.
    auc: "mean" (the mean of the curve points without `k = 0`, ID-ExpO) or "trapezoid" (the
      trapezoid area under the whole curve, RISE; `curves.curve_auc`).
    output: the score of the target, one of `predictor.OUTPUTS` ("prob": softmax probability).
    chunk_size: optional bound on the number of inputs per model call.
  """

  explainer: Any = None
  _: dataclasses.KW_ONLY
  baseline: Any = None
  segments: Any = None
  n_steps: int = 16
  step: Optional[int] = None
  fraction: float = 0.5
  auc: str = "mean"
  output: str = "prob"
  chunk_size: Optional[int] = None

  def __post_init__(self):
    super().__post_init__()
    if self.auc not in ("mean", "trapezoid"):
      raise ValueError(f"`auc` must be 'mean' or 'trapezoid'; got {self.auc!r}.")
    object.__setattr__(self, "n_steps", check_int(self.n_steps, "n_steps", minimum=1))
    object.__setattr__(self, "step", check_int(self.step, "step", minimum=1, none_ok=True))
    object.__setattr__(self, "fraction", check_fraction(self.fraction, "fraction"))
    check_output(self.output)
    masking.check_chunk_size(self.chunk_size)

  def units(self) -> tuple[Any, Any]:
    """`(segments, baseline)` scored: this object's, else the explainer's."""
    return resolve_units(self.explainer, self.segments, self.baseline,
                         where="InsertionDeletion")

  def curves(self, model, xb: Array, attributions: Array, targets: Union[None, str, Array] = None):
    """`(fractions (P,), ins (B, P), del (B, P))`: the hard curves (`(B, K, P)` for "all")."""
    return self._run(model, xb, attributions, targets, curves_only=True)

  def __call__(self, model, xb: Array, attributions: Array,
               targets: Union[None, str, Array] = None) -> InsertionDeletionScores:
    """Scores of a batch of explanations.

    Args:
      model: an NNX module, an `adapters` wrapper, a `Predictor` or a logits function.
      xb: the examples `(B, ...)`.
      attributions: `(B, d)` (or `(B, K, d)` with `targets="all"`), e.g. from `explain`.
      targets: `None` scores the predicted class, an int array `(B,)` the given classes, `"all"`
        class `c` with `attributions[:, c]`.

    Returns:
      `InsertionDeletionScores` with per-example scores and their batch means.
    """
    return self._run(model, xb, attributions, targets, curves_only=False)

  def _run(self, model, xb, attributions, targets, *, curves_only):
    xb = as_batch(xb)
    segments, baseline = self.units()
    n_classes = num_outputs(model, xb)
    mode = check_targets(targets, xb, n_classes)
    attributions = jnp.asarray(attributions)
    want = (xb.shape[0], n_classes) if mode == "all" else (xb.shape[0],)
    if attributions.shape[:len(want)] != want or attributions.ndim != len(want) + 1:
      raise ValueError(f"`attributions` must have shape {want + ('d',)} for targets="
                       f"{'all' if mode == 'all' else 'None or (B,)'}; got "
                       f"{tuple(attributions.shape)}.")
    n_units = masking.num_units(xb.shape[1:], segments)
    step = default_step(n_units, self.n_steps) if self.step is None else self.step
    masking.check_baseline(xb[0], baseline)
    t = (jnp.zeros(xb.shape[:1], jnp.int32) if mode != "given"
         else jnp.asarray(targets).astype(jnp.int32))
    arrays, static = split_model(model)
    seg_key = None if segments is None else ArrayKey(segments)
    return _scores(arrays, static, xb, attributions, t, jnp.asarray(baseline, xb.dtype),
                   segments_key=seg_key, mode=mode, step=int(step), fraction=float(self.fraction),
                   auc=self.auc, output=self.output, chunk_size=self.chunk_size,
                   curves_only=curves_only)


@functools.partial(jax.jit, static_argnames=("static", "segments_key", "mode", "step", "fraction",
                                             "auc", "output", "chunk_size", "curves_only"))
def _scores(arrays, static, xb, attributions, targets, baseline, *, segments_key, mode, step,
            fraction, auc, output, chunk_size, curves_only):
  model = as_predictor(merge_model(arrays, static))
  segments = None if segments_key is None else segments_key.value
  if mode == "predicted":
    targets = jnp.argmax(as_logits_fn(model)(xb), axis=-1).astype(jnp.int32)

  def curves(phi, t):
    return batch_insertion_deletion(model, xb, phi, t, baseline=baseline, segments=segments,
                                    step=step, fraction=fraction, chunk_size=chunk_size,
                                    output=output)

  if mode == "all":
    k = attributions.shape[1]
    fr, ins_c, del_c = jax.vmap(curves, in_axes=(1, 0), out_axes=(None, 1, 1))(
        attributions, jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[:, None], (k, xb.shape[0])))
  else:
    fr, ins_c, del_c = curves(attributions, targets)
  if curves_only:
    return fr, ins_c, del_c
  ins, dele = curve_auc(fr, ins_c, auc=auc), curve_auc(fr, del_c, auc=auc)
  return InsertionDeletionScores(ins, dele, ins.mean(0), dele.mean(0))
