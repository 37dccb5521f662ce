"""MAPLE's supervised neighbourhoods and local fits against a brute-force numpy computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("sklearn")

from idexpo_jax.explainers.maple import fit_maple, leaf_weights, maple_explain, maple_metrics


def _data(n=80, d=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  f = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2]
  return x, f.astype(np.float32)


def _brute(maple, xq, ridge):
  """Per query: loop over trees and training points; float64 ridge with unpenalised intercept."""
  trees = maple.forest.estimators_
  xt = maple.x_train.astype(np.float64)
  coefs, intercepts, weights = [], [], []
  for q in np.asarray(xq, np.float32):
    w = np.zeros(len(xt))
    for tree in trees:
      leaf_q = tree.apply(q[None])[0]
      leaves = tree.apply(maple.x_train)
      members = [j for j in range(len(xt)) if leaves[j] == leaf_q]
      for j in members:
        w[j] += 1.0 / len(members)
    a = np.column_stack([xt, np.ones(len(xt))])
    pen = ridge * np.eye(a.shape[1])
    pen[-1, -1] = 0.0
    sol = np.linalg.solve(a.T @ (w[:, None] * a) + pen, a.T @ (w * maple.f_train))
    coefs.append(sol[:-1])
    intercepts.append(sol[-1])
    weights.append(w)
  return np.array(coefs), np.array(intercepts), np.array(weights)


def test_weights_and_fit_match_brute_force():
  x, f = _data()
  maple = fit_maple(x, f, n_trees=7, min_samples_leaf=5, seed=1)
  xq = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
  coef, intercept = maple_explain(maple, xq, ridge=1e-3)
  ref_coef, ref_intercept, ref_w = _brute(maple, xq, 1e-3)
  w = leaf_weights(jnp.asarray(maple.train_leaves), jnp.asarray(maple.forest.apply(xq)))
  np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(w.sum(1), 7, rtol=1e-5)  # each tree's weights sum to one
  np.testing.assert_allclose(coef, ref_coef, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(intercept, ref_intercept, rtol=1e-3, atol=1e-3)


def test_affine_model_is_explained_exactly():
  """Any weights fit an affine `f` exactly: PF = NF = stability = 0."""
  x, _ = _data(seed=3)
  affine = lambda xb: xb @ jnp.asarray([1.5, -2.0, 0.5]) + 0.3  # noqa: E731
  maple = fit_maple(x, np.asarray(affine(x)), n_trees=5, min_samples_leaf=5)
  coef, intercept = maple_explain(maple, x[:3], ridge=0.0)
  np.testing.assert_allclose(coef, np.tile([1.5, -2.0, 0.5], (3, 1)), atol=1e-3)
  np.testing.assert_allclose(intercept, 0.3, atol=1e-3)
  m = maple_metrics(affine, maple, x[:6], jax.random.key(0), ridge=0.0)
  for v in m.values():
    assert v.shape == (6,)
    np.testing.assert_allclose(v, 0, atol=1e-5)


def test_metrics_against_brute_force():
  x, f = _data(seed=4)
  fn = lambda xb: jnp.sin(2 * xb[:, 0]) + xb[:, 1] * xb[:, 2]  # noqa: E731
  maple = fit_maple(x, f, n_trees=5, min_samples_leaf=5)
  key = jax.random.key(5)
  m = maple_metrics(fn, maple, x[:3], key, n_neighbors=4, sigma=0.1)
  xs = np.asarray(x[:3, None] + 0.1 * jax.random.normal(key, (3, 4, 3)))
  c0, i0, _ = _brute(maple, x[:3], 1e-3)
  cn, _, _ = _brute(maple, xs.reshape(-1, 3), 1e-3)
  fx = np.asarray(fn(x[:3]))
  fxs = np.asarray(fn(xs.reshape(-1, 3))).reshape(3, 4)
  np.testing.assert_allclose(m["pf"], (np.sum(x[:3] * c0, 1) + i0 - fx) ** 2, rtol=1e-3,
                             atol=1e-5)
  nf = ((np.einsum("bnd,bd->bn", xs, c0) + i0[:, None] - fxs) ** 2).mean(1)
  np.testing.assert_allclose(m["nf"], nf, rtol=1e-3, atol=1e-5)
  st = ((cn.reshape(3, 4, 3) - c0[:, None]) ** 2).sum(-1).mean(-1)
  np.testing.assert_allclose(m["stability"], st, rtol=1e-3, atol=1e-5)
  assert (st > 0).any()


def test_bad_query_shape():
  x, f = _data()
  maple = fit_maple(x, f, n_trees=2)
  with pytest.raises(ValueError, match="D = 3"):
    maple_explain(maple, np.zeros((2, 4)))
