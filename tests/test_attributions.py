"""Integrated gradients, SmoothGrad, gradient × input: closed forms, completeness, gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from idexpo_jax.explainers import gradients as at
from idexpo_jax.regularisers.idexpo import IdExpo
from idexpo_jax.core.masking import grid_segments, unit_sum
from tolerances import F32


def _mlp_params(seed=0, d=5, h=7, k=3, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(d, h)), dtype), jnp.asarray(rng.normal(size=(h,)), dtype),
          jnp.asarray(rng.normal(size=(h, k)) / 2, dtype))


def _mlp(params):
  w1, b1, w2 = params
  return lambda xb: jnp.tanh(xb.reshape(xb.shape[0], -1) @ w1 + b1) @ w2


def _linear(seed=0, shape=(4, 4, 2), k=3):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(int(np.prod(shape)), k)).astype(np.float32)
  c = rng.normal(size=(k,)).astype(np.float32)
  return w, c, (lambda xb: xb.reshape(xb.shape[0], -1) @ jnp.asarray(w) + jnp.asarray(c))


@pytest.mark.parametrize("output", ["prob", "log_prob", "logit"])
def test_integrated_gradients_completeness_on_mlp(output):
  """Σφ = f(x) − f(b) up to the quadrature error (Gauss–Legendre, smooth tanh MLP)."""
  fn = _mlp(_mlp_params())
  x = jnp.asarray(np.random.default_rng(1).normal(size=5), jnp.float32)
  b = jnp.full((5,), 0.2, jnp.float32)
  phi = at.integrated_gradients(fn, x, 2, baseline=b, n_steps=16, method="gausslegendre",
                                output=output)
  f = lambda v: at.target_output(fn, v[None], 2, output)[0]
  assert phi.shape == (5,)
  np.testing.assert_allclose(phi.sum(), f(x) - f(b), rtol=1e-4, atol=1e-6)
  # The trapezoid rule converges to the same integral (second order in the step).
  trap = at.integrated_gradients(fn, x, 2, baseline=b, n_steps=257, output=output)
  np.testing.assert_allclose(trap, phi, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("method", at.QUADRATURES)
def test_integrated_gradients_linear_closed_form_on_segments(method):
  """Linear logits: IG = w_target ⊙ (x − b), summed over each cell and channel."""
  w, _, fn = _linear()
  rng = np.random.default_rng(2)
  x = rng.normal(size=(4, 4, 2)).astype(np.float32)
  b = rng.normal(size=(4, 4, 2)).astype(np.float32)
  seg = grid_segments(4, 4, 2)
  phi = at.integrated_gradients(fn, jnp.asarray(x), 1, baseline=b, segments=seg, n_steps=3,
                                method=method, output="logit")
  pixel = w[:, 1].reshape(4, 4, 2) * (x - b)
  want = np.array([pixel[seg == u].sum() for u in range(4)])
  np.testing.assert_allclose(phi, want, rtol=1e-5, atol=1e-5)
  gxi = at.gradient_times_input(fn, jnp.asarray(x), 1, baseline=b, segments=seg, output="logit")
  np.testing.assert_allclose(gxi, want, rtol=1e-5, atol=1e-5)


def test_gradient_times_input_and_gradient_closed_forms_of_softmax():
  """Linear softmax model in float64 NumPy: ∇p_t = p_t (w_t − Σ_k p_k w_k)."""
  w, c, fn = _linear(3, shape=(6,))
  x = np.random.default_rng(3).normal(size=6).astype(np.float32)
  logits = x.astype(np.float64) @ w + c
  p = np.exp(logits - logits.max())
  p /= p.sum()
  grad = p[0] * (w[:, 0] - w @ p)
  np.testing.assert_allclose(at.target_gradient(fn, jnp.asarray(x), 0), grad, rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(at.gradient_times_input(fn, jnp.asarray(x), 0), x * grad,
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(at.target_gradient(fn, jnp.asarray(x), 0, output="log_prob"),
                             w[:, 0] - w @ p, rtol=1e-4, atol=1e-6)


def test_smooth_grad_tends_to_the_gradient():
  fn = _mlp(_mlp_params(4))
  x = jnp.asarray(np.random.default_rng(4).normal(size=5), jnp.float32)
  key = jax.random.key(0)
  grad = at.target_gradient(fn, x, 1)
  np.testing.assert_array_equal(at.smooth_grad(fn, x, 1, key, sigma=0.0, n_samples=1), grad)
  np.testing.assert_allclose(at.smooth_grad(fn, x, 1, key, sigma=0.0, n_samples=3), grad,
                             rtol=1e-5)
  small = at.smooth_grad(fn, x, 1, key, sigma=1e-3, n_samples=8)
  np.testing.assert_allclose(small, grad, rtol=1e-2, atol=1e-4)
  big = at.smooth_grad(fn, x, 1, key, sigma=1.0, n_samples=8)
  assert np.abs(big - grad).max() > 1e-2  # the noise does matter at σ = 1
  # Same key, same result; chunks give the same mean.
  np.testing.assert_array_equal(at.smooth_grad(fn, x, 1, key, sigma=0.5, n_samples=8),
                                at.smooth_grad(fn, x, 1, key, sigma=0.5, n_samples=8))
  np.testing.assert_allclose(at.smooth_grad(fn, x, 1, key, sigma=0.5, n_samples=8, chunk_size=3),
                             at.smooth_grad(fn, x, 1, key, sigma=0.5, n_samples=8), rtol=1e-5,
                             atol=1e-7)


def test_image_units_sum_channels_and_pixels():
  """Without segments an image's units are pixels (channels summed), as in `masking`."""
  w, _, fn = _linear(5)
  x = jnp.asarray(np.random.default_rng(5).normal(size=(4, 4, 2)), jnp.float32)
  g = at.target_gradient(fn, x, 2, output="logit")
  np.testing.assert_allclose(g, w[:, 2].reshape(4, 4, 2).sum(-1).reshape(-1), **F32)
  seg = grid_segments(4, 4, 2)
  np.testing.assert_allclose(at.target_gradient(fn, x, 2, segments=seg, output="logit"),
                             unit_sum(jnp.asarray(w[:, 2].reshape(4, 4, 2)), segments=seg),
                             rtol=1e-5)


