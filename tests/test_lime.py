"""LIME vs scikit-learn's Ridge, the `lime` package, closed forms and finite differences."""

import functools

import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.linear_model
import sklearn.metrics
from jax.test_util import check_grads
from lime import lime_image, lime_tabular

from idexpo_jax.regularisers.idexpo import IdExpo
from idexpo_jax.explainers.lime import lime, lime_distances, lime_samples
from idexpo_jax.core.masking import grid_segments
from tolerances import F32

N_CLASSES = 3
D = 7
SEG = grid_segments(8, 8, 2)  # 16 segments on an 8×8×1 image


def init_params(key, d_in):
  k1, k2 = jax.random.split(key)
  return {"w1": jax.random.normal(k1, (d_in, 6)) / np.sqrt(d_in),
          "w2": jax.random.normal(k2, (6, N_CLASSES))}


def logits(params, xb):
  return jnp.tanh(xb.reshape(xb.shape[0], -1) @ params["w1"]) @ params["w2"]


def problem(image: bool):
  """(logits_fn, x, baseline, segments) of a small random model."""
  shape = (8, 8, 1) if image else (D,)
  params = init_params(jax.random.PRNGKey(0), int(np.prod(shape)))
  x = jax.random.normal(jax.random.PRNGKey(1), shape)
  baseline = jnp.full(shape, 0.1) if image else jnp.linspace(-0.5, 0.5, D)
  return functools.partial(logits, params), x, baseline, (SEG if image else None)


@pytest.mark.parametrize("image,distance,ridge", [(False, "euclidean", 1.0),
                                                  (False, "cosine", 0.1),
                                                  (True, "cosine", 1.0)])
def test_equals_sklearn_ridge_on_the_same_samples(image, distance, ridge):
  fn, x, b, seg = problem(image)
  kw = dict(segments=seg, baseline=b, n_samples=300, distance=distance)
  key = jax.random.PRNGKey(3)
  s = jax.jit(lambda x: lime_samples(fn, x, 2, key, **kw))(x)
  phi = jax.jit(lambda x: lime(fn, x, 2, key, ridge=ridge, **kw))(x)
  ref = sklearn.linear_model.Ridge(alpha=ridge).fit(
      np.asarray(s.z, np.float64), np.asarray(s.f, np.float64),
      sample_weight=np.asarray(s.weights, np.float64))
  np.testing.assert_allclose(phi, ref.coef_, atol=1e-5)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_samples_values_and_weights_follow_the_lime_package(distance):
  fn, x, b, _ = problem(image=False)
  key = jax.random.PRNGKey(4)
  s = jax.jit(lambda x: lime_samples(fn, x, 1, key, baseline=b, n_samples=400,
                                     distance=distance))(x)
  z = np.asarray(s.z, np.float64)
  # Samples: row 0 is the example; the rest are fair coin flips.
  np.testing.assert_array_equal(z[0], 1.0)
  assert set(np.unique(z)) <= {0.0, 1.0}
  assert abs(z[1:].mean() - 0.5) < 5 * 0.5 / np.sqrt(z[1:].size)
  # Values: the target probability with removed features set to the baseline.
  xs = np.where(z > 0, np.asarray(x, np.float64), np.asarray(b, np.float64))
  p = jax.nn.softmax(fn(jnp.asarray(xs, jnp.float32)), axis=-1)[:, 1]
  np.testing.assert_allclose(s.f, p, **F32)
  # Distances as lime computes them; weights from lime's own kernel with its default width.
  dist = sklearn.metrics.pairwise_distances(z, z[:1], metric=distance).ravel()
  np.testing.assert_allclose(s.distances, dist, **F32)
  if distance == "euclidean":
    explainer = lime_tabular.LimeTabularExplainer(np.zeros((4, D)), discretize_continuous=False)
  else:
    explainer = lime_image.LimeImageExplainer()
  base = explainer.base
  np.testing.assert_allclose(s.weights, base.kernel_fn(dist), **F32)
  # The explanation: lime's ridge on our samples, values and distances.
  phi = jax.jit(lambda x: lime(fn, x, 1, key, baseline=b, n_samples=400,
                               distance=distance))(x)
  labels = np.zeros((z.shape[0], N_CLASSES))
  labels[:, 1] = np.asarray(s.f, np.float64)
  _, coefs, _, _ = base.explain_instance_with_data(z, labels, dist, 1, D,
                                                   feature_selection="none")
  ref = np.array([c for _, c in sorted(coefs)])
  np.testing.assert_allclose(phi, ref, atol=1e-5)


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(hnp.arrays(np.int8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1,
                                                      max_side=9), elements=hypothesis.strategies
                             .integers(0, 1)))
