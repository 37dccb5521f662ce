"""Input gradients of a linear-softmax model against their closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idexpo_jax.explainers.gradients import input_gradients
from idexpo_jax.core.predictor import Predictor


def _model(shape, n_classes=4, seed=0):
  rng = np.random.default_rng(seed)
  d = int(np.prod(shape))
  w, b = rng.normal(size=(d, n_classes)), rng.normal(size=(n_classes,))
  x = rng.normal(size=shape)
  logits_fn = lambda xb: xb.reshape(xb.shape[0], -1) @ jnp.asarray(w, xb.dtype) + jnp.asarray(
      b, xb.dtype)
  return logits_fn, w, b, x


def _softmax(z):
  e = np.exp(z - z.max())
  return e / e.sum()


@pytest.mark.parametrize("shape", [(5,), (3, 4, 2)])
def test_linear_softmax_closed_form(shape):
  logits_fn, w, b, x = _model(shape)
  xj = jnp.asarray(x, jnp.float32)
  out = jax.jit(lambda x: {r: input_gradients(logits_fn, x, reduce=r)
                           for r in ("sum_log_prob", "max_prob")})(xj)
  p = _softmax(x.reshape(-1) @ w + b)
  k = p.size
  # Σ_k log p_k = Σ_k z_k − K·logsumexp(z): gradient Wᵀ(1 − K p).
  expected = (w @ (1.0 - k * p)).reshape(shape)
  np.testing.assert_allclose(out["sum_log_prob"], expected, rtol=1e-5, atol=1e-5)
  # max_k p_k = p_m: gradient Wᵀ p_m (e_m − p).
  m = int(np.argmax(p))
  e_m = np.eye(k)[m]
  np.testing.assert_allclose(out["max_prob"], (w @ (p[m] * (e_m - p))).reshape(shape),
                             rtol=1e-5, atol=1e-6)
  assert out["sum_log_prob"].shape == shape and out["sum_log_prob"].dtype == jnp.float32


def test_predictor_and_vmap():
  logits_fn, _, _, _ = _model((6,))
  xb = jnp.asarray(np.random.default_rng(1).normal(size=(3, 6)), jnp.float32)
  pred = Predictor(lambda xb: 2.0 * xb, lambda a: logits_fn(0.5 * a))
  batched = jax.jit(jax.vmap(lambda x: input_gradients(pred, x)))(xb)
  for i in range(3):
    np.testing.assert_allclose(batched[i], input_gradients(logits_fn, xb[i]), rtol=1e-5,
                               atol=1e-6)


def test_wrong_inputs_name_the_argument():
  logits_fn, _, _, _ = _model((6,))
  with pytest.raises(ValueError, match="`reduce`"):
    input_gradients(logits_fn, jnp.zeros((6,)), reduce="sum")
  dense = lambda xb: xb @ jnp.ones((6, 3))  # like a Dense layer: maps (1, 2, 6) to (1, 2, 3)
  with pytest.raises(ValueError, match="`x`"):  # a batch instead of one example
    jax.jit(lambda x: input_gradients(dense, x))(jnp.zeros((2, 6)))


# --- Loud edges (issue 13): one-output models, integer inputs.


@pytest.mark.parametrize("reduce", ["sum_log_prob", "max_prob"])
def test_a_one_output_model_raises_instead_of_a_zero_gradient(reduce):
  logits_fn, _, _, x = _model((5,), n_classes=1)
  with pytest.raises(ValueError, match=f"`reduce='{reduce}'`.*K >= 2"):
    input_gradients(logits_fn, jnp.asarray(x, jnp.float32), reduce=reduce)


def test_integer_input_is_promoted():
  logits_fn, _, _, _ = _model((5,))
  xi = jnp.arange(5) - 2
  np.testing.assert_array_equal(input_gradients(logits_fn, xi),
                                input_gradients(logits_fn, xi.astype(jnp.float32)))