@pytest.mark.parametrize("name", ["ig", "smooth", "gxi"])
def test_second_order_gradients_in_the_parameters(x64, name):
  """jax.grad through the explanation (a gradient of the model) matches finite differences."""
  with x64():
    params = _mlp_params(6, d=3, h=4, k=2, dtype=jnp.float64)
    x = jnp.asarray([0.3, -0.5, 0.8])
    b = jnp.zeros(3)
    key = jax.random.key(1)
    explain = {
        "ig": lambda fn: at.integrated_gradients(fn, x, 1, baseline=b, n_steps=4,
                                                 method="gausslegendre"),
        "smooth": lambda fn: at.smooth_grad(fn, x, 1, key, sigma=0.3, n_samples=4),
        "gxi": lambda fn: at.gradient_times_input(fn, x, 1, baseline=b),
    }[name]
    loss = lambda p: jnp.sum(explain(_mlp(p)) ** 2)
    check_grads(loss, (params,), order=1, modes=["rev"], eps=1e-5, atol=1e-6, rtol=1e-4)


def test_gradient_explainers_inside_idexpo_penalty():
  """The penalty with a gradient explainer equals the loop over examples and has a gradient."""
  rng = np.random.default_rng(7)
  params = _mlp_params(7, d=8, h=6, k=3)
  xb = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
  yb = jnp.asarray([0, 1, 2, 1], jnp.int32)
  explainer = functools.partial(at.integrated_gradients, baseline=0.0, n_steps=8)
  pen = lambda p: IdExpo(explainer, n_steps=4)(_mlp(p), xb, yb, jax.random.key(0))[0]
  value, grads = jax.jit(jax.value_and_grad(pen))(params)
  from idexpo_jax.metrics.soft_curves import soft_insertion_deletion
  loop = []
  for i in range(4):
    phi = explainer(_mlp(params), xb[i], yb[i], None)
    ci, cd = soft_insertion_deletion(_mlp(params), xb[i], phi, yb[i], baseline=0.0, n_steps=4)
    loop.append(ci + cd)
  np.testing.assert_allclose(value, np.mean(loop), rtol=1e-5)
  assert all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in grads)


def test_path_quadrature_rules():
  for method in at.QUADRATURES:
    a, w = at.path_quadrature(5, method)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-12)
    assert ((a >= 0) & (a <= 1)).all()
  a, w = at.path_quadrature(3, "gausslegendre")  # exact up to degree 5
  np.testing.assert_allclose((w * a ** 5).sum(), 1 / 6, rtol=1e-12)
  a, w = at.path_quadrature(3, "trapezoid")
  np.testing.assert_allclose(a, [0, 0.5, 1])
  np.testing.assert_allclose(w, [0.25, 0.5, 0.25])


def test_bad_arguments_raise():
  fn = _mlp(_mlp_params())
  x = jnp.zeros(5)
  with pytest.raises(ValueError, match="output"):
    at.target_gradient(fn, x, 0, output="probs")
  with pytest.raises(ValueError, match="sigma"):
    at.smooth_grad(fn, x, 0, jax.random.key(0), sigma=-1.0)
  with pytest.raises(ValueError, match="n_steps"):
    at.integrated_gradients(fn, x, 0, baseline=0.0, n_steps=1)
  with pytest.raises(ValueError, match="method"):
    at.integrated_gradients(fn, x, 0, baseline=0.0, method="simpson")
  with pytest.raises(ValueError, match="baseline"):
    at.integrated_gradients(fn, x, 0, baseline=jnp.zeros(3))
  with pytest.raises(TypeError, match="floating"):
    at.target_gradient(fn, jnp.zeros(5, jnp.int32), 0)
  with pytest.raises(ValueError, match="target"):
    at.target_gradient(fn, x, jnp.zeros(2, jnp.int32))