def test_distances_match_sklearn_including_empty_rows(z):
  for metric in ("cosine", "euclidean"):
    ref = sklearn.metrics.pairwise_distances(z.astype(np.float64), np.ones((1, z.shape[1])),
                                             metric=metric).ravel()
    ours = lime_distances(jnp.asarray(z, jnp.float32), distance=metric)
    np.testing.assert_allclose(ours, ref, **F32)


def test_affine_probability_recovers_weight_times_displacement():
  w = jnp.linspace(-0.04, 0.05, D)
  b = jnp.linspace(-1.0, 1.0, D)
  x = jax.random.normal(jax.random.PRNGKey(5), (D,))

  def affine(xb):  # two classes; p_1(x) = 0.5 + w·x exactly
    q = 0.5 + xb @ w
    return jnp.stack([jnp.log1p(-q), jnp.log(q)], axis=-1)

  phi = jax.jit(lambda x: lime(affine, x, 1, jax.random.PRNGKey(0), baseline=b, n_samples=200,
                               distance="euclidean", ridge=0.0))(x)
  np.testing.assert_allclose(phi, w * (x - b), atol=1e-5)


def test_gradients_match_finite_differences(x64):
  with x64():
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          init_params(jax.random.PRNGKey(0), D))
    x = jax.random.normal(jax.random.PRNGKey(1), (D,), jnp.float64)
    r = jax.random.normal(jax.random.PRNGKey(2), (D,), jnp.float64)

    def loss(params):
      phi = lime(functools.partial(logits, params), x, 0, jax.random.PRNGKey(3),
                 baseline=jnp.zeros((D,), jnp.float64), n_samples=64, distance="euclidean")
      return jnp.sum(phi * r)

    check_grads(jax.jit(loss), (params,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_same_key_bit_identical_and_keys_matter():
  fn, x, b, seg = problem(image=True)
  f = jax.jit(lambda key: lime(fn, x, 0, key, segments=seg, baseline=b, n_samples=100))
  a1, a2 = f(jax.random.PRNGKey(7)), f(jax.random.PRNGKey(7))
  np.testing.assert_array_equal(a1, a2)
  assert not np.array_equal(a1, f(jax.random.PRNGKey(8)))


def test_vmapped_equals_looped_and_chunked_equals_unchunked():
  fn, _, b, seg = problem(image=True)
  xb = jax.random.normal(jax.random.PRNGKey(9), (3, 8, 8, 1))
  yb = jnp.array([0, 2, 1])
  keys = jax.random.split(jax.random.PRNGKey(10), 3)
  one = lambda x, y, k, c=None: lime(fn, x, y, k, segments=seg, baseline=b, n_samples=50,
                                     chunk_size=c)
  batched = jax.jit(jax.vmap(one))(xb, yb, keys)
  looped = jnp.stack([jax.jit(one)(xb[i], yb[i], keys[i]) for i in range(3)])
  np.testing.assert_allclose(batched, looped, **F32)
  chunked = jax.jit(jax.vmap(functools.partial(one, c=16)))(xb, yb, keys)
  np.testing.assert_allclose(chunked, batched, **F32)


def test_plugs_into_idexpo_penalty_with_finite_gradients():
  seg = grid_segments(8, 8, 4)
  params = init_params(jax.random.PRNGKey(0), 64)
  xb = jax.random.normal(jax.random.PRNGKey(11), (2, 8, 8, 1))
  yb = jnp.array([1, 0])
  explainer = functools.partial(lime, segments=seg, baseline=0.1, n_samples=20)

  def penalty(params):
    return IdExpo(explainer, baseline=0.1, segments=seg, n_steps=4)(functools.partial(logits, params), xb, yb, jax.random.PRNGKey(0))[0]

  value, grads = jax.jit(jax.value_and_grad(penalty))(params)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("kwargs,name", [
    (dict(segments=np.zeros((4, 4), np.int32)), "segments"),
    (dict(target=jnp.array([0, 1])), "target"),
    (dict(n_samples=1), "n_samples"),
    (dict(distance="manhattan"), "distance"),
    (dict(kernel_width=0.0), "kernel_width"),
    (dict(baseline=jnp.zeros((3, 3, 1))), "baseline"),
])
def test_bad_arguments_raise_naming_them(kwargs, name):
  fn, x, b, seg = problem(image=True)
  args = dict(segments=seg, baseline=b, target=0) | kwargs
  target = args.pop("target")
  with pytest.raises(ValueError, match=name):
    lime(fn, x, target, jax.random.PRNGKey(0), **args)


# --- Loud edges (issue 13): outputs, targets, integer inputs, options, half precision.


def _ridge_reference(z, f, w, ridge):
  return sklearn.linear_model.Ridge(alpha=ridge).fit(
      np.asarray(z, np.float64), np.asarray(f, np.float64),
      sample_weight=np.asarray(w, np.float64)).coef_


@pytest.mark.parametrize("columns", [0, 1])  # a regression model returning (B,) or (B, 1)
def test_raw_output_explains_a_regression_model(columns):
  w = np.random.default_rng(0).normal(size=(D,))
  model = lambda b: (b @ jnp.asarray(w, b.dtype)).reshape((-1,) + (1,) * columns)
  x = jnp.linspace(-1.0, 1.0, D)
  key = jax.random.PRNGKey(2)
  kw = dict(baseline=0.0, n_samples=200, distance="euclidean", output="raw")
  s = lime_samples(model, x, 0, key, **kw)
  f = (np.asarray(s.z, np.float64) * np.asarray(x, np.float64)) @ w  # the model's own output
  np.testing.assert_allclose(s.f, f, atol=1e-5)
  np.testing.assert_allclose(lime(model, x, 0, key, **kw), _ridge_reference(s.z, f, s.weights, 1.0),
                             atol=1e-4)
  with pytest.raises(ValueError, match=r"`output='prob'`.*output='raw'"):
    lime(model, x, 0, key, baseline=0.0, n_samples=20)  # a softmax of one output is constant


def test_raw_output_of_a_probability_model_is_not_softmaxed_again():
  fn, x, b, seg = problem(True)
  key = jax.random.PRNGKey(3)
  kw = dict(segments=seg, baseline=b, n_samples=100)
  probs = lambda xb: jax.nn.softmax(fn(xb), axis=-1)
  np.testing.assert_allclose(lime(probs, x, 1, key, output="raw", **kw), lime(fn, x, 1, key, **kw),
                             atol=1e-5)
  s = lime_samples(fn, x, 1, key, output="log_prob", **kw)
  np.testing.assert_allclose(lime(fn, x, 1, key, output="log_prob", **kw),
                             _ridge_reference(s.z, s.f, s.weights, 1.0), atol=1e-4)


@pytest.mark.parametrize("target", [-1, N_CLASSES])
def test_target_out_of_range_raises_eagerly_and_gives_nan_under_jit(target):
  fn, x, b, seg = problem(True)
  kw = dict(segments=seg, baseline=b, n_samples=20)
  with pytest.raises(ValueError, match="`target`"):
    lime(fn, x, target, jax.random.PRNGKey(0), **kw)
  phi = jax.jit(lambda t: lime(fn, x, t, jax.random.PRNGKey(0), **kw))(target)
  assert np.isnan(phi).all()
  phis = jax.vmap(lambda t: lime(fn, x, t, jax.random.PRNGKey(0), **kw))(jnp.asarray([1, target]))
  assert np.isfinite(phis[0]).all() and np.isnan(phis[1]).all()


def test_integer_image_is_explained_as_the_same_float_image():
  fn, _, _, seg = problem(True)
  x = jnp.arange(64, dtype=jnp.int32).reshape(8, 8, 1) % 5
  kw = dict(segments=seg, baseline=0.5, n_samples=50)
  key = jax.random.PRNGKey(4)
  phi = lime(fn, x, 2, key, **kw)
  assert phi.dtype == jnp.float32
  np.testing.assert_array_equal(phi, lime(fn, x.astype(jnp.float32), 2, key, **kw))


@pytest.mark.parametrize("kwargs,name", [(dict(kernel_width=0.0), "kernel_width"),
                                         (dict(kernel_width=-1.0), "kernel_width"),
                                         (dict(ridge=-0.5), "ridge")])
def test_invalid_options_raise_eagerly_and_give_nan_when_traced(kwargs, name):
  fn, x, b, _ = problem(False)
  with pytest.raises(ValueError, match=f"`{name}`"):
    lime(fn, x, 0, jax.random.PRNGKey(0), baseline=b, n_samples=20, **kwargs)
  (arg, value), = kwargs.items()
  phi = jax.jit(lambda v: lime(fn, x, 0, jax.random.PRNGKey(0), baseline=b, n_samples=20,
                               **{arg: v}))(value)
  assert np.isnan(phi).all()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_models_are_solved_in_float32(dtype):
  fn, x, b, seg = problem(True)
  kw = dict(segments=seg, baseline=b, n_samples=100, output="logit")
  key = jax.random.PRNGKey(5)
  half = lambda xb: fn(xb).astype(dtype)
  phi = lime(half, x, 1, key, **kw)
  assert phi.dtype == dtype
  s = lime_samples(half, x, 1, key, **kw)
  np.testing.assert_allclose(np.asarray(phi, np.float64),
                             _ridge_reference(s.z, np.asarray(s.f, np.float64), s.weights, 1.0),
                             rtol=2e-2, atol=2e-2)


# --- Bit-packed Bernoulli(½) masks and antithetic pairs (issue 15).


def test_bit_packed_masks_are_fair_independent_coins():
  from idexpo_jax.explainers.lime import random_binary_masks
  z = np.asarray(jax.jit(lambda k: random_binary_masks(k, 4001, 37))(jax.random.PRNGKey(0)))
  assert z.shape == (4001, 37) and set(np.unique(z)) <= {0.0, 1.0}
  n = z.size  # the overall mean is Binomial(n, ½)/n: within 5 standard deviations of ½
  assert abs(z.mean() - 0.5) < 5 * 0.5 / np.sqrt(n)
  col = z.mean(0)  # every unit (every bit position of the packed words) is a fair coin
  assert np.all(np.abs(col - 0.5) < 5 * 0.5 / np.sqrt(len(z)))
  # Pairs of units are independent: P(both kept) = ¼ for adjacent and word-straddling units.
  for i, j in [(0, 1), (30, 31), (31, 32), (5, 36)]:
    both = np.mean(z[:, i] * z[:, j])
    assert abs(both - 0.25) < 5 * np.sqrt(0.25 * 0.75 / len(z))


def test_bit_packed_masks_reach_every_pattern_uniformly_on_small_d():
  from idexpo_jax.explainers.lime import random_binary_masks
  d, n = 3, 8000
  z = np.asarray(random_binary_masks(jax.random.PRNGKey(1), n, d)).astype(int)
  counts = np.bincount(z @ (1 << np.arange(d)), minlength=2 ** d)
  p = 1 / 2 ** d  # each of the 8 patterns: Binomial(n, 1/8)
  assert np.all(np.abs(counts - n * p) < 5 * np.sqrt(n * p * (1 - p)))


@pytest.mark.parametrize("n_rows", [6, 7])
def test_paired_masks_are_antithetic(n_rows):
  from idexpo_jax.explainers.lime import random_binary_masks
  z = np.asarray(random_binary_masks(jax.random.PRNGKey(2), n_rows, 40, paired=True))
  assert z.shape == (n_rows, 40)
  np.testing.assert_array_equal(z[1::2], 1 - z[0:2 * (n_rows // 2):2])
  assert not np.array_equal(z[0], z[2])  # fresh draws between pairs


def test_paired_lime_equals_sklearn_ridge_and_pairs_its_samples():
  fn, x, b, seg = problem(image=False)
  kw = dict(segments=seg, baseline=b, n_samples=301, distance="euclidean", paired=True)
  key = jax.random.PRNGKey(4)
  s = jax.jit(lambda x: lime_samples(fn, x, 1, key, **kw))(x)
  np.testing.assert_array_equal(s.z[0], 1.0)  # the example itself, then antithetic pairs
  np.testing.assert_array_equal(s.z[2::2], 1 - s.z[1::2])
  phi = jax.jit(lambda x: lime(fn, x, 1, key, **kw))(x)
  ref = sklearn.linear_model.Ridge(alpha=1.0).fit(
      np.asarray(s.z, np.float64), np.asarray(s.f, np.float64),
      sample_weight=np.asarray(s.weights, np.float64))
  np.testing.assert_allclose(phi, ref.coef_, atol=1e-5)
