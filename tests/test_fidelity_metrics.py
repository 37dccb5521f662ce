"""Tests for ExpO's metrics: point fidelity, neighbourhood fidelity, stability (re-explained)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idexpo_jax.metrics.fidelity import (expo_metrics, expo_metrics_batch, expo_scores,
                                         explanation_stability, neighborhood_fidelity,
                                         point_fidelity)
from idexpo_jax.explainers.local_linear import gaussian_neighbors, local_linear
from tolerances import F32

D = 3
Q = np.asarray([0.5, -1.0, 2.0])
X = jnp.asarray([0.3, -0.8, 1.1], jnp.float32)


def cubic(xb):
  return jnp.sum(jnp.asarray(Q, xb.dtype) * xb ** 3, axis=-1)


def gradient_explainer(x, key):
  """Deterministic: the tangent plane of `cubic` at x (coef = 3·q·x²)."""
  del key
  coef = 3 * jnp.asarray(Q, x.dtype) * x ** 2
  return coef, cubic(x[None])[0] - coef @ x


def test_point_and_neighbourhood_fidelity_equal_float64_numpy(x64):
  with x64():
    x = X.astype(jnp.float64)
    coef = jnp.asarray([0.4, -0.2, 1.5])
    intercept = jnp.asarray(0.7)
    key = jax.random.key(0)
    pf = jax.jit(lambda x: point_fidelity(cubic, x, coef, intercept))(x)
    nf = jax.jit(lambda x, k: neighborhood_fidelity(cubic, x, coef, intercept, k,
                                                    n_neighbors=7, sigma=0.1))(x, key)
    xs = np.asarray(gaussian_neighbors(x, key, n=7, sigma=0.1))
  f = lambda z: np.sum(Q * z ** 3, axis=-1)  # noqa: E731
  xn, c = np.asarray(x), np.asarray(coef)
  np.testing.assert_allclose(pf, (xn @ c + 0.7 - f(xn)) ** 2, rtol=1e-12)
  np.testing.assert_allclose(nf, np.mean((xs @ c + 0.7 - f(xs)) ** 2), rtol=1e-12)


def test_expo_scores_equal_float64_loops_for_several_outputs(x64):
  """The one formula of PF, NF and S from explanations and values, against plain loops."""
  rng = np.random.default_rng(0)
  x, coef, intercept = rng.normal(size=D), rng.normal(size=(D, 2)), rng.normal(size=2)
  f_x, xs, f_xs = rng.normal(size=2), rng.normal(size=(4, D)), rng.normal(size=(4, 2))
  coefs = rng.normal(size=(3, D, 2))
  with x64():
    out = expo_scores(*map(jnp.asarray, (x, coef, intercept, f_x, xs, f_xs, coefs)))
    no_st = expo_scores(*map(jnp.asarray, (x, coef, intercept, f_x, xs, f_xs)))
  e = lambda p: sum(p[d] * coef[d] for d in range(D)) + intercept  # noqa: E731
  sq = lambda v: float(sum(t * t for t in v))  # noqa: E731
  np.testing.assert_allclose(out["pf"], sq(e(x) - f_x), rtol=1e-12)
  np.testing.assert_allclose(out["nf"], np.mean([sq(e(p) - v) for p, v in zip(xs, f_xs)]),
                             rtol=1e-12)
  np.testing.assert_allclose(out["stability"],
                             np.mean([sq((c - coef).ravel()) for c in coefs]), rtol=1e-12)
  assert set(no_st) == {"pf", "nf"} and no_st["nf"] == out["nf"]


def test_one_class_output_scores_the_class_predicted_at_x():
  """output="prob" without a target: the probability of the class predicted at x, at x and at
  every neighbour (a neighbour predicted otherwise still scores x's class)."""
  w = jnp.asarray([[1.0, -1.0], [0.5, 0.0], [0.0, 2.0]])
  fn = lambda xb: xb @ w  # noqa: E731
  coef, intercept = jnp.zeros(D), jnp.asarray(0.3)
  logits = np.asarray(X, np.float64) @ np.asarray(w, np.float64)
  k = int(np.argmax(logits))
  p = np.exp(logits[k]) / np.exp(logits).sum()
  np.testing.assert_allclose(point_fidelity(fn, X, coef, intercept, output="prob"),
                             (p - 0.3) ** 2, **F32)
  key = jax.random.key(0)
  xs = np.asarray(gaussian_neighbors(X, key, n=5, sigma=2.0), np.float64)
  lx = xs @ np.asarray(w, np.float64)
  px = np.exp(lx[:, k]) / np.exp(lx).sum(1)
  assert (lx.argmax(1) != k).any()  # some neighbours predict the other class
  np.testing.assert_allclose(
      neighborhood_fidelity(fn, X, coef, intercept, key, n_neighbors=5, sigma=2.0, output="prob"),
      np.mean((px - 0.3) ** 2), **F32)


def test_multi_output_fidelity_sums_over_outputs():
  w = jnp.asarray([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
  coef, intercept = jnp.zeros((D, 2)), jnp.asarray([1.0, -1.0])
  pf = point_fidelity(lambda xb: xb @ w, X, coef, intercept)
  out = np.asarray(X) @ np.asarray(w)
  np.testing.assert_allclose(pf, (out[0] - 1) ** 2 + (out[1] + 1) ** 2, **F32)


def test_stability_re_explains_at_the_neighbours():
  """Tangent planes of Σ q x³: E‖coef(x') − coef(x)‖² = 9 Σ q² (4x²σ² + 3σ⁴).

  Re-explaining at x (the reference code's bug) would give 0 for this deterministic explainer.
  """
  sigma = 0.1
  s = jax.jit(lambda k: explanation_stability(gradient_explainer, X, k, n_neighbors=20000,
                                              sigma=sigma))(jax.random.key(1))
  x = np.asarray(X, np.float64)
  closed = 9 * np.sum(Q ** 2 * (4 * x ** 2 * sigma ** 2 + 3 * sigma ** 4))
  np.testing.assert_allclose(s, closed, rtol=0.05)


def test_stability_equals_float64_numpy_on_the_same_neighbours(x64):
  with x64():
    x = X.astype(jnp.float64)
    key = jax.random.key(2)
    s = explanation_stability(gradient_explainer, x, key, n_neighbors=4, sigma=0.1)
    k_nb, _, _ = jax.random.split(key, 3)
    xs = np.asarray(gaussian_neighbors(x, k_nb, n=4, sigma=0.1))
  grad = lambda z: 3 * Q * z ** 2  # noqa: E731
  ref = np.mean(np.sum((grad(xs) - grad(np.asarray(x))) ** 2, axis=1))
  np.testing.assert_allclose(s, ref, rtol=1e-12)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=D + 1, max_size=D + 1),
       st.integers(0, 2 ** 31 - 1))
def test_affine_model_is_explained_perfectly(wb, seed):
  """LIME without ridge explains an affine model exactly: PF = NF = stability = 0."""
  w = jnp.asarray(wb[:D], jnp.float32)
  b = jnp.asarray(wb[D], jnp.float32)
  out = _affine_metrics(w, b, jax.random.key(seed))
  scale = 1.0 + float(jnp.sum(w ** 2) + b ** 2)
  for name in ("pf", "nf", "stability"):
    assert float(out[name]) < 1e-8 * scale, (name, out)


@jax.jit
def _affine_metrics(w, b, key):
  f = lambda xb: xb @ w + b  # noqa: E731
  explainer = lambda x, k: local_linear(f, x, k, n_samples=32, ridge=0.0)  # noqa: E731
  return expo_metrics(f, explainer, X, key)


def test_batch_matches_single_examples_and_same_key_same_output():
  xb = jax.random.normal(jax.random.key(3), (3, D))
  explainer = lambda x, k: local_linear(cubic, x, k, n_samples=50)  # noqa: E731
  run = jax.jit(lambda xb, k: expo_metrics_batch(cubic, explainer, xb, k))
  a, b = run(xb, jax.random.key(4)), run(xb, jax.random.key(4))
  keys = jax.random.split(jax.random.key(4), 3)
  single = jax.jit(lambda x, k: expo_metrics(cubic, explainer, x, k))
  one = single(xb[1], keys[1])
  for name in ("pf", "nf", "stability"):
    assert a[name].shape == (3,)
    np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_allclose(a[name][1], one[name], rtol=1e-4)
  no_stab = jax.eval_shape(lambda x, k: expo_metrics(cubic, explainer, x, k, stability=False),
                           X, keys[0])
  assert set(no_stab) == {"pf", "nf"}


@pytest.mark.parametrize("fn, kwargs, name", [
    (point_fidelity, dict(x=jnp.ones((1, D))), "`x`"),
    (point_fidelity, dict(coef=jnp.ones((D + 1,))), "`coef`"),
    (neighborhood_fidelity, dict(intercept=jnp.ones((2,))), "`coef`"),
    (neighborhood_fidelity, dict(sigma=0.0), "`sigma`"),
    (point_fidelity, dict(output="softmax"), "`output`"),
    (neighborhood_fidelity, dict(output="predicted_prob"), "`output`"),
])
def test_bad_input_raises_naming_the_argument(fn, kwargs, name):
  args = dict(x=X, coef=jnp.ones((D,)), intercept=jnp.zeros(()))
  if fn is neighborhood_fidelity:
    args["key"] = jax.random.key(0)
  args.update(kwargs)
  pos = [args.pop(k) for k in ("x", "coef", "intercept", "key") if k in args]
  with pytest.raises(ValueError, match=name):
    fn(cubic, *pos, **args)
