"""Edge cases of the public API: every invalid input is loud, every valid odd input right.

Each case calls one public function and states what a correct library does:

* `raise NAME`: a ValueError/TypeError whose message names `NAME` (found at call or trace time);
* `nan`: an invalid value known only inside `jit` gives an all-NaN output;
* `value`: a valid but unusual input (integer image, regression model, inf in a removed unit, half
  precision) gives the right answer, compared with an independent computation.

`run_case` classifies the outcome as `ok` (as stated), `silent` (a wrong value or a non-NaN
output) or `obscure` (an error that is not a named ValueError/TypeError, e.g. ZeroDivisionError,
LAPACK's NotImplementedError, or a missing option); every case must be `ok`. docs/robustness.md
lists the cases with their outcomes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idexpo_jax as ij
from idexpo_jax.explainers import gradients, local_linear
from idexpo_jax.explainers.grad_cam import grad_cam, grad_cam_batch
from idexpo_jax.explainers.kernel_shap import kernel_shap
from idexpo_jax.explainers.lime import lime
from idexpo_jax.metrics import curves, fidelity, sensitivity

K = 3
_RNG = np.random.default_rng(0)
W = jnp.asarray(_RNG.normal(size=(16, K)), jnp.float32)
X = jnp.asarray(_RNG.normal(size=(4, 4, 1)), jnp.float32)
XB = jnp.asarray(_RNG.normal(size=(2, 4, 4, 1)), jnp.float32)
PHI = jnp.asarray(_RNG.normal(size=(16,)), jnp.float32)
SEG = ij.grid_segments(4, 4, 2)
CONV = jnp.asarray(_RNG.normal(size=(1, 3)), jnp.float32)
KEY = jax.random.PRNGKey(0)
TAB = jnp.asarray(_RNG.normal(size=(4, 3)), jnp.float32)
WT = jnp.asarray(_RNG.normal(size=(3, 2)), jnp.float32)


def logits(xb):
  return xb.reshape(xb.shape[0], -1).astype(jnp.float32) @ W


def regression(xb):  # one output, (B,)
  return logits(xb)[:, 0]


def regression_col(xb):  # one output, (B, 1)
  return logits(xb)[:, :1]


def probs(xb):  # a model that already returns probabilities
  return jax.nn.softmax(logits(xb), axis=-1)


PRED = ij.Predictor(lambda xb: jnp.tanh(xb.astype(jnp.float32) @ CONV),
                    lambda a: a.mean((1, 2)) @ W[:3])
TABM = lambda xb: jnp.sin(xb @ WT)

LIME = dict(segments=SEG, baseline=0.0, n_samples=30)
SHAP = dict(segments=SEG, baseline=0.0)
CURVE = dict(baseline=0.0, step=4)
SOFT = dict(baseline=0.0, n_steps=8)
SENS = dict(n=4, n_subsets=10, baseline=0.0)
PEN = dict(explainer=grad_cam, baseline=0.0, n_steps=4)

# The functions with a class target, called on one example (x, target) or a batch (xb, targets).
TARGETED = {
    "lime": lambda t, x=X: lime(logits, x, t, KEY, **LIME),
    "kernel_shap": lambda t, x=X: kernel_shap(logits, x, t, KEY, **SHAP),
    "grad_cam": lambda t, x=X: grad_cam(PRED, x, t),
    "insertion_deletion_curves": lambda t, x=X: jnp.stack(
        ij.insertion_deletion_curves(logits, x, PHI, t, **CURVE)[1:]),
    "soft_insertion_deletion": lambda t, x=X: jnp.stack(
        ij.soft_insertion_deletion(logits, x, PHI, t, **SOFT)),
    "sensitivity_n": lambda t, x=X: ij.sensitivity_n(logits, x, PHI, t, KEY, **SENS),
    "target_prob": lambda t, x=X: ij.core.predictor.target_prob(logits, x[None], t),
}
BATCHED = {
    "grad_cam_batch": lambda t: grad_cam_batch(PRED, XB, t),
    "batch_insertion_deletion": lambda t: jnp.stack(
        curves.batch_insertion_deletion(logits, XB, jnp.stack([PHI, PHI]), t, **CURVE)[1:], axis=1),
    "batch_sensitivity_n": lambda t: sensitivity.batch_sensitivity_n(
        logits, XB, jnp.stack([PHI, PHI]), t, KEY, **SENS),
    "idexpo_penalty": lambda t: ij.IdExpo(**PEN)(PRED, XB, t, KEY)[0],
}


def close_to(reference, tol=1e-5):
  """A check `out -> bool` against `reference()`, computed when checked (errors count there)."""
  def check(out):
    a, b = np.asarray(out, np.float64), np.asarray(reference(), np.float64)
    return a.shape == b.shape and np.allclose(a, b, rtol=tol, atol=tol)
  return check


def cases():
  """`(name, kind, arg, thunk)`: kind "raise" (arg = the name), "nan", or "value" (arg = check)."""
  out = []
  add = lambda name, kind, arg, thunk: out.append((name, kind, arg, thunk))
  for fname, f in TARGETED.items():
    for t in (-1, K):
      add(f"{fname}: target={t}", "raise", "target", functools.partial(f, t))
      add(f"{fname}: traced target={t} (jit)", "nan", None,
          functools.partial(lambda f, t: jax.jit(f)(t), f, t))
    add(f"{fname}: float target 1.0", "raise", "target", functools.partial(f, 1.0))
  for fname, f in BATCHED.items():
    for t in (-1, K):
      bad = jnp.asarray([0, t])
      add(f"{fname}: targets=[0, {t}]", "raise", "targets" if fname != "idexpo_penalty" else "yb",
          functools.partial(f, bad))
      add(f"{fname}: traced targets=[0, {t}] (jit), row 1", "nan", None,
          functools.partial(lambda f, b: jax.jit(f)(b)[-1] if f is not BATCHED["idexpo_penalty"]
                            else jax.jit(f)(b), f, bad))
  # Integer inputs: the same answer as the float input.
  xi = (jnp.arange(16).reshape(4, 4, 1) % 3).astype(jnp.int32)
  for fname in ("lime", "kernel_shap", "grad_cam", "insertion_deletion_curves",
                "soft_insertion_deletion", "sensitivity_n", "target_prob"):
    f = TARGETED[fname]
    add(f"{fname}: integer x", "value", close_to(functools.partial(f, 1, xi.astype(jnp.float32))),
        functools.partial(f, 1, xi))
  add("input_gradients: integer x", "value",
      close_to(lambda: gradients.input_gradients(logits, xi.astype(jnp.float32))),
      lambda: gradients.input_gradients(logits, xi))
  add("apply_unit_mask: integer x, soft z", "value",
      close_to(lambda: ij.apply_unit_mask(xi.astype(jnp.float32), jnp.full((4,), 0.5), 0.0,
                                          segments=SEG)),
      lambda: ij.apply_unit_mask(xi, jnp.full((4,), 0.5), 0.0, segments=SEG))
  # Segment maps whose ids are not exactly 0..d-1.
  bad_maps = {"a -1": np.where(SEG == 3, -1, SEG), "a gap (no id 2)": np.where(SEG == 2, 4, SEG),
              "ids from 1 (SLIC)": SEG + 1, "float ids": SEG.astype(np.float32)}
  seg_fns = {
      "lime": lambda s: lime(logits, X, 1, KEY, segments=s, baseline=0.0, n_samples=30),
      "kernel_shap": lambda s: kernel_shap(logits, X, 1, KEY, segments=s, baseline=0.0),
      "insertion_deletion_curves": lambda s: ij.insertion_deletion_curves(
          logits, X, PHI[:5], 1, segments=s, baseline=0.0, step=1, fraction=1.0),
      "soft_insertion_deletion": lambda s: ij.soft_insertion_deletion(
          logits, X, PHI[:5], 1, segments=s, baseline=0.0, n_steps=4),
      "sensitivity_n": lambda s: ij.sensitivity_n(logits, X, PHI[:5], 1, KEY, n=2, segments=s,
                                                  baseline=0.0),
      "apply_unit_mask": lambda s: ij.apply_unit_mask(X, jnp.ones((5,)), 0.0, segments=s),
      "num_units": lambda s: ij.core.masking.num_units(X.shape, s),
  }
  for fname, f in seg_fns.items():
    for what, s in bad_maps.items():
      if fname in ("lime", "apply_unit_mask") or what in ("a -1", "ids from 1 (SLIC)"):
        add(f"{fname}: segments with {what}", "raise", "segments", functools.partial(f, s))
  # Grad-CAM needs spatial features.
  add("grad_cam: bare logits function", "raise", "Predictor", lambda: grad_cam(logits, X, 0))
  add("grad_cam: as_predictor(logits function)", "raise", "Predictor",
      lambda: grad_cam(ij.as_predictor(logits), X, 0))
  add("idexpo_penalty(grad_cam) with a bare logits function", "raise", "Predictor",
      lambda: ij.IdExpo(**PEN)(logits, XB, jnp.asarray([0, 1]), KEY))
  add("grad_cam: features (B, F) not maps", "raise", "features",
      lambda: grad_cam(ij.Predictor(lambda b: b.reshape(b.shape[0], -1), lambda a: a @ W),
                          X, 0))
  # Outputs: regression and probability models.
  xs = np.asarray(X, np.float64).reshape(-1)
  w0 = np.asarray(W[:, 0], np.float64)
  per_segment = np.asarray([(xs * w0)[np.asarray(SEG).reshape(-1) == u].sum() for u in range(4)])
  add("kernel_shap: regression (B,), output='raw'", "value",
      close_to(lambda: per_segment),
      lambda: kernel_shap(regression, X, 0, KEY, segments=SEG, baseline=0.0, output="raw"))
  add("kernel_shap: regression (B, 1), output='raw'", "value",
      close_to(lambda: per_segment),
      lambda: kernel_shap(regression_col, X, 0, KEY, segments=SEG, baseline=0.0,
                             output="raw"))
  for fname, f in (("lime", lambda m, **k: lime(m, X, 0, KEY, **LIME, **k)),
                   ("kernel_shap", lambda m, **k: kernel_shap(m, X, 0, KEY, **SHAP, **k))):
    add(f"{fname}: regression (B, 1), default output='prob'", "raise", "output",
        functools.partial(f, regression_col))
    add(f"{fname}: probability model, output='raw'", "value",
        close_to(functools.partial(f, logits)), functools.partial(f, probs, output="raw"))
    add(f"{fname}: output='log_prob'", "value",
        close_to(functools.partial(f, lambda b: jnp.log(probs(b)), output="logit"), tol=1e-4),
        functools.partial(f, logits, output="log_prob"))
  add("insertion_deletion_curves: regression, default output='prob'", "raise", "output",
      lambda: ij.insertion_deletion_curves(regression_col, X, PHI, 0, **CURVE))
  add("soft_insertion_deletion: one-output model", "raise", "output",
      lambda: ij.soft_insertion_deletion(regression_col, X, PHI, 0, **SOFT))
  add("input_gradients: one-output model", "raise", "reduce",
      lambda: gradients.input_gradients(regression_col, X))
  add("rrr_penalty: one-output model", "raise", "reduce",
      lambda: ij.rrr_penalty(regression_col, XB, 1.0))
  # Options out of range.
  for t in (0.0, -1.0):
    add(f"soft_insertion_deletion: temperature={t}", "raise", "temperature",
        lambda t=t: ij.soft_insertion_deletion(logits, X, PHI, 1, temperature=t, **SOFT))
  add("soft_insertion_deletion: traced temperature=-1 (jit)", "nan", None,
      lambda: jax.jit(lambda t: jnp.stack(ij.soft_insertion_deletion(
          logits, X, PHI, 1, temperature=t, **SOFT)))(-1.0))
  add("idexpo_penalty: temperature=-1", "raise", "temperature",
      lambda: ij.IdExpo(**PEN | dict(temperature=-1.0))(PRED, XB, jnp.asarray([0, 1]), KEY))
  add("lime: ridge=-1", "raise", "ridge", lambda: lime(logits, X, 1, KEY, ridge=-1.0, **LIME))
  add("lime: traced ridge=-1 (jit)", "nan", None,
      lambda: jax.jit(lambda r: lime(logits, X, 1, KEY, ridge=r, **LIME))(-1.0))
  add("weighted_least_squares: ridge=-1", "raise", "ridge",
      lambda: ij.core.lstsq.weighted_least_squares(jnp.eye(4), jnp.ones(4), jnp.ones(4),
                                                   ridge=-1.0))
  add("lime: kernel_width=0", "raise", "kernel_width",
      lambda: lime(logits, X, 1, KEY, kernel_width=0.0, **LIME))
  add("lime: traced kernel_width=-1 (jit)", "nan", None,
      lambda: jax.jit(lambda w: lime(logits, X, 1, KEY, kernel_width=w, **LIME))(-1.0))
  add("local_linear: sigma=0", "raise", "sigma",
      lambda: local_linear.local_linear(TABM, TAB[0], KEY, n_samples=20, sigma=0.0))
  add("local_linear: kernel_width=jnp.array(0.)", "raise", "kernel_width",
      lambda: local_linear.local_linear(TABM, TAB[0], KEY, n_samples=20,
                                        kernel_width=jnp.asarray(0.0)))
  add("gaussian_neighbors: sigma=jnp.array(0.)", "raise", "sigma",
      lambda: local_linear.gaussian_neighbors(TAB[0], KEY, n=3, sigma=jnp.asarray(0.0)))
  add("expo_fidelity: sigma=jnp.array(0.)", "raise", "sigma",
      lambda: ij.expo_fidelity(TABM, TAB, KEY, sigma=jnp.asarray(0.0)))
  add("expo_fidelity: traced sigma=-1 (jit)", "nan", None,
      lambda: jax.jit(lambda s: ij.expo_fidelity(TABM, TAB, KEY, sigma=s)[0])(-1.0))
  add("expo_stability: radius=np.float32(-0.1)", "raise", "radius",
      lambda: ij.expo_stability(TABM, TAB, KEY, radius=np.float32(-0.1)))
  add("neighborhood_fidelity: sigma=jnp.array(0.)", "raise", "sigma",
      lambda: fidelity.neighborhood_fidelity(TABM, TAB[0], jnp.zeros((3, 2)), jnp.zeros(2), KEY,
                                       sigma=jnp.asarray(0.0)))
  nan_phi = PHI.at[2].set(jnp.nan)
  add("insertion_deletion_curves: NaN attribution", "raise", "attribution",
      lambda: ij.insertion_deletion_curves(logits, X, nan_phi, 1, **CURVE))
  add("insertion_deletion_curves: traced NaN attribution (jit)", "nan", None,
      lambda: jax.jit(lambda a: jnp.stack(ij.insertion_deletion_curves(
          logits, X, a, 1, **CURVE)[1:]))(nan_phi))
  add("sensitivity_n: NaN attribution", "raise", "attribution",
      lambda: ij.sensitivity_n(logits, X, nan_phi, 1, KEY, **SENS))
  add("sensitivity_n: traced NaN attribution (jit)", "nan", None,
      lambda: jax.jit(lambda a: ij.sensitivity_n(logits, X, a, 1, KEY, **SENS))(nan_phi))
  add("soft_insertion_deletion: NaN attribution", "raise", "attribution",
      lambda: ij.soft_insertion_deletion(logits, X, nan_phi, 1, **SOFT))
  x_inf = X.at[0, 0, 0].set(jnp.inf)
  add("apply_unit_mask: inf in a removed unit", "value",
      close_to(lambda: jnp.where(SEG[..., None] == 0, 0.5, X)),
      lambda: ij.apply_unit_mask(x_inf, jnp.asarray([0.0, 1.0, 1.0, 1.0]), 0.5, segments=SEG))
  add("insertion_deletion_curves: inf in x, removed unit at k=0", "value",
      lambda out: bool(np.isfinite(np.asarray(out)[0, 0])),
      lambda: jnp.stack(ij.insertion_deletion_curves(logits, x_inf, PHI.at[0].set(-9.0), 1,
                                                     **CURVE)[1:]))
  two = jnp.asarray([0, 1])
  add("idexpo_penalty: empty batch", "raise", "yb",
      lambda: ij.IdExpo(**PEN)(PRED, XB[:0], two[:0], KEY))
  add("rrr_penalty: empty batch", "raise", "xb", lambda: ij.rrr_penalty(logits, XB[:0], 1.0))
  add("expo_fidelity: empty batch", "raise", "xb", lambda: ij.expo_fidelity(TABM, TAB[:0], KEY))
  add("expo_stability: empty batch", "raise", "xb", lambda: ij.expo_stability(TABM, TAB[:0], KEY))
  add("batch_insertion_deletion: empty batch", "raise", "xb",
      lambda: curves.batch_insertion_deletion(logits, XB[:0], jnp.zeros((0, 16)), two[:0], **CURVE))
  add("batch_sensitivity_n: empty batch", "raise", "xb",
      lambda: sensitivity.batch_sensitivity_n(logits, XB[:0], jnp.zeros((0, 16)), two[:0], KEY,
                                              **SENS))
  add("insertion_deletion_curves: step=1.5", "raise", "step",
      lambda: ij.insertion_deletion_curves(logits, X, PHI, 1, baseline=0.0, step=1.5, fraction=1.0))
  add("insertion_deletion_curves: fraction=1.5", "raise", "fraction",
      lambda: ij.insertion_deletion_curves(logits, X, PHI, 1, fraction=1.5, **CURVE))
  add("soft_insertion_deletion: n_steps=2.5", "raise", "n_steps",
      lambda: ij.soft_insertion_deletion(logits, X, PHI, 1, baseline=0.0, n_steps=2.5))
  add("soft_insertion_deletion: fraction=0", "raise", "fraction",
      lambda: ij.soft_insertion_deletion(logits, X, PHI, 1, fraction=0.0, **SOFT))
  add("sensitivity_n: n=2.0", "raise", "n",
      lambda: ij.sensitivity_n(logits, X, PHI, 1, KEY, n=2.0, baseline=0.0))
  for c in (0, -1):
    for fname, f in (("lime", lambda c: lime(logits, X, 1, KEY, chunk_size=c, **LIME)),
                     ("kernel_shap", lambda c: kernel_shap(logits, X, 1, KEY, chunk_size=c,
                                                              **SHAP)),
                     ("insertion_deletion_curves", lambda c: ij.insertion_deletion_curves(
                         logits, X, PHI, 1, chunk_size=c, **CURVE))):
      add(f"{fname}: chunk_size={c}", "raise", "chunk_size", functools.partial(f, c))
  for dtype in (jnp.bfloat16, jnp.float16):
    half = lambda b, dtype=dtype: logits(b).astype(dtype)
    name = jnp.dtype(dtype).name
    add(f"lime: {name} model", "value",
        close_to(lambda: lime(logits, X, 1, KEY, **LIME), tol=3e-2),
        lambda half=half: lime(half, X, 1, KEY, **LIME))
    add(f"kernel_shap: {name} model", "value",
        close_to(lambda: kernel_shap(logits, X, 1, KEY, **SHAP), tol=3e-2),
        lambda half=half: kernel_shap(half, X, 1, KEY, **SHAP))
  return out


def run_case(kind, arg, thunk) -> tuple[str, str]:
  """`(outcome, detail)` of one case."""
  try:
    out = thunk()
    out = jax.tree.map(np.asarray, out)
  except (ValueError, TypeError) as e:
    msg = str(e).split("\n")[0]
    if kind == "value":
      return "obscure", f"{type(e).__name__}: {msg[:90]}"
    if arg is None or arg in msg:
      return "ok", f"{type(e).__name__}: {msg[:90]}"
    return "obscure", f"{type(e).__name__} without `{arg}`: {msg[:90]}"
  except Exception as e:  # pylint: disable=broad-except
    return "obscure", f"{type(e).__name__}: {str(e).splitlines()[0][:90] if str(e) else ''}"
  leaves = [np.asarray(v, np.float64) for v in jax.tree.leaves(out)]
  if kind == "raise":
    return "silent", "returned " + ("NaN" if any(np.isnan(v).any() for v in leaves) else "a value")
  if kind == "nan":
    if all(np.isnan(v).all() for v in leaves):
      return "ok", "NaN"
    return "silent", "returned a non-NaN value"
  try:
    right = arg(out)
  except Exception as e:  # pylint: disable=broad-except  # the reference needs a missing option
    return "obscure", f"reference failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
  return ("ok", "correct") if right else ("silent", "wrong value")


CASES = cases()


def test_case_names_are_unique():
  names = [c[0] for c in CASES]
  assert len(names) == len(set(names)) == 138


@pytest.mark.parametrize("kind, arg, thunk", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_case(kind, arg, thunk):
  outcome, detail = run_case(kind, arg, thunk)
  assert outcome == "ok", detail
