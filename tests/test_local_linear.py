"""Tests for the tabular LIME explainer with a Gaussian neighbourhood (`local_linear`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import Ridge

from idexpo_jax.explainers.local_linear import (gaussian_neighbors, local_linear, local_linear_fit,
                                                model_outputs)
from tolerances import F32

D = 3
W = jnp.asarray([[0.5, -1.0], [2.0, 0.3], [-0.7, 1.1]], jnp.float32)
B = jnp.asarray([0.2, -0.4], jnp.float32)
X = jnp.asarray([0.5, -1.0, 0.2], jnp.float32)


def cubic(xb):
  return jnp.sum(xb ** 3, axis=-1)


def test_affine_model_recovered_exactly_and_gradient_is_identity():
  """With ridge 0 the fit of an affine model is the model; d coef / d W is the identity."""
  coef, intercept = jax.jit(lambda x, k: local_linear(lambda xb: xb @ W + B, x, k, ridge=0.0,
                                                      n_samples=64))(X, jax.random.key(0))
  assert coef.shape == (D, 2) and intercept.shape == (2,)
  np.testing.assert_allclose(coef, W, atol=1e-4)
  np.testing.assert_allclose(intercept, B, atol=1e-4)
  w = W[:, 0]
  grad = jax.grad(lambda w: local_linear(lambda xb: xb @ w, X, jax.random.key(1), ridge=0.0,
                                         n_samples=32)[0].sum())(w)
  np.testing.assert_allclose(grad, np.ones(D), atol=1e-4)


def test_equals_sklearn_ridge_on_the_same_samples():
  key = jax.random.key(3)
  n, sigma, ridge = 200, 0.7, 1.0
  coef, intercept = jax.jit(lambda x, k: local_linear(cubic, x, k, n_samples=n, sigma=sigma,
                                                      ridge=ridge))(X, key)
  xs = np.asarray(X, np.float64) + sigma * np.asarray(jax.random.normal(key, (n, D)), np.float64)
  xs[0] = np.asarray(X)
  dist2 = np.sum((xs - np.asarray(X)) ** 2, axis=1)
  weights = np.sqrt(np.exp(-dist2 / (0.75 ** 2 * D)))
  ref = Ridge(alpha=ridge).fit(xs, np.sum(xs ** 3, axis=1), sample_weight=weights)
  np.testing.assert_allclose(coef, ref.coef_, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(intercept, ref.intercept_, rtol=1e-4, atol=1e-4)


def test_matches_lime_package_and_closed_form():
  """`lime_tabular` on z-scored data samples N(x, 1); for Σ x³ both approach 3x² + 3s²."""
  from lime.lime_tabular import LimeTabularExplainer
  rng = np.random.default_rng(0)
  train = rng.normal(size=(100, D))
  train = (train - train.mean(0)) / train.std(0)  # exact z-scoring: lime's scaling is identity
  x = np.asarray(X, np.float64)
  explainer = LimeTabularExplainer(train, mode="regression", discretize_continuous=False,
                                   sample_around_instance=True, random_state=0)
  exp = explainer.explain_instance(x, lambda xb: np.sum(xb ** 3, axis=1), num_features=D,
                                   num_samples=5000)
  lime_coef = np.zeros(D)
  for j, c in exp.local_exp[1]:
    lime_coef[j] = c
  coef, intercept = local_linear(cubic, X, jax.random.key(0), n_samples=5000)
  s2 = 1.0 / (1.0 + 1.0 / (0.75 ** 2 * D))  # Gaussian sampling × kernel: variance s²
  closed = 3 * x ** 2 + 3 * s2
  np.testing.assert_allclose(lime_coef, closed, atol=0.2)
  np.testing.assert_allclose(coef, closed, atol=0.2)
  np.testing.assert_allclose(coef, lime_coef, atol=0.25)
  np.testing.assert_allclose(intercept, exp.intercept[1], atol=0.25)
  np.testing.assert_allclose(intercept, -2 * np.sum(x ** 3), atol=0.2)


def test_classification_outputs():
  logits_fn = lambda xb: xb @ W  # noqa: E731
  key = jax.random.key(2)
  coef_all, int_all = local_linear(logits_fn, X, key, output="probs", n_samples=100)
  pred = int(jnp.argmax(logits_fn(X[None])[0]))
  coef_one, int_one = local_linear(logits_fn, X, key, output="prob", n_samples=100)
  assert coef_all.shape == (D, 2) and coef_one.shape == (D,)
  np.testing.assert_allclose(coef_one, coef_all[:, pred], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(int_one, int_all[pred], rtol=1e-5, atol=1e-6)
  probs = model_outputs(logits_fn, X[None], output="prob", target=1 - pred)
  np.testing.assert_allclose(probs, jax.nn.softmax(logits_fn(X[None]))[:, 1 - pred], **F32)


def _softmax64(logits):
  z = np.asarray(logits, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_output_vocabulary_against_float64_numpy():
  """Every word of the vocabulary: every class ("probs", "logits", "raw" without a target) or one
  class (the target, else the class predicted at each row)."""
  w3 = jnp.asarray([[0.5, -1.0, 0.2], [2.0, 0.3, -0.4], [-0.7, 1.1, 0.9]], jnp.float32)
  xb = jnp.stack([X, -X, 2 * X, jnp.ones(D)])
  fn = lambda z: z @ w3  # noqa: E731
  logits = np.asarray(xb, np.float64) @ np.asarray(w3, np.float64)
  probs = _softmax64(logits)
  pred = logits.argmax(-1)
  rows = np.arange(len(pred))
  np.testing.assert_allclose(model_outputs(fn, xb, output="probs"), probs, **F32)
  for name in ("logits", "raw"):
    np.testing.assert_allclose(model_outputs(fn, xb, output=name), logits, **F32)
  np.testing.assert_allclose(model_outputs(fn, xb, output="prob"), probs[rows, pred], **F32)
  np.testing.assert_allclose(model_outputs(fn, xb, output="log_prob"),
                             np.log(probs[rows, pred]), **F32)
  np.testing.assert_allclose(model_outputs(fn, xb, output="logit"), logits[rows, pred], **F32)
  np.testing.assert_allclose(model_outputs(fn, xb, output="raw", target=2), logits[:, 2], **F32)
  np.testing.assert_allclose(model_outputs(fn, xb, output="log_prob", target=jnp.asarray(
      [0, 1, 2, 0])), np.log(probs[rows, [0, 1, 2, 0]]), **F32)
  with pytest.raises(ValueError, match="`target`"):
    model_outputs(fn, xb, output="probs", target=1)


def test_one_class_functions_reject_the_every_class_words():
  """"probs"/"logits" (every class) are not scores of one class: the one-class functions raise."""
  from idexpo_jax.core.predictor import target_scores
  for name in ("probs", "logits"):
    with pytest.raises(ValueError, match=f"`output`.*{name!r} gives every class"):
      target_scores(lambda xb: xb @ W, X[None], 0, output=name)


def test_regression_values_as_vector_or_column():
  key = jax.random.key(4)
  a = local_linear(cubic, X, key, n_samples=50)
  b = local_linear(lambda xb: cubic(xb)[:, None], X, key, n_samples=50)
  for u, v in zip(a, b):
    assert u.shape == v.shape
    np.testing.assert_allclose(u, v, **F32)  # another output shape is another program


def test_same_key_same_output_and_neighbours():
  f = jax.jit(lambda k: local_linear(cubic, X, k, n_samples=100))
  a, b, c = f(jax.random.key(5)), f(jax.random.key(5)), f(jax.random.key(6))
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(a[0], c[0])
  xs = gaussian_neighbors(X, jax.random.key(0), n=20000, sigma=0.3)
  assert xs.shape == (20000, D) and xs.dtype == X.dtype
  np.testing.assert_allclose(xs.mean(0), X, atol=0.02)
  np.testing.assert_allclose(xs.std(0), 0.3, atol=0.01)


@pytest.mark.parametrize("kwargs, name", [
    (dict(x=jnp.ones((2, D))), "`x`"),
    (dict(x=jnp.ones((D,), jnp.int32)), "`x`"),
    (dict(output="softmax"), "`output`"),
    (dict(output="predicted_prob"), "`output`"),
    (dict(n_samples=1), "`n_samples`"),
    (dict(kernel_width=0.0), "`kernel_width`"),
    (dict(logits_fn=lambda xb: xb[:, :, None]), "`logits_fn`"),
    (dict(logits_fn=cubic, output="probs"), "`output='probs'`"),
    (dict(logits_fn=cubic, output="prob"), "`output='prob'`"),
])
def test_bad_input_raises_naming_the_argument(kwargs, name):
  args = dict(logits_fn=lambda xb: xb @ W, x=X, key=jax.random.key(0))
  args.update(kwargs)
  with pytest.raises(ValueError, match=name):
    local_linear(args.pop("logits_fn"), args.pop("x"), args.pop("key"), **args)


def _lime_samples_and_explanation(train, x, predict, *, around_instance, n, seed):
  """The `lime` package's own samples (its RNG replayed) and its coefficients and intercept."""
  from lime.lime_tabular import LimeTabularExplainer
  explainer = LimeTabularExplainer(train, mode="regression", discretize_continuous=False,
                                   sample_around_instance=around_instance, random_state=seed,
                                   feature_selection="none")
  exp = explainer.explain_instance(x, predict, num_features=len(x), num_samples=n)
  coef = np.zeros(len(x))
  for j, c in exp.local_exp[1]:
    coef[j] = c
  # lime draws `normal(0, 1, n·D)` from RandomState(seed), scales by the training sd, adds the
  # training mean (or x) and puts x first: the same draws give its samples.
  eps = np.random.RandomState(seed).normal(0, 1, n * len(x)).reshape(n, len(x))
  sd, mu = explainer.scaler.scale_, explainer.scaler.mean_
  samples = eps * sd + (x if around_instance else mu)
  samples[0] = x
  return samples, coef, exp.intercept[1]


