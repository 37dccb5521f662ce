"""The `Predictor` contract and the target log-probability helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idexpo_jax.core.predictor import (Predictor, as_logits_fn, as_predictor, select_output,
                                  target_log_prob, target_prob)
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
  with pytest.raises(TypeError, match="`model`"):
    as_logits_fn(3)
  with pytest.raises(ValueError, match="`logits_fn`"):  # logits of the wrong rank
    target_log_prob(lambda xb: xb.sum(-1), _xb(), 0)
  with pytest.raises(ValueError, match="`target`"):
    target_log_prob(_head, _xb(), 4)
  with pytest.raises(ValueError, match="`target`"):
    target_log_prob(_head, _xb(), jnp.asarray([0, 1, 2]))


# --- Loud edges (issue 13): targets, outputs, input dtypes and positive options.

from idexpo_jax.core.checks import check_positive  # noqa: E402
from idexpo_jax.core.predictor import promote_input, target_scores  # noqa: E402


@pytest.mark.parametrize("output", ["prob", "log_prob", "logit", "raw"])
@pytest.mark.parametrize("target", [-1, 4, 100])
def test_target_out_of_range_raises_eagerly_and_is_nan_when_traced(output, target):
  with pytest.raises(ValueError, match=r"`target` must be in \[0, 4\)"):
    target_scores(_head, _xb(), target, output=output)
  out = jax.jit(lambda t: target_scores(_head, _xb(), t, output=output))(target)
  assert out.shape == (3,) and np.isnan(out).all()
  ok = jax.jit(lambda t: target_scores(_head, _xb(), t, output=output))(2)
  assert np.isfinite(ok).all()


def test_float_target_raises_type_error():
  with pytest.raises(TypeError, match="`target`"):
    target_scores(_head, _xb(), 1.0)


def test_outputs_match_numpy_and_raw_takes_the_output_as_it_is():
  xb = _xb()
  logits = np.asarray(xb, np.float64) @ _W
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  for output, ref in [("prob", np.exp(log_p)), ("log_prob", log_p), ("logit", logits),
                      ("raw", logits)]:
    np.testing.assert_allclose(target_scores(_head, xb, 1, output=output), ref[:, 1], atol=1e-5)
  regression = lambda b: b @ jnp.asarray(_W[:, 0], b.dtype)  # (B,)
  ref = np.asarray(xb, np.float64) @ _W[:, 0]
  np.testing.assert_allclose(target_scores(regression, xb, 0, output="raw"), ref, atol=1e-5)
  np.testing.assert_allclose(target_scores(lambda b: regression(b)[:, None], xb, 0, output="raw"),
                             ref, atol=1e-5)
  probs = lambda b: jax.nn.softmax(_head(b))  # a model that already returns probabilities
  np.testing.assert_allclose(target_scores(probs, xb, 1, output="raw"), np.exp(log_p[:, 1]),
                             atol=1e-6)


@pytest.mark.parametrize("output", ["prob", "log_prob"])
def test_softmax_of_one_output_raises_and_suggests_raw(output):
  with pytest.raises(ValueError, match=r"`output='%s'`.*output='raw'" % output):
    target_scores(lambda b: b[:, :1], _xb(), 0, output=output)
  with pytest.raises(ValueError, match="`output`"):
    target_scores(_head, _xb(), 0, output="softmax")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_integer_inputs_are_promoted_to_the_models_float_dtype(dtype):
  model = lambda b: b.astype(dtype) @ jnp.ones((6, 2), dtype)
  x = jnp.arange(6)
  assert promote_input(model, x).dtype == dtype
  assert promote_input(model, x[None], batched=True).dtype == dtype
  assert promote_input(model, x.astype(jnp.float32)).dtype == jnp.float32  # floats unchanged
  assert promote_input(lambda b: b, jnp.ones((6,), bool)).dtype == jnp.float32  # int output


def test_check_positive_is_loud_when_concrete_and_nan_when_traced():
  for bad in (0, 0.0, -1.0, np.float32(-2), jnp.asarray(0.0), float("nan"), "1"):
    with pytest.raises(ValueError, match="`sigma`"):
      check_positive(bad, "sigma")
  assert check_positive(0.5, "sigma") is None
  assert check_positive(0.0, "r", allow_zero=True) is None
  assert not jax.jit(lambda s: check_positive(s, "sigma"))(-1.0)  # the traced condition
  assert jax.jit(lambda s: check_positive(s, "sigma"))(2.0)


def test_prob_is_the_softmax_without_overflow_and_keeps_nan():
  """`prob` is `exp(l_t − max l) / Σ exp(l − max l)`: huge logits, NaN rows, float64 reference."""
  logits = np.array([[1e4, 1e4 - 2.0, -1e4], [np.nan, 0.0, 1.0], [0.5, -0.25, 3.0]], np.float32)
  ref = np.exp(logits[:, 1].astype(np.float64) - logits.max(1)) / np.exp(
      logits.astype(np.float64) - logits.max(1, keepdims=True)).sum(1)
  for target in (1, jnp.array([1, 1, 1])):
    got = np.asarray(jax.jit(lambda l, t: select_output(l, t, "prob"))(jnp.asarray(logits), target))
    assert np.isnan(got[1])
    np.testing.assert_allclose(got[[0, 2]], ref[[0, 2]], rtol=1e-5, atol=1e-7)
