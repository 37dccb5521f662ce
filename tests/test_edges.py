"""Edge cases of the argument checks across the public API, the data loaders and the driver configs.

Each case states one specific outcome, checked against something independent of the code under
test:

* `raises(arg)`: a ValueError (or the given type) whose message names the argument `arg`;
* `nan()`: an invalid value known only inside `jit` gives an all-NaN output;
* `equals(reference, tol)`: the value of a closed form (a linear model's gradient, `v(1) − v(0)`
  for one unit, NumPy's Gauss–Legendre nodes, an explicit array) or, for "an integral scalar of
  another type is accepted", the value of the same call with a Python `int`/`float`.

The models are tiny (linear logits on 4×4 images with 2×2-cell segments, d = 4 units, and a
linear tabular model with 4 features), so the file runs in well under a minute on one core.
`outcome(case)` describes what a case returned; docs/robustness.md tabulates it before and after
the checks were unified.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import idexpo_jax as ij
from idexpo_jax.data import rrr_data, sklearn_data, tfds_data
from idexpo_jax.explainers import gradients
from idexpo_jax.explainers.kernel_shap import kernel_shap
from idexpo_jax.explainers.lime import lime
from idexpo_jax.regularisers import rrr
from idexpo_jax.training.loop import epoch_batch_fn

K = 3
_RNG = np.random.default_rng(1)
W = jnp.asarray(_RNG.normal(size=(16, K)), jnp.float32)
WT = jnp.asarray(_RNG.normal(size=(4, K)), jnp.float32)
W1 = jnp.asarray(_RNG.normal(size=(1, K)), jnp.float32)
X = jnp.asarray(_RNG.normal(size=(4, 4, 1)), jnp.float32)
XT = jnp.asarray(_RNG.normal(size=(4,)), jnp.float32)
PHI = jnp.asarray(_RNG.normal(size=(4,)), jnp.float32)
SEG = ij.grid_segments(4, 4, 2)
KEY = jax.random.PRNGKey(0)
BF16, F16 = jnp.bfloat16, jnp.float16


def logits(xb):
  return xb.reshape(xb.shape[0], -1).astype(jnp.float32) @ W


def tab(xb):
  return xb.astype(jnp.float32) @ WT


def one_feature(xb):  # a tabular model of one feature: one unit
  return xb.astype(jnp.float32) @ W1


class Case(NamedTuple):
  name: str
  thunk: Callable[[], Any]
  expect: tuple  # ("raises", exception, arg[, "plain"]) | ("nan",) | ("equals", reference, tol)


def raises(arg: str, exc=ValueError) -> tuple:
  return ("raises", exc, arg)


def nan() -> tuple:
  return ("nan",)


def equals(reference: Callable[[], Any], tol: float = 0.0) -> tuple:
  return ("equals", reference, tol)


def _leaves(out) -> list:
  """The leaves of an output as NumPy arrays (a list is one array; numbers as float64)."""
  leaves = [np.asarray(v) for v in jax.tree.leaves(out, is_leaf=lambda v: isinstance(v, list))]
  return [v.astype(np.float64) if v.dtype.kind in "biuf" else v for v in leaves]


def _same(out, ref, tol: float) -> bool:
  a, b = _leaves(out), _leaves(ref)
  if len(a) != len(b) or any(u.shape != v.shape for u, v in zip(a, b)):
    return False
  if tol == 0.0:
    return all(np.array_equal(u, v) for u, v in zip(a, b))
  return all(np.allclose(u, v, rtol=tol, atol=tol) for u, v in zip(a, b))


def outcome(case: Case) -> tuple[bool, str]:
  """`(as expected, what happened)` of one case."""
  kind = case.expect[0]
  try:
    out = case.thunk()
    out = jax.tree.map(np.asarray, out)
  except Exception as e:  # pylint: disable=broad-except
    msg = str(e).splitlines()[0] if str(e) else ""
    what = f"{type(e).__name__}: {msg[:100]}"
    if kind != "raises":
      return False, what
    exc, arg = case.expect[1:3]
    named = arg in str(e) if case.expect[3:] == ("plain",) else f"`{arg}`" in str(e)
    return isinstance(e, exc) and named, what
  leaves = [v for v in _leaves(out) if v.dtype.kind == "f"]
  has_nan = any(np.isnan(v).any() for v in leaves)
  if kind == "raises":
    return False, "returned NaN" if has_nan else "returned a value"
  if kind == "nan":
    if leaves and all(np.isnan(v).all() for v in leaves):
      return True, "NaN"
    return False, "returned a non-NaN value" + (" (zeros)" if all(
        np.all(v == 0) for v in leaves) else "")
  ok = _same(out, case.expect[1](), case.expect[2])
  return ok, "correct" if ok else "wrong value"


CASES: list[Case] = []


def add(name: str, thunk: Callable[[], Any], expect: tuple) -> None:
  CASES.append(Case(name, thunk, expect))


# --- Integer options: any integral scalar is accepted; bool and floats (even 16.0) are refused.


def _train_state():
  params = {"w": jnp.zeros((4, K), jnp.float32)}
  return ij.init_train_state(params, optax.sgd(0.1))


def _loss(params, batch, key):
  del key
  xb, yb = batch
  lp = jax.nn.log_softmax(jnp.asarray(xb) @ params["w"])
  return -jnp.take_along_axis(lp, jnp.asarray(yb)[:, None], axis=1).mean(), {}


_STEP = ij.make_train_step(_loss, optax.sgd(0.1), donate=False)
_SPLIT = sklearn_data.Split(np.asarray(_RNG.normal(size=(6, 4)), np.float32),
                            np.asarray([0, 1, 2, 0, 1, 2], np.int32))
_SOFT = dict(baseline=0.0, n_steps=4)


def _checks():
  return importlib.import_module("idexpo_jax.core.checks")


# name -> (call with the option's value, the argument named in errors, a valid int, reference of
# the valid int or None for "the same call with a Python int").
INT_OPTIONS: dict[str, tuple] = {
    "lime n_samples": (lambda v: lime(logits, X, 1, KEY, segments=SEG, baseline=0.0, n_samples=v),
                       "n_samples", 16, None),
    "kernel_shap n_samples": (lambda v: kernel_shap(logits, X, 1, KEY, segments=SEG, baseline=0.0,
                                                    n_samples=v), "n_samples", 14, None),
    "lime chunk_size": (lambda v: lime(logits, X, 1, KEY, segments=SEG, baseline=0.0, n_samples=8,
                                       chunk_size=v), "chunk_size", 4, None),
    "integrated_gradients n_steps": (
        lambda v: gradients.integrated_gradients(tab, XT, 1, baseline=0.0, n_steps=v,
                                                 output="logit"),
        "n_steps", 4, lambda: WT[:, 1] * XT),
    "smooth_grad n_samples": (
        lambda v: gradients.smooth_grad(tab, XT, 1, KEY, n_samples=v, output="logit"),
        "n_samples", 3, lambda: WT[:, 1]),
    "path_quadrature n_steps (gausslegendre)": (
        lambda v: gradients.path_quadrature(v, "gausslegendre"), "n_steps", 3,
        lambda: tuple(0.5 * np.asarray(t) + s for t, s in zip(np.polynomial.legendre.leggauss(3),
                                                               (0.5, 0.0)))),
    "insertion_deletion_curves step": (
        lambda v: ij.insertion_deletion_curves(logits, X, PHI, 1, segments=SEG, baseline=0.0,
                                               step=v, fraction=1.0), "step", 2, None),
    "soft_insertion_deletion n_steps": (
        lambda v: ij.soft_insertion_deletion(logits, X, PHI, 1, segments=SEG, baseline=0.0,
                                             n_steps=v), "n_steps", 4, None),
    "sensitivity_n n": (lambda v: ij.sensitivity_n(logits, X, PHI, 1, KEY, segments=SEG,
                                                   baseline=0.0, n=v, n_subsets=5), "n", 2, None),
    "sensitivity_n n_subsets": (lambda v: ij.sensitivity_n(logits, X, PHI, 1, KEY, segments=SEG,
                                                           baseline=0.0, n=2, n_subsets=v),
                                "n_subsets", 5, None),
    "grid_segments cell": (lambda v: ij.grid_segments(4, 4, v), "cell", 2,
                           lambda: np.asarray([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3],
                                               [2, 2, 3, 3]])),
    "grid_segments height": (lambda v: ij.grid_segments(v, 2, 2), "height", 2,
                             lambda: np.asarray([[0, 0], [0, 0]])),
    "InsertionDeletion n_steps": (lambda v: ij.InsertionDeletion(baseline=0.0, n_steps=v).n_steps,
                                  "n_steps", 4, lambda: 4),
    "InsertionDeletion step": (lambda v: ij.InsertionDeletion(baseline=0.0, step=v).step, "step",
                               2, lambda: 2),
    "IdExpo n_steps": (lambda v: ij.IdExpo(ij.InputGradients(baseline=0.0), n_steps=v).n_steps,
                       "n_steps", 4, lambda: 4),
    "epoch_batch_fn batch_size": (lambda v: epoch_batch_fn(_SPLIT, v)(0).x.shape, "batch_size", 2,
                                  lambda: (2, 4)),
    "fit num_steps": (lambda v: len(ij.fit(_STEP, _train_state(), epoch_batch_fn(_SPLIT, 3),
                                           num_steps=v, key=KEY)[1]), "num_steps", 2, lambda: 2),
    "find_another_explanation n_models": (
        lambda v: len(ij.find_another_explanation(lambda x, y, a: tab, _SPLIT.x, _SPLIT.y,
                                                  n_models=v).models), "n_models", 2, lambda: 2),
    "batches batch_size": (lambda v: len(list(sklearn_data.batches(_SPLIT, v))), "batch_size", 4,
                           lambda: 1),
    "make_toy_color n": (lambda v: rrr_data.make_toy_color(v).x.shape, "n", 4,
                         lambda: (4, 5, 5, 3)),
    "reduce_size image_size": (
        lambda v: tfds_data.reduce_size(np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1), v),
        "image_size", 2,
        lambda: np.asarray([[2.5, 4.5], [10.5, 12.5]], np.float32).reshape(1, 2, 2, 1)),
    "load_digits_images size": (lambda v: sklearn_data.load_digits_images(size=v).train.x.shape[1:],
                                "size", 16, lambda: (16, 16, 1)),
}
if importlib.util.find_spec("skimage") is not None:  # the optional `superpixels` extra
  INT_OPTIONS["superpixel_segments n_segments"] = (
      lambda v: ij.superpixel_segments(np.asarray(X.repeat(3, -1)), n_segments=v), "n_segments",
      4, None)
  add("superpixel_segments n_segments=0", lambda: ij.superpixel_segments(
      np.asarray(X.repeat(3, -1)), n_segments=0), raises("n_segments"))
  add("superpixel_segments compactness=-1", lambda: ij.superpixel_segments(
      np.asarray(X.repeat(3, -1)), compactness=-1.0), raises("compactness"))

for _name, (_call, _arg, _good, _ref) in INT_OPTIONS.items():
  _reference = _ref if _ref is not None else (lambda c=_call, g=_good: c(g))
  add(f"{_name}={_good} (int)", lambda c=_call, g=_good: c(g),
      equals(_reference, 1e-6 if _ref is not None else 0.0))
  add(f"{_name}=np.int64({_good})", lambda c=_call, g=_good: c(np.int64(g)),
      equals(_reference, 1e-6 if _ref is not None else 0.0))
  add(f"{_name}=jnp.array({_good}) (0-d int32)", lambda c=_call, g=_good: c(jnp.asarray(g)),
      equals(_reference, 1e-6 if _ref is not None else 0.0))
  add(f"{_name}={float(_good)} (float)", lambda c=_call, g=_good: c(float(g)), raises(_arg))
  add(f"{_name}=True (bool)", lambda c=_call: c(True), raises(_arg))

for _name, _call, _arg in (
    ("lime n_samples=1", lambda: INT_OPTIONS["lime n_samples"][0](1), "n_samples"),
    ("smooth_grad n_samples=0", lambda: INT_OPTIONS["smooth_grad n_samples"][0](0), "n_samples"),
    ("integrated_gradients n_steps=1 (trapezoid)",
     lambda: INT_OPTIONS["integrated_gradients n_steps"][0](1), "n_steps"),
    ("grid_segments cell=0", lambda: ij.grid_segments(4, 4, 0), "cell"),
    ("grid_segments width=-1", lambda: ij.grid_segments(4, -1, 2), "width"),
    ("InsertionDeletion step=0", lambda: ij.InsertionDeletion(baseline=0.0, step=0), "step"),
    ("InsertionDeletion step=1.5",
     lambda: ij.InsertionDeletion(baseline=0.0, step=1.5), "step"),
    ("epoch_batch_fn batch_size=7 > split size 6", lambda: epoch_batch_fn(_SPLIT, 7), "batch_size"),
    ("batches batch_size=0", lambda: sklearn_data.batches(_SPLIT, 0), "batch_size"),
    ("fit num_steps=-1", lambda: ij.fit(_STEP, _train_state(), epoch_batch_fn(_SPLIT, 3),
                                        num_steps=-1, key=KEY), "num_steps"),
    ("fit eval_every=1.5", lambda: ij.fit(_STEP, _train_state(), epoch_batch_fn(_SPLIT, 3),
                                          num_steps=1, key=KEY, eval_every=1.5), "eval_every"),
    ("fit checkpoint_every=2.0", lambda: ij.fit(_STEP, _train_state(), epoch_batch_fn(_SPLIT, 3),
                                                num_steps=1, key=KEY, checkpoint_every=2.0),
     "checkpoint_every"),
    ("fit checkpoint_keep=0", lambda: ij.fit(_STEP, _train_state(), epoch_batch_fn(_SPLIT, 3),
                                            num_steps=1, key=KEY, checkpoint_keep=0),
     "checkpoint_keep"),
    ("epoch_batch_fn seed=-1", lambda: epoch_batch_fn(_SPLIT, 2, seed=-1), "seed"),
    ("batches seed=2.0", lambda: sklearn_data.batches(_SPLIT, 2, seed=2.0), "seed"),
    ("find_another_explanation batch_size=0", lambda: ij.find_another_explanation(
        lambda x, y, a: tab, _SPLIT.x, _SPLIT.y, n_models=1, batch_size=0), "batch_size"),
    ("make_toy_color n=0", lambda: rrr_data.make_toy_color(0), "n"),
    ("load_toy_color n_val=0", lambda: rrr_data.load_toy_color(n_train=4, n_val=0, n_test=4),
     "n_val"),
    ("load_toy_color n_test=2.5", lambda: rrr_data.load_toy_color(n_train=4, n_val=4, n_test=2.5),
     "n_test"),
    ("add_decoy patch=2.0", lambda: rrr_data.add_decoy(
        np.zeros((2, 8, 8, 1), np.float32), np.asarray([1, 2]), patch=2.0,
        rng=np.random.default_rng(0)), "patch"),
    ("load_decoy_digits patch=2.5", lambda: rrr_data.load_decoy_digits(patch=2.5), "patch"),
    ("load_digits_images size=0",
     lambda: sklearn_data.load_digits_images(size=0), "size"),
    ("load_digits_images size=12", lambda: sklearn_data.load_digits_images(size=12), "size"),
    ("load_regression n_samples=40.5", lambda: sklearn_data.load_regression(
        "friedman1", n_samples=40.5), "n_samples"),
    ("load_tfds_images val_size=2.5 (before any data is read)",
     lambda: tfds_data.load_tfds_images("mnist", data_dir="/nonexistent", val_size=2.5),
     "val_size"),
    ("load_tfds_images max_train=0", lambda: tfds_data.load_tfds_images(
        "mnist", data_dir="/nonexistent", max_train=0), "max_train"),
    ("reduce_size image_size=0", lambda: tfds_data.reduce_size(
        np.zeros((1, 4, 4, 1), np.uint8), 0), "image_size"),
    ("traced n_samples in lime (jit)", lambda: jax.jit(
        lambda n: lime(logits, X, 1, KEY, segments=SEG, baseline=0.0, n_samples=n))(16),
     "n_samples"),
    ("traced n_steps in soft_insertion_deletion (jit)", lambda: jax.jit(
        lambda n: ij.soft_insertion_deletion(logits, X, PHI, 1, segments=SEG, baseline=0.0,
                                             n_steps=n))(4), "n_steps"),
):
  add(_name, _call, raises(_arg))

add("load_regression n_samples=np.int64(40): split sizes 20/10/10",
    lambda: [len(s.y) for s in sklearn_data.load_regression("friedman1",
                                                            n_samples=np.int64(40))[:3]],
    equals(lambda: [20, 10, 10]))
add("fit num_steps=np.int64(0): no step, empty history",
    lambda: len(ij.fit(_STEP, _train_state(), epoch_batch_fn(_SPLIT, 3), num_steps=np.int64(0),
                       key=KEY)[1]), equals(lambda: 0))

# --- Real options: any real dtype (bfloat16/float16 0-d arrays, NumPy floats, ints) is accepted.


def _soft(t):
  return ij.soft_insertion_deletion(logits, X, PHI, 1, segments=SEG, temperature=t, **_SOFT)


def _lime_width(w):
  return lime(logits, X, 1, KEY, segments=SEG, baseline=0.0, n_samples=16, kernel_width=w)


def _lime_ridge(r):
  return lime(logits, X, 1, KEY, segments=SEG, baseline=0.0, n_samples=16, ridge=r)


for _label, _value in (("jnp.bfloat16(2)", lambda: jnp.asarray(2.0, BF16)),
                       ("jnp.float16(2)", lambda: jnp.asarray(2.0, F16)),
                       ("np.float32(2)", lambda: np.float32(2.0)), ("int 2", lambda: 2)):
  add(f"soft_insertion_deletion temperature={_label}", lambda v=_value: _soft(v()),
      equals(lambda: _soft(2.0)))
for _label, _value in (("jnp.bfloat16(0.5)", lambda: jnp.asarray(0.5, BF16)),
                       ("jnp.float16(0.5)", lambda: jnp.asarray(0.5, F16)),
                       ("np.float64(0.5)", lambda: np.float64(0.5))):
  add(f"lime kernel_width={_label}", lambda v=_value: _lime_width(v()),
      equals(lambda: _lime_width(0.5)))
for _label, _value in (("jnp.bfloat16(1)", lambda: jnp.asarray(1.0, BF16)),
                       ("jnp.float16(1)", lambda: jnp.asarray(1.0, F16)), ("int 1", lambda: 1)):
  add(f"lime ridge={_label}", lambda v=_value: _lime_ridge(v()), equals(lambda: _lime_ridge(1.0)))
add("smooth_grad sigma=jnp.bfloat16(0.5): the linear model's gradient",
    lambda: gradients.smooth_grad(tab, XT, 2, KEY, n_samples=3, sigma=jnp.asarray(0.5, BF16),
                                  output="logit"), equals(lambda: WT[:, 2], 1e-6))
add("smooth_grad sigma per feature (4,): the linear model's gradient",
    lambda: gradients.smooth_grad(tab, XT, 1, KEY, n_samples=3, sigma=np.full(4, 0.2, np.float32),
                                  output="logit"), equals(lambda: WT[:, 1], 1e-6))
add("smooth_grad sigma=0: the plain gradient",
    lambda: gradients.smooth_grad(tab, XT, 2, KEY, n_samples=3, sigma=0, output="logit"),
    equals(lambda: WT[:, 2], 1e-6))
add("IdExpo temperature=jnp.bfloat16(1) accepted",
    lambda: float(ij.IdExpo(ij.InputGradients(baseline=0.0), n_steps=2,
                            temperature=jnp.asarray(1.0, BF16)).temperature), equals(lambda: 1.0))
add("weighted_least_squares ridge=jnp.bfloat16(0): ordinary least squares",
    lambda: ij.core.lstsq.weighted_least_squares(
        jnp.asarray([[0.0], [1.0], [2.0]]), jnp.asarray([1.0, 3.0, 5.0]), jnp.ones(3),
        ridge=jnp.asarray(0.0, BF16)), equals(lambda: (np.asarray([2.0]), np.asarray(1.0)), 1e-5))

for _name, _call, _arg in (
    ("soft_insertion_deletion temperature=True", lambda: _soft(True), "temperature"),
    ("soft_insertion_deletion temperature='1'", lambda: _soft("1"), "temperature"),
    ("soft_insertion_deletion temperature=None", lambda: _soft(None), "temperature"),
    ("soft_insertion_deletion temperature=nan", lambda: _soft(float("nan")), "temperature"),
    ("soft_insertion_deletion temperature=1+0j", lambda: _soft(1 + 0j), "temperature"),
    ("soft_insertion_deletion temperature=jnp.bfloat16(-1)",
     lambda: _soft(jnp.asarray(-1.0, BF16)), "temperature"),
    ("lime kernel_width=jnp.float16(0)", lambda: _lime_width(jnp.asarray(0.0, F16)),
     "kernel_width"),
    ("lime ridge=None", lambda: _lime_ridge(None), "ridge"),
    ("lime ridge=-1", lambda: _lime_ridge(-1.0), "ridge"),
    ("smooth_grad sigma=-1", lambda: gradients.smooth_grad(tab, XT, 0, KEY, sigma=-1.0), "sigma"),
    ("smooth_grad sigma of shape (3,) for x (4,)", lambda: gradients.smooth_grad(
        tab, XT, 0, KEY, sigma=jnp.ones(3)), "sigma"),
    ("smooth_grad sigma='0.1'", lambda: gradients.smooth_grad(tab, XT, 0, KEY, sigma="0.1"),
     "sigma"),
    ("IdExpo temperature=0", lambda: ij.IdExpo(ij.InputGradients(baseline=0.0), temperature=0.0),
     "temperature"),
):
  add(_name, _call, raises(_arg))
add("soft_insertion_deletion traced bfloat16 temperature=-1 (jit)",
    lambda: jnp.stack(jax.jit(_soft)(jnp.asarray(-1.0, BF16))), nan())
add("smooth_grad traced sigma=-1 (jit)",
    lambda: jax.jit(lambda s: gradients.smooth_grad(tab, XT, 0, KEY, n_samples=3, sigma=s))(-1.0),
    nan())

# --- Fractions.

for _name, _call, _arg in (
    ("insertion_deletion_curves fraction='1'", lambda: ij.insertion_deletion_curves(
        logits, X, PHI, 1, segments=SEG, baseline=0.0, step=1, fraction="1"), "fraction"),
    ("soft_insertion_deletion fraction=nan", lambda: ij.soft_insertion_deletion(
        logits, X, PHI, 1, segments=SEG, fraction=float("nan"), **_SOFT), "fraction"),
    ("InsertionDeletion fraction=0", lambda: ij.InsertionDeletion(baseline=0.0, fraction=0.0),
     "fraction"),
    ("InsertionDeletion fraction=None", lambda: ij.InsertionDeletion(baseline=0.0, fraction=None),
     "fraction"),
    ("IdExpo fraction=1.5", lambda: ij.IdExpo(ij.InputGradients(baseline=0.0), fraction=1.5),
     "fraction"),
    ("explanation_mask cutoff=1.0", lambda: rrr.explanation_mask(tab, _SPLIT.x, cutoff=1.0),
     "cutoff"),
    ("find_another_explanation cutoff=1.0 (before any model is trained)",
     lambda: ij.find_another_explanation(lambda x, y, a: (_ for _ in ()).throw(
         RuntimeError("train_fn was called")), _SPLIT.x, _SPLIT.y, n_models=1, cutoff=1.0),
     "cutoff"),
):
  add(_name, _call, raises(_arg))
add("insertion_deletion_curves fraction=np.float32(0.5)",
    lambda: ij.insertion_deletion_curves(logits, X, PHI, 1, segments=SEG, baseline=0.0, step=1,
                                         fraction=np.float32(0.5)),
    equals(lambda: ij.insertion_deletion_curves(logits, X, PHI, 1, segments=SEG, baseline=0.0,
                                                step=1, fraction=0.5)))
add("explanation_mask cutoff=jnp.bfloat16(0.5)",
    lambda: rrr.explanation_mask(tab, _SPLIT.x, cutoff=jnp.asarray(0.5, BF16)),
    equals(lambda: rrr.explanation_mask(tab, _SPLIT.x, cutoff=0.5)))
add("InsertionDeletion fraction=jnp.bfloat16(0.5)",
    lambda: ij.InsertionDeletion(baseline=0.0, fraction=jnp.asarray(0.5, BF16)).fraction,
    equals(lambda: 0.5))

# --- Traced targets out of range: NaN attributions from every gradient explainer (the gradient
# of a NaN-poisoned score is 0, which was returned as an all-zero explanation).

GRADIENT_FNS = {
    "integrated_gradients": (lambda t: gradients.integrated_gradients(tab, XT, t, baseline=0.0,
                                                                      n_steps=4, output="logit"),
                             lambda t: WT[:, t] * XT),
    "smooth_grad": (lambda t: gradients.smooth_grad(tab, XT, t, KEY, n_samples=3, output="logit"),
                    lambda t: WT[:, t]),
    "gradient_times_input": (lambda t: gradients.gradient_times_input(tab, XT, t, baseline=0.0,
                                                                      output="logit"),
                             lambda t: WT[:, t] * XT),
    "target_gradient": (lambda t: gradients.target_gradient(tab, XT, t, output="logit"),
                        lambda t: WT[:, t]),
}
for _name, (_fn, _closed) in GRADIENT_FNS.items():
  for _t in (-1, K):
    add(f"{_name}: traced target={_t} (jit)", lambda f=_fn, t=_t: jax.jit(f)(t), nan())
  add(f"{_name}: target={K}", lambda f=_fn: f(K), raises("target"))
  add(f"{_name}: traced target=2 (jit), closed form", lambda f=_fn: jax.jit(f)(2),
      equals(lambda c=_closed: c(2), 1e-5))
for _cls in (ij.IntegratedGradients, ij.SmoothGrad, ij.GradientTimesInput, ij.InputGradients):
  add(f"{_cls.__name__} object: traced target={K} (jit, prob)",
      lambda c=_cls: jax.jit(lambda t: c(baseline=0.0)(tab, XT, t, KEY))(K), nan())
add("explain(IntegratedGradients), traced targets=[0, 3] (jit), row 1",
    lambda: jax.jit(lambda t: ij.explain(ij.IntegratedGradients(baseline=0.0, n_steps=4), tab,
                                         jnp.stack([XT, XT]), KEY, targets=t))(
        jnp.asarray([0, K]))[1], nan())

# --- KernelSHAP and LIME with one unit: the answer is v(1) − v(0) (efficiency).


def _v(model, x, t, output):
  """The explained score of `target` at one input, float64 NumPy (independent of the library)."""
  z = np.asarray(model(jnp.asarray(x)[None]), np.float64)[0]
  if output == "logit" or output == "raw":
    return z[t]
  p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
  return p[t] if output == "prob" else np.log(p[t])


X1 = jnp.asarray([0.7], jnp.float32)
for _output in ("prob", "logit", "raw", "log_prob"):
  add(f"kernel_shap one unit (d=1), output={_output!r}: v(1) - v(0)",
      lambda o=_output: kernel_shap(one_feature, X1, 1, KEY, baseline=0.0, output=o),
      equals(lambda o=_output: [_v(one_feature, X1, 1, o) - _v(one_feature, 0 * X1, 1, o)],
             1e-5))
add("KernelShap object, one segment covering a 4x4 image: v(1) - v(0)",
    lambda: ij.KernelShap(segments=np.zeros((4, 4), np.int32), baseline=0.0)(logits, X, 2, KEY),
    equals(lambda: [_v(logits, X, 2, "prob") - _v(logits, 0 * X, 2, "prob")], 1e-5))
add("kernel_shap one unit, control_variate='additive': v(1) - v(0)",
    lambda: kernel_shap(one_feature, X1, 0, KEY, baseline=0.0, control_variate="additive"),
    equals(lambda: [_v(one_feature, X1, 0, "prob") - _v(one_feature, 0 * X1, 0, "prob")], 1e-5))
add("kernel_shap one unit: traced target=3 (jit)",
    lambda: jax.jit(lambda t: kernel_shap(one_feature, X1, t, KEY, baseline=0.0))(K), nan())
add("kernel_shap one unit: target=3", lambda: kernel_shap(one_feature, X1, K, KEY, baseline=0.0),
    raises("target"))
add("lime one unit, ridge=0: v(1) - v(0) (an exact two-point fit)",
    lambda: lime(one_feature, X1, 1, KEY, baseline=0.0, n_samples=32, ridge=0.0, output="logit",
                 distance="euclidean"),
    equals(lambda: [_v(one_feature, X1, 1, "logit") - _v(one_feature, 0 * X1, 1, "logit")], 1e-4))

# --- Data splits: every split non-empty, fractions three reals summing to 1.

for _name, _call, _arg in (
    ("load_tabular_classification fractions=(0.995, 0.002, 0.003): empty validation split",
     lambda: sklearn_data.load_tabular_classification("iris", fractions=(0.995, 0.002, 0.003)),
     "fractions"),
    ("load_tabular_classification fractions=(0.5, 0.2, 0.2): sum 0.9",
     lambda: sklearn_data.load_tabular_classification("iris", fractions=(0.5, 0.2, 0.2)),
     "fractions"),
    ("load_tabular_classification fractions=(0.8, 0.2): two entries",
     lambda: sklearn_data.load_tabular_classification("iris", fractions=(0.8, 0.2)), "fractions"),
    ("load_tabular_classification fractions=(1.2, -0.1, -0.1)",
     lambda: sklearn_data.load_tabular_classification("iris", fractions=(1.2, -0.1, -0.1)),
     "fractions[0]"),
    ("load_tabular_classification fractions=0.5 (not a sequence)",
     lambda: sklearn_data.load_tabular_classification("iris", fractions=0.5), "fractions"),
    ("load_tabular_classification seed=1.5",
     lambda: sklearn_data.load_tabular_classification("iris", seed=1.5), "seed"),
    ("load_regression n_samples=3: empty test split",
     lambda: sklearn_data.load_regression("friedman1", n_samples=3), "fractions"),
    ("load_regression n_samples=2: fewer than three examples",
     lambda: sklearn_data.load_regression("friedman1", n_samples=2), "n_samples"),
    ("load_digits_images fractions=(0.6, 0.4, 0.0): empty test split",
     lambda: sklearn_data.load_digits_images(fractions=(0.6, 0.4, 0.0)), "fractions[2]"),
    ("load_decoy_digits fractions=(0.6, 0.2, 0.1)",
     lambda: rrr_data.load_decoy_digits(fractions=(0.6, 0.2, 0.1)), "fractions"),
    ("epoch_batch_fn on an empty split",
     lambda: epoch_batch_fn(sklearn_data.Split(_SPLIT.x[:0], _SPLIT.y[:0]), 1), "split"),
    ("mnist_5k_split_indices seed=-1",
     lambda: importlib.import_module("idexpo_jax.data.mnist_data").mnist_5k_split_indices(
         np.repeat(np.arange(10), 500), seed=-1), "seed"),
    ("load_toy_color seed=-1", lambda: rrr_data.load_toy_color(n_train=2, n_val=2, n_test=2,
                                                               seed=-1), "seed"),
):
  add(_name, _call, raises(_arg))
add("load_tabular_classification fractions=(0.6, 0.2, 0.2): sizes 90/30/30 of iris",
    lambda: [len(s.y) for s in sklearn_data.load_tabular_classification(
        "iris", fractions=(0.6, 0.2, 0.2))[:3]], equals(lambda: [90, 30, 30]))
add("load_tabular_classification fractions as np.float32 array",
    lambda: [len(s.y) for s in sklearn_data.load_tabular_classification(
        "iris", fractions=np.asarray([0.5, 0.25, 0.25], np.float32))[:3]],
    equals(lambda: [75, 38, 37]))

# --- The argument checks themselves (`idexpo_jax.core.checks`).

for _name, _call, _want in (
    ("check_int(np.uint8(3))", lambda: _checks().check_int(np.uint8(3), "n"), 3),
    ("check_int(jnp.int8(3))", lambda: _checks().check_int(jnp.asarray(3, jnp.int8), "n"), 3),
    ("check_int(None, none_ok=True)",
     lambda: _checks().check_int(None, "n", none_ok=True) is None, True),
    ("check_fraction(np.float32(0.25))", lambda: _checks().check_fraction(np.float32(0.25), "f"),
     0.25),
    ("check_fraction(0, low_open=False)",
     lambda: _checks().check_fraction(0, "f", low_open=False), 0.0),
    ("check_positive(jnp.bfloat16 entries [1, 2])",
     lambda: _checks().check_positive(jnp.asarray([1.0, 2.0], BF16), "s") is None, True),
    ("check_positive(0, allow_zero=True)",
     lambda: _checks().check_positive(0, "s", allow_zero=True) is None, True),
    ("as_operand(jnp.bfloat16(2), float32) is float32 2",
     lambda: str(_checks().as_operand(jnp.asarray(2.0, BF16), jnp.float32).dtype) + str(
         float(_checks().as_operand(jnp.asarray(2.0, BF16), jnp.float32))), "float322.0"),
    ("poison(1, ok=False) is NaN", lambda: bool(np.isnan(_checks().poison(jnp.ones(()), False))),
     True),
    ("all_ok(None, None) is None", lambda: _checks().all_ok(None, None) is None, True),
):
  add(_name, _call, equals(lambda w=_want: w))
for _name, _call, _arg in (
    ("check_int(np.array([3]))", lambda: _checks().check_int(np.asarray([3]), "n"), "n"),
    ("check_int('3')", lambda: _checks().check_int("3", "n"), "n"),
    ("check_int(np.float64(16.0))", lambda: _checks().check_int(np.float64(16.0), "n_samples"),
     "n_samples"),
    ("check_int(np.bool_(True))", lambda: _checks().check_int(np.bool_(True), "n"), "n"),
    ("check_int(5, maximum=4)", lambda: _checks().check_int(5, "n", maximum=4), "n"),
    ("check_fraction(1.0, high_open=True)",
     lambda: _checks().check_fraction(1.0, "f", high_open=True), "f"),
    ("check_fraction(np.array([0.5, 0.5]))",
     lambda: _checks().check_fraction(np.asarray([0.5, 0.5]), "f"), "f"),
    ("check_positive(np.array([1.0, 0.0]))",
     lambda: _checks().check_positive(np.asarray([1.0, 0.0]), "s"), "s"),
    ("check_positive(np.array([]))", lambda: _checks().check_positive(np.asarray([]), "s"), "s"),
):
  add(_name, _call, raises(_arg))

# --- Driver configs.


def _study_config(arg):
  return importlib.import_module("experiments.study.configs.mnist").get_config(arg)


def _validate(cfg):
  return importlib.import_module("experiments.common.config_check").validate_config(cfg)


def _base(explainer):
  return importlib.import_module("experiments.study.configs.base").base_config(explainer)


def _with(cfg, path, value):
  cfg = cfg.copy_and_resolve_references()
  node = cfg
  *parents, leaf = path.split(".")
  for p in parents:
    node = node[p]
  with cfg.unlocked():
    node[leaf] = value
  return cfg


add("study mnist.py:gradcam,full validates as a study config",
    lambda: _validate(_study_config("gradcam,full")), equals(lambda: "study"))
add("study mnist.py:gradcam,full keeps the base budgets (seeds, width, methods)",
    lambda: (lambda c: (tuple(c.seeds), c.model.width, tuple(c.methods)))(
        _study_config("gradcam,full")),
    equals(lambda: (lambda b: (tuple(b.seeds), b.model.width, tuple(b.methods)))(
        _base("gradcam"))))
add("study mnist.py:lime,full validates",
    lambda: _validate(_study_config("lime,full")), equals(lambda: "study"))
add("study mnist.py:gradcam (CPU budget) has 2 seeds",
    lambda: tuple(_study_config("gradcam").seeds), equals(lambda: (0, 1)))
add("study mnist.py:gradcam,fll raises", lambda: _study_config("gradcam,fll"),
    ("raises", ValueError, "'EXPLAINER,full'", "plain"))
add("study config data.size=12 (digits need a multiple of 8)",
    lambda: _validate(_with(_base("gradcam"), "data.size", 12)), raises("data.size"))
add("study config data.size=16 validates",
    lambda: _validate(_with(_base("gradcam"), "data.size", 16)), equals(lambda: "study"))
add("demo config data.size=20",
    lambda: _validate(_with(importlib.import_module("experiments.demo.configs.default")
                            .get_config(), "data.size", 20)), raises("data.size"))


def test_at_least_150_cases_with_unique_names():
  names = [c.name for c in CASES]
  assert len(names) == len(set(names))
  assert len(CASES) >= 150


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case):
  ok, what = outcome(case)
  assert ok, f"{case.expect[0]}: {what}"


def test_messages_name_the_value_and_the_expected_type():
  with pytest.raises(ValueError, match=re.escape("`n_samples` must be an integer >= 2; got the "
                                                 "float 16.0")):
    lime(logits, X, 1, KEY, segments=SEG, baseline=0.0, n_samples=16.0)
  with pytest.raises(ValueError, match=r"`temperature` must be a positive real number .* got "
                                       r"array\(-1, dtype=.*bfloat16"):
    _soft(jnp.asarray(-1.0, BF16))