@pytest.mark.parametrize("around_instance", [False, True])
def test_fit_on_lime_samples_equals_lime_package(around_instance):
  """On the package's own samples, `local_linear_fit` is `lime_tabular`'s explanation (z-scored
  training data, so lime's scaler is the identity)."""
  rng = np.random.default_rng(1)
  train = rng.normal(size=(200, 4)) * [1.0, 2.0, 0.5, 1.5] + [1.0, -2.0, 0.0, 3.0]
  train = (train - train.mean(0)) / train.std(0)
  x = np.array([0.8, -0.3, 1.2, -1.5])
  fn = lambda xb: jnp.tanh(xb[:, 0]) * xb[:, 1] + xb[:, 2] ** 2 - 0.5 * xb[:, 3]  # noqa: E731
  predict = lambda xb: np.asarray(fn(jnp.asarray(xb, jnp.float32)), np.float64)  # noqa: E731
  samples, lime_coef, lime_intercept = _lime_samples_and_explanation(
      train, x, predict, around_instance=around_instance, n=500, seed=3)
  coef, intercept = local_linear_fit(fn, jnp.asarray(x, jnp.float32),
                                     jnp.asarray(samples, jnp.float32))
  np.testing.assert_allclose(coef, lime_coef, rtol=1e-4, atol=1e-4)
  # lime's intercept is in its scaled space, ours in input space: equal when the scaler is ~id.
  np.testing.assert_allclose(intercept, lime_intercept, rtol=1e-4, atol=1e-4)


