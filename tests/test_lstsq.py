"""The least-squares solvers against scikit-learn and a float64 KKT solve."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from sklearn.linear_model import LinearRegression, Ridge

from idexpo_jax.core.lstsq import constrained_least_squares, weighted_least_squares


def _data(n=60, d=5, k=None, seed=0, binary=False):
  rng = np.random.default_rng(seed)
  z = rng.integers(0, 2, size=(n, d)).astype(np.float64) if binary else rng.normal(size=(n, d))
  f = rng.normal(size=(n,) if k is None else (n, k))
  w = rng.uniform(0.1, 2.0, size=n)
  return z, f, w


_wls = jax.jit(weighted_least_squares, static_argnames=("fit_intercept",))


@pytest.mark.parametrize("ridge", [0.0, 0.5, 3.0])
@pytest.mark.parametrize("binary", [False, True])
def test_matches_sklearn_ridge(ridge, binary):
  z, f, w = _data(binary=binary, seed=int(ridge * 10) + binary)
  coef, intercept = _wls(jnp.asarray(z, jnp.float32), jnp.asarray(f, jnp.float32),
                         jnp.asarray(w, jnp.float32), ridge=ridge)
  ref = (LinearRegression() if ridge == 0 else Ridge(alpha=ridge)).fit(z, f, sample_weight=w)
  np.testing.assert_allclose(coef, ref.coef_, atol=1e-5)
  np.testing.assert_allclose(intercept, ref.intercept_, atol=1e-5)


def test_multi_output_and_no_intercept():
  z, f, w = _data(k=3, seed=5)
  args = [jnp.asarray(a, jnp.float32) for a in (z, f, w)]
  coef, intercept = _wls(*args, ridge=1.0)
  ref = Ridge(alpha=1.0).fit(z, f, sample_weight=w)
  assert coef.shape == (5, 3) and intercept.shape == (3,)
  np.testing.assert_allclose(coef, ref.coef_.T, atol=1e-5)
  np.testing.assert_allclose(intercept, ref.intercept_, atol=1e-5)
  coef, intercept = _wls(*args, ridge=1.0, fit_intercept=False)
  ref = Ridge(alpha=1.0, fit_intercept=False).fit(z, f, sample_weight=w)
  np.testing.assert_allclose(coef, ref.coef_.T, atol=1e-5)
  np.testing.assert_array_equal(intercept, 0.0)


def test_gradient_wrt_targets_is_the_hat_matrix():
  """`coef` is linear in `f`: its Jacobian equals `(Z̃ᵀWZ̃ + λI)⁻¹ Z̃ᵀW(I − 1wᵀ/Σw)` (float64)."""
  z, f, w = _data(n=20, d=3, seed=6)
  jac = jax.jit(jax.jacrev(lambda f: weighted_least_squares(
      jnp.asarray(z, jnp.float32), f, jnp.asarray(w, jnp.float32), ridge=0.7)[0]))(
          jnp.asarray(f, jnp.float32))
  zc = z - (w @ z) / w.sum()
  center = np.eye(20) - np.outer(np.ones(20), w) / w.sum()
  hat = np.linalg.solve(zc.T @ (w[:, None] * zc) + 0.7 * np.eye(3), zc.T * w) @ center
  np.testing.assert_allclose(jac, hat, atol=1e-5)


def kkt_reference(z, f, w, total, offset):
  """min Σ w (f − offset − zφ)² s.t. 1ᵀφ = total, from the KKT system in float64."""
  d = z.shape[1]
  a = np.zeros((d + 1, d + 1))
  a[:d, :d] = 2 * z.T @ (w[:, None] * z)
  a[:d, d] = a[d, :d] = 1.0
  rhs = np.concatenate([2 * z.T @ (w * (f - offset)), [total]])
  return np.linalg.solve(a, rhs)[:d]


@pytest.mark.parametrize("d", [1, 2, 6])
def test_constrained_matches_kkt(d):
  z, f, w = _data(n=40, d=d, seed=d, binary=True)
  total, offset = 0.8, -0.3
  phi = jax.jit(lambda z, f, w, t: constrained_least_squares(z, f, w, total=t, offset=offset))(
      *[jnp.asarray(a, jnp.float32) for a in (z, f, w)], jnp.float32(total))
  assert phi.shape == (d,)
  np.testing.assert_allclose(phi.sum(), total, atol=1e-5)  # the constraint holds
  np.testing.assert_allclose(phi, kkt_reference(z, f, w, total, offset), atol=1e-4)


def test_wrong_shapes_name_the_argument():
  z, f, w = (jnp.zeros((8, 3)), jnp.zeros((8,)), jnp.ones((8,)))
  with pytest.raises(ValueError, match="`w`"):
    weighted_least_squares(z, f, jnp.ones((7,)))
  with pytest.raises(ValueError, match="`z`"):
    weighted_least_squares(jnp.zeros((8,)), f, w)
  with pytest.raises(ValueError, match="`f`"):
    constrained_least_squares(z, jnp.zeros((8, 2)), w, total=1.0, offset=0.0)
  with pytest.raises(ValueError, match="`w`"):
    constrained_least_squares(z, f, jnp.ones((9,)), total=1.0, offset=0.0)
  with pytest.raises(ValueError, match="`total`"):
    constrained_least_squares(z, f, w, total=jnp.ones((3,)), offset=0.0)


def test_singular_system_gives_minimum_norm_solution_not_nan():
  # Two identical columns: the normal equations are singular without a ridge.
  rng = np.random.default_rng(0)
  z = rng.integers(0, 2, size=(12, 3)).astype(np.float64)
  z[:, 2] = z[:, 1]
  f = rng.normal(size=12)
  w = rng.uniform(0.5, 2.0, size=12)
  coef, intercept = jax.jit(lambda a, b, c: weighted_least_squares(a, b, c))(
      jnp.asarray(z, jnp.float32), jnp.asarray(f, jnp.float32), jnp.asarray(w, jnp.float32))
  zc = z - (w @ z) / w.sum()
  fc = f - (w @ f) / w.sum()
  sw = np.sqrt(w)[:, None]
  expected = np.linalg.lstsq(sw * zc, sw[:, 0] * fc, rcond=None)[0]  # minimum norm
  assert np.all(np.isfinite(np.asarray(coef)))
  np.testing.assert_allclose(coef, expected, rtol=1e-4, atol=1e-4)


# --- Loud edges (issue 13): negative ridge, half precision.


def test_negative_ridge_raises_eagerly_and_gives_nan_when_traced():
  z, f, w = _data()[:3]
  for ridge in (-1e-3, float("nan")):
    with pytest.raises(ValueError, match="`ridge`"):
      weighted_least_squares(z, f, w, ridge=ridge)
  coef, _ = jax.jit(lambda r: weighted_least_squares(z, f, w, ridge=r))(-1.0)
  assert np.isnan(coef).all()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_targets_are_solved_in_float32(dtype):
  z, f, w = _data(binary=True)[:3]
  fh = jnp.asarray(f, dtype)
  coef, intercept = weighted_least_squares(z, fh, w, ridge=0.5)
  assert coef.dtype == dtype and intercept.dtype == dtype
  ref = Ridge(alpha=0.5).fit(np.asarray(z, np.float64), np.asarray(fh, np.float64),
                             sample_weight=np.asarray(w, np.float64))
  np.testing.assert_allclose(np.asarray(coef, np.float64), ref.coef_, rtol=2e-2, atol=2e-2)
  phi = constrained_least_squares(z, fh, w, total=jnp.asarray(1.0, dtype),
                                  offset=jnp.asarray(0.0, dtype))
  assert phi.dtype == dtype and abs(float(phi.astype(jnp.float32).sum()) - 1.0) < 2e-2


# --- The Cholesky path (issue 15): the same solution where the system is positive definite.


@pytest.mark.parametrize("ridge", [0.0, 1.0])
@pytest.mark.parametrize("k", [None, 2])
def test_cholesky_equals_float64_lstsq_on_positive_definite_systems(ridge, k):
  z, f, w = _data(n=200, d=30, k=k, seed=11, binary=True)
  args = [jnp.asarray(a, jnp.float32) for a in (z, f, w)]
  coef, intercept = jax.jit(lambda *a: weighted_least_squares(*a, ridge=ridge,
                                                              method="cholesky"))(*args)
  # Reference: the augmented float64 least-squares problem [√w, √w z; 0, √ridge I] (numpy).
  sw = np.sqrt(w)[:, None]
  design = np.concatenate([sw, sw * z], 1)
  pen = np.concatenate([np.zeros((30, 1)), np.sqrt(ridge) * np.eye(30)], 1)
  target = sw * (f if k else f[:, None])
  sol = np.linalg.lstsq(np.concatenate([design, pen]),
                        np.concatenate([target, np.zeros((30, target.shape[1]))]), rcond=None)[0]
  ref_coef = sol[1:] if k else sol[1:, 0]
  ref_int = sol[0] if k else sol[0, 0]
  np.testing.assert_allclose(coef, ref_coef, rtol=1e-4, atol=1e-5)  # κ·eps, κ ~ 10²
  np.testing.assert_allclose(intercept, ref_int, rtol=1e-4, atol=1e-5)
  eig, _ = jax.jit(lambda *a: weighted_least_squares(*a, ridge=ridge))(*args)
  np.testing.assert_allclose(coef, eig, rtol=1e-4, atol=1e-5)


def test_cholesky_of_a_singular_system_is_nan_never_a_guess():
  rng = np.random.default_rng(0)
  z = rng.integers(0, 2, size=(12, 3)).astype(np.float32)
  z[:, 2] = z[:, 1]  # singular without a ridge
  f, w = rng.normal(size=12).astype(np.float32), np.ones(12, np.float32)
  coef, _ = jax.jit(lambda a, b, c: weighted_least_squares(a, b, c, method="cholesky"))(z, f, w)
  assert np.isnan(coef).all()
  phi = constrained_least_squares(z, f, w, total=1.0, offset=0.0, method="cholesky")
  assert np.isnan(phi).all()
  with pytest.raises(ValueError, match="`method`"):
    weighted_least_squares(z, f, w, method="qr")


def test_cholesky_gradients_match_finite_differences(x64):
  z, f, w = _data(n=30, d=4, seed=12)
  with x64():
    fn = lambda f: weighted_least_squares(jnp.asarray(z), f, jnp.asarray(w), ridge=0.3,
                                          method="cholesky")[0]
    check_grads(jax.jit(fn), (jnp.asarray(f, jnp.float64),), order=1, modes=("fwd", "rev"))
