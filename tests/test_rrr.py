"""Tests for idexpo_jax.regularisers.rrr: the RRR penalty, the explanation mask, find-another-explanation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from idexpo_jax.core.predictor import Predictor
from idexpo_jax.regularisers.rrr import explanation_mask, find_another_explanation, rrr_penalty
from idexpo_jax.training.train import init_train_state, make_train_step

B, SHAPE, H, K = 5, (2, 3, 2), 7, 4
D = int(np.prod(SHAPE))


def _params(seed=0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return {"w1": rng.normal(size=(D, H)).astype(dtype), "b1": rng.normal(size=H).astype(dtype),
          "w2": rng.normal(size=(H, K)).astype(dtype), "b2": rng.normal(size=K).astype(dtype)}


def _mlp(params, xb):
  """A tanh MLP on batches of any rank (smooth, so second derivatives are informative)."""
  h = jnp.tanh(xb.reshape(xb.shape[0], -1) @ params["w1"] + params["b1"])
  return h @ params["w2"] + params["b2"]


def _data(seed=1, dtype=np.float32):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(B, *SHAPE)).astype(dtype)
  a = rng.random((B, *SHAPE)) < 0.4
  return x, a


def _reference_penalty(p, x, a):
  """Float64 NumPy: hand-written backprop of Σ_k log p_k, one example at a time."""
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  total = 0.0
  for xi, ai in zip(x.astype(np.float64), a.astype(np.float64)):
    h = np.tanh(xi.reshape(-1) @ p["w1"] + p["b1"])
    z = h @ p["w2"] + p["b2"]
    prob = np.exp(z - z.max())
    prob /= prob.sum()
    dz = 1.0 - K * prob  # ∂/∂z Σ_k (z_k − logsumexp z)
    dx = p["w1"] @ ((1.0 - h ** 2) * (p["w2"] @ dz))
    total += np.sum((ai.reshape(-1) * dx) ** 2)
  return total / len(x)


def test_penalty_is_zero_for_an_empty_mask_and_positive_otherwise():
  params = _params()
  x, a = _data()
  fn = jax.jit(lambda xb, ab: rrr_penalty(functools.partial(_mlp, params), xb, ab))
  zero, aux = fn(x, np.zeros_like(a))
  assert float(zero) == 0.0 and float(aux["input_grad_sq"]) > 0.0
  assert float(fn(x, a)[0]) > 0.0


def test_penalty_equals_float64_reference(x64):
  params = _params()
  x, a = _data()
  got, _ = jax.jit(lambda xb: rrr_penalty(functools.partial(_mlp, params), xb, a))(x)
  np.testing.assert_allclose(float(got), _reference_penalty(params, x, a), rtol=1e-5)
  with x64():  # full mask in float64: the penalty is the whole squared input gradient
    p64 = _params(dtype=np.float64)
    x64_ = x.astype(np.float64)
    pen, aux = rrr_penalty(functools.partial(_mlp, p64), x64_, np.ones(SHAPE, bool))
    np.testing.assert_allclose(float(pen), _reference_penalty(p64, x64_, np.ones_like(a)),
                               rtol=1e-12)
    np.testing.assert_allclose(float(pen), float(aux["input_grad_sq"]), rtol=1e-12)


def test_sum_reduction_is_batch_size_times_mean():
  params = _params()
  x, a = _data()
  fn = functools.partial(_mlp, params)
  mean, aux_m = rrr_penalty(fn, x, a)
  total, aux_s = rrr_penalty(fn, x, a, reduction="sum")
  np.testing.assert_allclose(float(total), x.shape[0] * float(mean), rtol=1e-5)
  np.testing.assert_allclose(float(aux_s["input_grad_sq"]), x.shape[0] * float(aux_m["input_grad_sq"]),
                             rtol=1e-5)
  with pytest.raises(ValueError, match="reduction"):
    rrr_penalty(fn, x, a, reduction="max")


def test_penalty_accepts_a_predictor_and_a_shared_annotation():
  params = _params()
  x, a = _data()
  pred = Predictor(features=lambda xb: xb.reshape(xb.shape[0], -1),
                   head=functools.partial(_mlp, params))
  shared = a[0]
  got, _ = jax.jit(lambda xb: rrr_penalty(pred, xb, shared))(x)
  np.testing.assert_allclose(float(got), _reference_penalty(params, x, np.broadcast_to(
      shared, a.shape)), rtol=1e-5)


def test_penalty_gradient_wrt_params_matches_finite_differences(x64):
  with x64():
    params = _params(dtype=np.float64)
    x, a = _data(dtype=np.float64)
    f = lambda p: rrr_penalty(functools.partial(_mlp, p), x, a)[0]
    check_grads(f, (params,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
    # And the gradient is not trivially zero.
    g = jax.grad(f)(params)
    assert float(jnp.abs(g["w1"]).max()) > 1e-3


def test_penalty_trains_in_the_jitted_step():
  params = jax.tree.map(jnp.asarray, _params())
  x, a = _data()

  def loss_fn(p, batch, key):
    del key
    return rrr_penalty(functools.partial(_mlp, p), batch[0], batch[1])

  opt = optax.sgd(1e-2)
  step = make_train_step(loss_fn, opt)
  state = init_train_state(params, opt)
  first = None
  for t in range(30):
    state, m = step(state, (x, a), jax.random.key(t))
    first = float(m["loss"]) if first is None else first
  assert float(m["loss"]) < 0.5 * first


def test_bad_inputs_raise_clear_errors():
  params = _params()
  x, a = _data()
  fn = functools.partial(_mlp, params)
  with pytest.raises(ValueError, match="annotation"):
    rrr_penalty(fn, x, a[:, :1, :1, :1].repeat(3, axis=1))
  with pytest.raises(ValueError, match="xb"):
    rrr_penalty(fn, x[0, 0, 0], a[0, 0, 0])
  with pytest.raises(ValueError, match="cutoff"):
    explanation_mask(fn, x, cutoff=1.0)
  with pytest.raises(ValueError, match="n_models"):
    find_another_explanation(lambda *_: fn, x, np.zeros(B), n_models=0)


def _linear(w):
  return lambda xb: xb.reshape(xb.shape[0], -1) @ w


def _reference_mask(w, x, cutoff):
  """Float64 closed form for a linear model: ∇_x p_k* = p_k* (w_k* − Σ_j p_j w_j)."""
  w = np.asarray(w, np.float64)
  out = []
  for xi in x.reshape(len(x), -1).astype(np.float64):
    z = xi @ w
    p = np.exp(z - z.max())
    p /= p.sum()
    k = int(np.argmax(p))
    g = np.abs(p[k] * (w[:, k] - w @ p))
    out.append(g > cutoff * g.max())
  return np.stack(out).reshape(x.shape)


def test_mask_threshold_is_relative_to_each_examples_max_gradient():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(D, 2)).astype(np.float32)
  # Binary linear model: ∇ max p = p(1−p)(w_k* − w_other), so the mask is the same for every
  # example although the gradient scales differ by orders of magnitude (x scaled 0.01 … 3).
  x = (rng.normal(size=(B, *SHAPE)) * np.array([0.01, 0.1, 1.0, 2.0, 3.0])[:, None, None, None]
       ).astype(np.float32)
  mask = np.asarray(jax.jit(lambda xb: explanation_mask(_linear(w), xb, cutoff=0.5))(x))
  diff = np.abs(w[:, 0] - w[:, 1])
  expected = (diff > 0.5 * diff.max()).reshape(SHAPE)
  np.testing.assert_array_equal(mask, np.broadcast_to(expected, mask.shape))
  assert 0 < expected.sum() < D
  # A global threshold (max over the batch) would empty the mask of the saturated examples.
  g = np.abs(np.asarray(jax.vmap(jax.grad(lambda xi: jax.nn.softmax(
      _linear(w)(xi[None])[0]).max()))(x)))
  assert (g > 0.5 * g.max()).reshape(B, -1).sum(1).min() == 0


def test_mask_equals_float64_reference_multiclass():
  rng = np.random.default_rng(3)
  w = rng.normal(size=(D, K)).astype(np.float32)
  x, _ = _data()
  ref = _reference_mask(w, x, 0.67)
  got = np.asarray(explanation_mask(_linear(w), x, cutoff=0.67))
  np.testing.assert_array_equal(got, ref)


def test_find_another_explanation_accumulates_masks_by_or():
  rng = np.random.default_rng(5)
  ws = [rng.normal(size=(D, K)).astype(np.float32) for _ in range(3)]
  x, _ = _data()
  y = np.arange(B) % K
  seen = []

  def train_fn(xs, ys, annotation):  # "training" returns the next fixed linear model
    np.testing.assert_array_equal(xs, x)
    np.testing.assert_array_equal(ys, y)
    seen.append(annotation.copy())
    return _linear(ws[len(seen) - 1])

  res = find_another_explanation(train_fn, x, y, n_models=3, cutoff=0.67, batch_size=2)
  assert len(res.models) == len(res.annotations) == len(res.masks) == 3
  refs = [_reference_mask(w, x, 0.67) for w in ws]
  expected = np.zeros(x.shape, bool)
  for t in range(3):
    np.testing.assert_array_equal(res.annotations[t], expected)
    np.testing.assert_array_equal(seen[t], expected)
    np.testing.assert_array_equal(res.masks[t], refs[t])
    expected = expected | refs[t]
  assert res.annotations[2].sum() > res.annotations[1].sum() > 0


def test_empty_batches_raise_instead_of_a_nan_penalty():
  x, a = _data()
  with pytest.raises(ValueError, match="`xb`.*non-empty"):
    rrr_penalty(functools.partial(_mlp, _params()), x[:0], a[:0])
  with pytest.raises(ValueError, match="`xb`.*non-empty"):
    explanation_mask(functools.partial(_mlp, _params()), x[:0])