def test_center_option_samples_around_the_centre():
  """`center=c`: samples `c + σ·ε` (same `ε` as around `x`), the first sample `x` itself."""
  key = jax.random.key(4)
  center = jnp.asarray([0.1, 0.2, -0.3], jnp.float32)
  eps = jax.random.normal(key, (50, D), jnp.float32)
  samples = (center + 0.7 * eps).at[0].set(X)
  expected = local_linear_fit(cubic, X, samples)
  got = local_linear(cubic, X, key, n_samples=50, sigma=0.7, center=center)
  for g, e in zip(got, expected):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
  # Around the mean the explanation of a curved f is wider (a global slope), not the local one.
  near = local_linear(cubic, X, key, n_samples=2000)[0]
  far = local_linear(cubic, X, key, n_samples=2000, center=jnp.zeros(D))[0]
  assert np.abs(np.asarray(far) - np.asarray(near)).max() > 0.5


# --- Loud edges (issue 13): scales given as arrays, traced scales, empty batches.


@pytest.mark.parametrize("kwargs,name", [(dict(sigma=0.0), "sigma"),
                                         (dict(sigma=jnp.asarray(0.0)), "sigma"),
                                         (dict(sigma=np.float32(-1.0)), "sigma"),
                                         (dict(kernel_width=jnp.asarray(-2.0)), "kernel_width"),
                                         (dict(ridge=-1.0), "ridge"),
                                         (dict(n_samples=10.0), "n_samples")])
def test_invalid_options_raise_naming_them(kwargs, name):
  fn = lambda xb: xb @ jnp.ones((3, 2))
  with pytest.raises(ValueError, match=f"`{name}`"):
    local_linear(fn, jnp.ones(3), jax.random.PRNGKey(0), **({"n_samples": 10} | kwargs))


def test_traced_non_positive_scales_give_nan():
  fn = lambda xb: xb @ jnp.ones((3, 2))
  coef, _ = jax.jit(lambda s: local_linear(fn, jnp.ones(3), jax.random.PRNGKey(0), n_samples=10,
                                           sigma=s))(0.0)
  assert np.isnan(coef).all()
  assert np.isnan(jax.jit(lambda s: gaussian_neighbors(jnp.ones(3), jax.random.PRNGKey(0), n=2,
                                                       sigma=s))(-1.0)).all()


def test_empty_batch_raises():
  with pytest.raises(ValueError, match="`xb`"):
    model_outputs(lambda xb: xb, jnp.ones((0, 3)))


def test_one_class_target_out_of_range_raises_or_gives_nan():
  """A concrete class outside [0, K) raises naming `target`; a traced one poisons its rows."""
  xb = jnp.stack([X, -X])
  fn = lambda z: z @ W  # noqa: E731
  with pytest.raises(ValueError, match="`target`"):
    model_outputs(fn, xb, output="prob", target=2)
  with pytest.raises(ValueError, match="`target`"):
    model_outputs(fn, xb, output="prob", target=jnp.asarray([0, 1, 1]))
  out = jax.jit(lambda t: model_outputs(fn, xb, output="prob", target=t))(
      jnp.asarray([1, 5]))
  prob = jax.nn.softmax(fn(xb), axis=-1)
  np.testing.assert_allclose(out[0], prob[0, 1], **F32)
  assert np.isnan(out[1])
  coef, _ = jax.jit(lambda t: local_linear(fn, X, jax.random.key(0), n_samples=20,
                                           output="prob", target=t))(7)
  assert np.isnan(coef).all()
