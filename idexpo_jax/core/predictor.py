"""The `Predictor` contract shared by every explainer, metric and regulariser.

Library code never touches a neural-network module: it receives pure functions on batches, so the
same code serves Flax NNX, Linen, Equinox or a hand-written function.

Output vocabulary (`output=`), one meaning per word across the library. Words for the score of
one class `target`, one value per row (`OUTPUTS`):

* `"prob"`: the softmax probability `p_target` (needs `K >= 2` logits);
* `"log_prob"`: `log p_target` (log-softmax; needs `K >= 2`);
* `"logit"`: the pre-softmax score `l_target` of logits `(B, K)`;
* `"raw"`: the model's output as it is, column `target` of `(B, K)`; a `(B,)` output counts as one
  column, so a regression model (or a model that already returns probabilities) is explained with
  `target=0` (or the column of the probability wanted).

Words for every class at once, `(B, K)` per batch (`VECTOR_OUTPUTS`):

* `"probs"`: the softmax probabilities of all `K >= 2` classes;
* `"logits"`: all `K` logits.

Explainers and metrics of one class's score (attributions, curves, LIME and KernelSHAP
attributions) take `OUTPUTS` and a `target`. The local affine functions of ExpO (Plumb et al.,
NeurIPS 2020; `explainers.local_linear`, `metrics.fidelity`, `regularisers.expo`) fit a model's
values rather than score a class, so they take every word, and a `target` that may be `None`:
`"raw"` without a target fits every column as it is (a regression model's one value, their
default); `"prob"`, `"log_prob"` or `"logit"` without a target score the class the model predicts
at the explained (or regularised) point.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from idexpo_jax.core.checks import check_target, is_traced, poison, valid_target

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


def as_logits_fn(model) -> LogitsFn:
  """A plain `xb -> logits` function for a `Predictor`, a module or a logits function."""
  if isinstance(model, Predictor):
    return lambda xb: model.head(model.features(xb))
  if not callable(model):
    raise TypeError(f"`model` must be callable (a module, a Predictor or a logits function); got "
                    f"{type(model).__name__}.")
  return model


def as_predictor(model) -> Predictor:
  """The `Predictor` of any model kind the library accepts.

  * a `Predictor` is returned as it is;
  * an object with callable `features` and `head` attributes (a Flax NNX module of
    `idexpo_jax.models`, an `adapters` wrapper, an Equinox module) becomes
    `Predictor(model.features, model.head)`;
  * any other callable (a logits function `xb -> (B, K)`) gets identity features, which serves
    every explainer except Grad-CAM (it needs spatial feature maps and raises on these).
  """
  if isinstance(model, Predictor):
    return model
  features, head = getattr(model, "features", None), getattr(model, "head", None)
  if callable(features) and callable(head):
    return Predictor(features=features, head=head)
  if not callable(model):
    raise TypeError(f"`model` must be a module with `features`/`head`, a Predictor or a logits "
                    f"function; got {type(model).__name__}.")
  return Predictor(features=_identity, head=model)


def has_own_features(predictor) -> bool:
  """True for a `Predictor` with its own `features` (not a bare logits function `as_predictor`
  wrapped with identity features)."""
  return isinstance(predictor, Predictor) and predictor.features is not _identity


def target_log_prob(logits_fn: LogitsFn, xb: Array, target) -> Array:
  """`log p_target(x)` for every row of `xb` (log-softmax of the logits), shape `(B,)`.

  A concrete `target` outside `[0, K)` raises ValueError; a traced one gives NaN.
  """
  return target_scores(logits_fn, xb, target, output="log_prob")


def target_logit(logits_fn: LogitsFn, xb: Array, target) -> Array:
  """The logit (pre-softmax score) of `target` for every row of `xb`, shape `(B,)`."""
  return target_scores(logits_fn, xb, target, output="logit")


def target_prob(logits_fn: LogitsFn, xb: Array, target) -> Array:
  """Softmax probability of `target` for every row of `xb`, shape `(B,)`."""
  return target_scores(logits_fn, xb, target, output="prob")


# --- Outputs, targets and input dtypes: the rules every explainer, metric and regulariser shares.

OUTPUTS = ("prob", "log_prob", "logit", "raw")
"""The scores of one class `target`, one value per row (meanings: the module docstring)."""

VECTOR_OUTPUTS = ("probs", "logits")
"""Every class at once, `(B, K)`: all softmax probabilities, all logits (module docstring)."""


def check_output(output: str, outputs: tuple = OUTPUTS) -> None:
  """Raises ValueError unless `output` is one of `outputs` (default: the one-class `OUTPUTS`).

  A word of the vocabulary that the caller does not take (e.g. `"probs"` where one class is
  scored) gets a message saying what it means.
  """
  if output in outputs:
    return
  why = ""
  if output in VECTOR_OUTPUTS:
    why = (f" ({output!r} gives every class at once; this function scores one class `target`: "
           f"use {output[:-1]!r})")
  raise ValueError(f"`output` must be one of {tuple(outputs)}; got {output!r}{why}.")


def model_output(logits_fn: LogitsFn, xb: Array, *, output: str = "logit") -> Array:
  """`logits_fn(xb)` as `(B, K)` after checking it against `output` (`OUTPUTS`, `VECTOR_OUTPUTS`).

  A `(B,)` output is accepted for `output="raw"` only (as one column). `"prob"`, `"log_prob"` and
  `"probs"` need `K >= 2` logits: a softmax over one output is the constant 1.
  """
  check_output(output, OUTPUTS + VECTOR_OUTPUTS)
  out = as_logits_fn(logits_fn)(xb)
  one_output = (out.ndim == 1 and out.shape[0] == xb.shape[0]) or (out.ndim == 2 and
                                                                    out.shape[1] == 1)
  if output in ("prob", "log_prob", "probs") and one_output:
    raise ValueError(f"`logits_fn` returns {out.shape}, one output per row: `output={output!r}` "
                     f"takes a softmax over the model's outputs, which needs K >= 2 logits (a "
                     f"softmax of one output is the constant 1). For a regression model, or a "
                     f"model that already returns probabilities, use output='raw'.")
  if output == "raw" and out.ndim == 1:
    out = out[:, None]
  if out.ndim != 2 or out.shape[0] != xb.shape[0]:
    raise ValueError(f"`logits_fn` must return logits of shape (B, K) for a batch of "
                     f"B = {xb.shape[0]} (or (B,) with output='raw'); got {out.shape}.")
  return out


def _take_target(out: Array, target: Array) -> Array:
  if target.ndim == 0:
    return jnp.take(out, target, axis=-1)
  return jnp.take_along_axis(out, target[:, None].astype(jnp.int32), axis=1)[:, 0]


def select_output(out: Array, target: Optional[Array], output: str) -> Array:
  """Scores `output` from outputs `out (B, K)` checked by `model_output`.

  `target` is a scalar (one class for every row) or `(B,)` (one per row); traced targets out of
  `[0, K)` give NaN. The words of every class (`VECTOR_OUTPUTS`), and `"raw"` with
  `target=None`, return `(B, K)` and take no target.
  """
  if output in VECTOR_OUTPUTS or target is None:
    if target is not None:
      raise ValueError(f"`output={output!r}` gives every class at once and takes no `target` "
                       f"(use {output[:-1]!r} for the score of one class).")
    if output == "probs":
      return jax.nn.softmax(out, axis=-1)
    if output not in ("raw", "logits"):
      raise ValueError(f"`output={output!r}` scores one class: it needs a `target`.")
    return out
  if output == "prob":  # exp(l_t − m) / Σ_k exp(l_k − m): no log (log_softmax then exp costs
    # ~1.5× more on XLA's CPU backend when fused after a small model, `benchmarks.tabular`)
    m = jax.lax.stop_gradient(jnp.max(out, axis=-1))
    top = _take_target(out, target) - m
    scores = jnp.where(jnp.isnan(top), top,
                       jnp.exp(top) / jnp.sum(jnp.exp(out - m[..., None]), axis=-1))
  else:
    if output == "log_prob":
      out = jax.nn.log_softmax(out, axis=-1)
    scores = _take_target(out, target)
  if is_traced(target):
    scores = poison(scores, valid_target(target, out.shape[-1]))
  return scores


def target_scores(logits_fn: LogitsFn, xb: Array, target, *, output: str = "log_prob") -> Array:
  """The score `output` (`OUTPUTS`) of class `target` for every row of `xb`, shape `(B,)`.

  A concrete `target` outside `[0, K)` raises ValueError; a traced one gives NaN.
  """
  check_output(output)
  out = model_output(logits_fn, xb, output=output)
  target = check_target(target, out.shape[-1])
  return select_output(out, target, output)


def num_outputs(logits_fn: LogitsFn, xb: Array) -> int:
  """`K` of the model's `(B, K)` output (1 for `(B,)`), from shapes only (`jax.eval_shape`).

  Raises ValueError for an output of another rank.
  """
  out = jax.eval_shape(as_logits_fn(logits_fn), jax.ShapeDtypeStruct(xb.shape, xb.dtype))
  if len(out.shape) not in (1, 2):
    raise ValueError(f"`model` must map a batch (B, ...) to logits (B, K) or values (B,); got "
                     f"output shape {tuple(out.shape)} for inputs of shape {tuple(xb.shape)}.")
  return 1 if len(out.shape) == 1 else int(out.shape[-1])


def check_batch_targets(logits_fn: LogitsFn, xb: Array, targets, *, name: str = "targets"
                        ) -> Array:
  """`check_target` for one target per row of a batch, with `K` read from the model's shapes."""
  if xb.ndim < 1 or xb.shape[0] == 0:
    raise ValueError(f"`xb` must be a non-empty batch (B, ...); got shape {tuple(xb.shape)}.")
  targets = check_target(targets, None, name=name, shape=(xb.shape[0],))
  if is_traced(targets):
    return targets
  return check_target(targets, num_outputs(logits_fn, xb), name=name, shape=(xb.shape[0],))


def promote_input(logits_fn: LogitsFn, x: Array, *, batched: bool = False) -> Array:
  """`x` as an array; integer or boolean `x` is cast to the float dtype of the model's output.

  The model is evaluated on shapes only (`jax.eval_shape`), on the integer input or, if it does not
  accept one, on the default float dtype. A model with a non-float output gives the default float
  dtype. Floating `x` is returned unchanged.
  """
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.inexact):
    return x
  shape = x.shape if batched else (1, *x.shape)
  fn = as_logits_fn(logits_fn)
  default = jnp.result_type(float)
  try:
    out = jax.eval_shape(fn, jax.ShapeDtypeStruct(shape, x.dtype))
  except Exception:  # pylint: disable=broad-except  # e.g. strict promotion of int @ float
    out = jax.eval_shape(fn, jax.ShapeDtypeStruct(shape, default))
  dtype = out.dtype if jnp.issubdtype(out.dtype, jnp.floating) else default
  return x.astype(dtype)
