"""Evaluation: test accuracy and hard insertion/deletion of an explainer's explanations.

Protocol (Yoshikawa & Iwata, AISTATS 2024): the target is the class predicted at the clean input,
and the same explainer (with the same target) explains and is scored. Units are sorted by
attribution and `step = U // n_steps` units are inserted/deleted per point (the reference's 64 px
on 32×32 images is `n_steps = 16`), scored by the softmax probability of the target
(`ij.InsertionDeletion`). One full curve (`k = 0, step, …, U`) per example gives both conventions:

* `ins`, `del`: the ID-ExpO convention, the mean of the points `0 < k ≤ fraction·U` (`k = 0`
  excluded; `fraction = 0.5`);
* `ins_trapezoid`, `del_trapezoid`: the RISE convention (Petsiuk, Das & Saenko, BMVC 2018), the
  trapezoid rule over the whole curve on the perturbed fraction `[0, 1]`, both ends included.

Keys: example `i` of a split is explained with `jax.random.split(key, N)[i]`, `N` the size of the
split, so the numbers do not depend on the evaluation batch size.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import idexpo_jax as ij
from idexpo_jax.metrics.curves import curve_auc

SCORES = ("ins", "del", "ins_trapezoid", "del_trapezoid")


class Evaluation(NamedTuple):
  """Results on one split.

  Attributes:
    summary: floats `accuracy` and the means of `SCORES`.
    per_example: NumPy arrays `(N,)`: `label`, `pred`, `correct` and every score of `SCORES`.
    fractions: `(P,)` perturbed fractions of the full curves.
    ins_curves, del_curves: `(N, P)` curves.
  """

  summary: dict
  per_example: dict
  fractions: np.ndarray
  ins_curves: np.ndarray
  del_curves: np.ndarray


class Evaluator(NamedTuple):
  """`evaluate(params, split, key) -> Evaluation`; `explain(params, xb, key) -> (pred, φ)`."""

  evaluate: Callable
  explain: Callable


def pixel_maps(explainer: ij.Explainer, xb, phi):
  """Explanations of pixel units of images `(B, H, W, C)` as maps `(B, H, W)`; others as given."""
  if explainer.segments is None and np.ndim(xb) == 4:
    return phi.reshape(phi.shape[0], *np.shape(xb)[1:3])
  return phi


def make_evaluator(model, explainer: ij.Explainer, *, n_steps: int = 16, fraction: float = 0.5,
                   batch_size: int = 128) -> Evaluator:
  """Builds the jitted evaluation of `model` (a `training.Model`) for one explainer.

  Args:
    model: the split model; `evaluate`/`explain` take its parameters.
    explainer: the explainer object; it explains, and its units and baseline are scored.
    n_steps: points of the curve per full range (`step = U // n_steps` units).
    fraction: the range of the ID-ExpO "mean" convention.
    batch_size: examples per compiled call (the last batch is padded, so one compilation).
  """
  curves = ij.InsertionDeletion(explainer, n_steps=n_steps, fraction=1.0).curves

  @jax.jit
  def eval_batch(params, xb, keys):
    predictor = model.predictor(params)
    pred = predictor(xb).argmax(-1)
    # The keys of these examples in the whole split (module docstring), hence no `ij.explain`.
    phi = jax.vmap(lambda x, t, k: explainer(predictor, x, t, k))(xb, pred, keys)
    fr, ins_c, del_c = curves(predictor, xb, phi, pred)
    return pred, fr, ins_c, del_c

  def evaluate(params, split, key) -> Evaluation:
    n = len(split.y)
    keys = jax.random.split(key, n)
    out = []
    for i in range(0, n, batch_size):
      xb, kb = split.x[i:i + batch_size], keys[i:i + batch_size]
      pad = batch_size - len(xb)
      if pad:
        xb = np.concatenate([xb, np.repeat(xb[-1:], pad, axis=0)])
        kb = jnp.concatenate([kb, jnp.repeat(kb[-1:], pad, axis=0)])
      pred, fr, ins_c, del_c = jax.device_get(eval_batch(params, jnp.asarray(xb), kb))
      out.append((pred[:len(xb) - pad], ins_c[:len(xb) - pad], del_c[:len(xb) - pad]))
      fractions = np.asarray(fr)
    pred = np.concatenate([o[0] for o in out])
    ins_c = np.concatenate([o[1] for o in out])
    del_c = np.concatenate([o[2] for o in out])
    n_mean = int(np.searchsorted(fractions, fraction, side="right"))  # points with k ≤ fraction·U
    per = {"label": np.asarray(split.y), "pred": pred,
           "correct": (pred == np.asarray(split.y)).astype(np.float32),
           "ins": np.asarray(curve_auc(fractions[:n_mean], ins_c[:, :n_mean], auc="mean")),
           "del": np.asarray(curve_auc(fractions[:n_mean], del_c[:, :n_mean], auc="mean")),
           "ins_trapezoid": np.asarray(curve_auc(fractions, ins_c, auc="trapezoid")),
           "del_trapezoid": np.asarray(curve_auc(fractions, del_c, auc="trapezoid"))}
    summary = {"accuracy": float(per["correct"].mean()),
               **{name: float(per[name].mean()) for name in SCORES}}
    return Evaluation(summary, per, fractions, ins_c, del_c)

  predict = jax.jit(lambda params, xb: model.predictor(params)(xb).argmax(-1))

  def explain(params, xb, key):
    """`(pred, φ)` of a batch, example `i` with key `split(key, B)[i]` (`ij.explain`); pixel
    units of images as maps `(B, H, W)`."""
    xb = jnp.asarray(xb)
    pred = predict(params, xb)
    phi = ij.explain(explainer, model.predictor(params), xb, key, targets=pred)
    return jax.device_get((pred, pixel_maps(explainer, xb, phi)))

  return Evaluator(evaluate, explain)


def limit_split(split, n: int):
  """The first `n` examples of a `Split` (all of them when `n` is 0 or None)."""
  return split if not n else type(split)(split.x[:n], split.y[:n])


def selection_score(summary: dict, *, eta: float = 2.0, accuracy_floor: float = 0.0) -> float:
  """Model selection `η·Acc + Ins + (1 − Del)` (Yoshikawa & Iwata, AISTATS 2024); `-inf` below
  the accuracy floor."""
  if summary["accuracy"] < accuracy_floor:
    return float("-inf")
  return eta * summary["accuracy"] + summary["ins"] + 1.0 - summary["del"]
