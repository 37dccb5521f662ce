"""Tests of sensitivity-n against a brute-force NumPy/float64 reference on the same subsets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idexpo_jax.core import masking
from idexpo_jax.metrics.sensitivity import batch_sensitivity_n, random_subsets, sensitivity_n
from tolerances import F32


def _softmax_linear(w, c):
  return lambda xb: xb.reshape(xb.shape[0], -1) @ w + c


def _np_reference(w, c, x, phi, target, removed, baseline, segments=None):
  """Float64 loop over subsets: masked input, softmax probability, np.corrcoef."""
  w, c, x, phi = (np.asarray(a, np.float64) for a in (w, c, x, phi))
  b = np.broadcast_to(np.asarray(baseline, np.float64), x.shape)

  def prob(xi):
    logits = xi.reshape(-1) @ w + c
    e = np.exp(logits - logits.max())
    return e[target] / e.sum()

  p0 = prob(x)
  drops, masses = [], []
  for s in np.asarray(removed, np.float64):
    m = s[segments][..., None] if segments is not None else s.reshape(x.shape)
    drops.append(p0 - prob(m * b + (1 - m) * x))
    masses.append(s @ phi.reshape(-1))
  return np.corrcoef(masses, drops)[0, 1]


def test_matches_float64_reference_tabular():
  rng = np.random.default_rng(0)
  d, k = 7, 3
  w, c = rng.normal(size=(d, k)), rng.normal(size=k)
  x, phi, b = rng.normal(size=d), rng.normal(size=d), rng.normal(size=d)
  key = jax.random.key(3)
  logits_fn = _softmax_linear(jnp.asarray(w, jnp.float32), jnp.asarray(c, jnp.float32))
  got = jax.jit(lambda x_, p_, b_: sensitivity_n(logits_fn, x_, p_, 1, key, n=3, n_subsets=50,
                                                 baseline=b_))(
      jnp.asarray(x, jnp.float32), jnp.asarray(phi, jnp.float32), jnp.asarray(b, jnp.float32))
  want = _np_reference(w, c, x, phi, 1, random_subsets(key, d, 3, 50), b)
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_matches_float64_reference_segmented_image():
  rng = np.random.default_rng(1)
  h, wd, ch, k = 4, 6, 2, 4
  seg = masking.grid_segments(h, wd, 2)  # 6 units
  w, c = 0.3 * rng.normal(size=(h * wd * ch, k)), rng.normal(size=k)
  x = rng.normal(size=(h, wd, ch))
  phi = rng.normal(size=6)
  base = np.full((1, 1, ch), 0.25)
  key = jax.random.key(7)
  logits_fn = _softmax_linear(jnp.asarray(w, jnp.float32), jnp.asarray(c, jnp.float32))
  got = jax.jit(lambda x_, p_: sensitivity_n(
      logits_fn, x_, p_, 2, key, n=2, n_subsets=40, baseline=jnp.asarray(base, jnp.float32),
      segments=seg, chunk_size=16))(jnp.asarray(x, jnp.float32), jnp.asarray(phi, jnp.float32))
  want = _np_reference(w, c, x, phi, 2, random_subsets(key, 6, 2, 40), base, seg)
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_linear_probability_model_gives_one():
  """p_0(x) = 0.5 + w·x exactly (two classes with logits log p), φ = w ⊙ (x − b) → corr 1."""
  rng = np.random.default_rng(2)
  d = 20
  w = jnp.asarray(rng.uniform(-0.02, 0.02, d), jnp.float32)
  x = jnp.asarray(rng.normal(size=d), jnp.float32)
  b = jnp.asarray(rng.normal(size=d), jnp.float32)

  def logits_fn(xb):
    p0 = 0.5 + xb @ w
    return jnp.log(jnp.stack([p0, 1.0 - p0], axis=-1))

  got = jax.jit(lambda k: sensitivity_n(logits_fn, x, w * (x - b), 0, k, n=6, n_subsets=100,
                                        baseline=b))(jax.random.key(0))
  np.testing.assert_allclose(got, 1.0, atol=1e-4)
  # The opposite attribution is perfectly anti-correlated.
  got = sensitivity_n(logits_fn, x, -w * (x - b), 0, jax.random.key(0), n=6, baseline=b)
  np.testing.assert_allclose(got, -1.0, atol=1e-4)


def test_same_key_same_value_and_batch_matches_loop():
  rng = np.random.default_rng(4)
  w = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
  logits_fn = _softmax_linear(w, jnp.zeros(3, jnp.float32))
  xb = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
  phib = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
  tb = jnp.asarray([0, 1, 2], jnp.int32)
  fn = jax.jit(lambda k: batch_sensitivity_n(logits_fn, xb, phib, tb, k, n=2, n_subsets=30,
                                             baseline=0.0))
  a, b_ = fn(jax.random.key(11)), fn(jax.random.key(11))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b_))
  assert not np.array_equal(np.asarray(a), np.asarray(fn(jax.random.key(12))))
  keys = jax.random.split(jax.random.key(11), 3)
  loop = [sensitivity_n(logits_fn, xb[i], phib[i], tb[i], keys[i], n=2, n_subsets=30,
                        baseline=0.0) for i in range(3)]
  np.testing.assert_allclose(a, np.stack(loop), **F32)


def test_zero_variance_returns_zero_not_nan():
  logits_fn = _softmax_linear(jnp.ones((4, 2), jnp.float32), jnp.zeros(2, jnp.float32))
  x = jnp.arange(4.0, dtype=jnp.float32)
  got = sensitivity_n(logits_fn, x, jnp.ones(4, jnp.float32), 0, jax.random.key(0), n=2,
                      baseline=0.0)  # constant attribution: constant mass
  assert float(got) == 0.0


@settings(max_examples=15, deadline=None)
@given(n_units=st.integers(2, 12), data=st.data())
def test_random_subsets_have_exactly_n_units(n_units, data):
  n = data.draw(st.integers(1, n_units - 1))
  s = np.asarray(random_subsets(jax.random.key(n_units), n_units, n, 8))
  assert s.shape == (8, n_units)
  assert set(np.unique(s)) <= {0.0, 1.0}
  np.testing.assert_array_equal(s.sum(1), n)


def test_bad_inputs_raise():
  logits_fn = _softmax_linear(jnp.ones((4, 2), jnp.float32), jnp.zeros(2, jnp.float32))
  x = jnp.ones(4, jnp.float32)
  with pytest.raises(ValueError, match="`n`"):
    sensitivity_n(logits_fn, x, x, 0, jax.random.key(0), n=4, baseline=0.0)
  with pytest.raises(ValueError, match="`n_subsets`"):
    sensitivity_n(logits_fn, x, x, 0, jax.random.key(0), n=2, n_subsets=1, baseline=0.0)
  with pytest.raises(ValueError, match="`attribution`"):
    sensitivity_n(logits_fn, x, jnp.ones(3, jnp.float32), 0, jax.random.key(0), n=2,
                  baseline=0.0)


# --- Loud edges (issue 13): traced targets and NaN give NaN (not the zero-variance 0).


def _problem():
  rng = np.random.default_rng(3)
  w = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  x = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
  phi = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
  return _softmax_linear(w, jnp.zeros(3)), x, phi


@pytest.mark.parametrize("target", [-1, 3])
def test_target_out_of_range_raises_eagerly_and_is_nan_when_traced(target):
  fn, x, phi = _problem()
  kw = dict(n=2, n_subsets=10, baseline=0.0)
  with pytest.raises(ValueError, match="`target`"):
    sensitivity_n(fn, x, phi, target, jax.random.PRNGKey(0), **kw)
  assert np.isnan(jax.jit(lambda t: sensitivity_n(fn, x, phi, t, jax.random.PRNGKey(0), **kw))(
      target))
  with pytest.raises(ValueError, match="`targets`"):
    batch_sensitivity_n(fn, x[None], phi[None], jnp.asarray([target]), jax.random.PRNGKey(0), **kw)
  out = jax.jit(lambda t: batch_sensitivity_n(fn, jnp.stack([x, x]), jnp.stack([phi, phi]), t,
                                              jax.random.PRNGKey(0), **kw))(jnp.asarray([1, target]))
  assert np.isfinite(out[0]) and np.isnan(out[1])


def test_nan_attribution_raises_eagerly_and_is_nan_when_traced():
  fn, x, phi = _problem()
  bad = phi.at[0].set(jnp.nan)
  kw = dict(n=2, n_subsets=10, baseline=0.0)
  with pytest.raises(ValueError, match="`attribution`"):
    sensitivity_n(fn, x, bad, 1, jax.random.PRNGKey(0), **kw)
  assert np.isnan(jax.jit(lambda a: sensitivity_n(fn, x, a, 1, jax.random.PRNGKey(0), **kw))(bad))


def test_raw_output_and_integer_options():
  fn, x, phi = _problem()
  regression = lambda xb: fn(xb)[:, 0]
  with pytest.raises(ValueError, match="`output='prob'`"):
    sensitivity_n(regression, x, phi, 0, jax.random.PRNGKey(0), n=2, baseline=0.0)
  # A linear regression model and φ = w ⊙ (x − b): the output change is exactly the mass.
  w0 = np.asarray(jax.jacobian(lambda v: regression(v[None])[0])(x))
  r = sensitivity_n(regression, x, jnp.asarray(w0) * x, 0, jax.random.PRNGKey(1), n=3,
                    n_subsets=20, baseline=0.0, output="raw")
  np.testing.assert_allclose(r, 1.0, atol=1e-5)
  with pytest.raises(ValueError, match="`n`"):
    sensitivity_n(fn, x, phi, 0, jax.random.PRNGKey(0), n=2.0, baseline=0.0)
