"""The `Predictor` contract and the target log-probability helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idexpo_jax.predictor import (Predictor, as_logits_fn, as_predictor, target_log_prob,
                                  target_prob)
from tolerances import F32

_W = np.random.default_rng(0).normal(size=(6, 4))


def _features(xb):
  return jnp.tanh(xb)


def _head(a):
  return a @ jnp.asarray(_W, a.dtype)


def _xb(n=3):
  return jnp.asarray(np.random.default_rng(1).normal(size=(n, 6)), jnp.float32)


def test_predictor_composes_features_and_head():
  pred = Predictor(_features, _head)
  xb = _xb()
  np.testing.assert_allclose(pred(xb), np.tanh(np.asarray(xb, np.float64)) @ _W, atol=1e-5)
  np.testing.assert_array_equal(as_logits_fn(pred)(xb), pred(xb))
  assert as_predictor(pred) is pred
  wrapped = as_predictor(_head)
  np.testing.assert_array_equal(wrapped.features(xb), xb)
  np.testing.assert_array_equal(wrapped(xb), _head(xb))
  assert as_logits_fn(_head) is _head


@pytest.mark.parametrize("target", [0, 3])
def test_target_log_prob_matches_numpy(target):
  pred = Predictor(_features, _head)
  xb = _xb()
  logits = np.tanh(np.asarray(xb, np.float64)) @ _W
  ref = logits[:, target] - np.log(np.exp(logits).sum(-1))
  out = jax.jit(lambda xb, t: target_log_prob(pred, xb, t))(xb, target)  # traced target
  assert out.shape == (3,)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  np.testing.assert_allclose(target_prob(pred, xb, target), np.exp(ref), **F32)
  per_example = jax.jit(jax.vmap(lambda x, t: target_prob(pred, x[None], t)[0]))(
      xb, jnp.asarray([target] * 3))
  np.testing.assert_allclose(per_example, np.exp(ref), **F32)


def test_wrong_inputs_name_the_argument():
  with pytest.raises(TypeError, match="`logits_fn`"):
    as_logits_fn(3)
  with pytest.raises(ValueError, match="`logits_fn`"):  # logits of the wrong rank
    target_log_prob(lambda xb: xb.sum(-1), _xb(), 0)
  with pytest.raises(ValueError, match="`target`"):
    target_log_prob(_head, _xb(), 4)
  with pytest.raises(ValueError, match="`target`"):
    target_log_prob(_head, _xb(), jnp.asarray([0, 1, 2]))
