"""The ID-ExpO penalty on a batch against a loop over examples."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from idexpo_jax.explainers.grad_cam import grad_cam
from idexpo_jax.regularisers.idexpo import IdExpo
from idexpo_jax.core.masking import grid_segments
from idexpo_jax.core.predictor import Predictor
from idexpo_jax.metrics.soft_curves import soft_insertion_deletion
from tolerances import F32, f32

KW = dict(baseline=0.1, n_steps=8, fraction=0.5, temperature=2.0)


def _predictor(params):
  v, u, w = params

  def features(xb):
    a = jnp.tanh(xb @ v)
    b, h, wd, f = a.shape
    return a.reshape(b, h // 2, 2, wd // 2, 2, f).mean(axis=(2, 4))

  return Predictor(features, lambda a: jnp.tanh(a @ u).mean(axis=(1, 2)) @ w)


def _setup(seed=0):
  rng = np.random.default_rng(seed)
  params = tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(2, 3), (3, 3), (3, 4)])
  xb = jnp.asarray(rng.normal(size=(3, 8, 8, 2)), jnp.float32)
  yb = jnp.asarray([0, 3, 1], jnp.int32)
  return params, xb, yb


@pytest.mark.parametrize("deletion", ["ratio", "direct"])
def test_penalty_equals_loop_over_examples(deletion):
  params, xb, yb = _setup()
  key = jax.random.key(0)
  pen, aux = jax.jit(lambda p: IdExpo(grad_cam, deletion=deletion, **KW)(_predictor(p), xb, yb, key))(params)

  @jax.jit
  def one(p, x, y):  # one example at a time, no vmap
    phi = grad_cam(_predictor(p), x, y)
    c_i, c_d = soft_insertion_deletion(_predictor(p), x, phi, y, deletion=deletion, **KW)
    return c_i, c_d, jnp.mean(phi ** 2)

  cins, cdel, sq = zip(*[one(params, xb[i], yb[i]) for i in range(3)])
  np.testing.assert_allclose(pen, np.mean(cins) + np.mean(cdel), rtol=1e-5)
  np.testing.assert_allclose(aux["cins"], np.mean(cins), rtol=1e-5)
  np.testing.assert_allclose(aux["cdel"], np.mean(cdel), rtol=1e-5)
  np.testing.assert_allclose(aux["attribution_sq"], np.mean(sq), rtol=1e-5)


def test_explainer_gets_one_split_key_per_example_and_segments():
  """A key-dependent explainer on segments: the keys are `split(key, B)` in order."""
  params, xb, yb = _setup(1)
  segments = grid_segments(8, 8, 4)
  key = jax.random.key(3)
  explainer = lambda pred, x, y, k: jax.random.normal(k, (4,))
  pen, _ = jax.jit(lambda p: IdExpo(explainer, segments=segments, **KW)(_predictor(p), xb, yb, key))(params)
  one = jax.jit(lambda p, x, y, k: sum(soft_insertion_deletion(
      _predictor(p), x, explainer(None, None, None, k), y, segments=segments, **KW)))
  keys = jax.random.split(key, 3)
  ref = [one(params, xb[i], yb[i], keys[i]) for i in range(3)]
  np.testing.assert_allclose(pen, np.mean(ref), rtol=1e-5)


def test_gradient_is_finite_and_reaches_every_parameter():
  params, xb, yb = _setup(2)
  grads = jax.jit(jax.grad(lambda p: IdExpo(grad_cam, **KW)(_predictor(p), xb, yb, jax.random.key(0))[0]))(params)
  for g in grads:
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


def test_wrong_shapes_name_the_argument():
  params, xb, yb = _setup()
  call = lambda xb, yb: jax.jit(lambda: IdExpo(grad_cam, **KW)(_predictor(params), xb, yb, jax.random.key(0)))()
  with pytest.raises(ValueError, match="`yb`"):
    call(xb, yb[:2])
  with pytest.raises(ValueError, match="`yb`"):
    call(xb, yb[:, None])
  with pytest.raises(ValueError, match="`attribution`"):  # explainer returns the wrong size
    jax.jit(lambda: IdExpo(lambda *a: jnp.zeros((5,)), **KW)(_predictor(params), xb, yb, jax.random.key(0)))()


# --- Loud edges (issue 13): labels out of range, empty batches, bare logits functions.


@pytest.mark.parametrize("label", [-1, 4])
def test_labels_out_of_range_raise_eagerly_and_give_a_nan_penalty_when_traced(label):
  params, xb, _ = _setup()
  yb = jnp.asarray([0, label, 1], jnp.int32)
  with pytest.raises(ValueError, match=r"`yb` must be in \[0, 4\)"):
    IdExpo(grad_cam, **KW)(_predictor(params), xb, yb, jax.random.key(0))
  pen, aux = jax.jit(lambda y: IdExpo(grad_cam, **KW)(_predictor(params), xb, y, jax.random.key(0)))(yb)
  assert np.isnan(pen) and np.isnan(aux["cins"]) and np.isnan(aux["cdel"])
  assert np.isnan(aux["clean_ce"]) and np.isnan(aux["clean_acc"])


def test_empty_batch_and_a_bare_logits_function_for_grad_cam_raise():
  params, xb, yb = _setup()
  with pytest.raises(ValueError, match="`yb`.*B >= 1"):
    IdExpo(grad_cam, **KW)(_predictor(params), xb[:0], yb[:0], jax.random.key(0))
  with pytest.raises(TypeError, match=r"Predictor\(features, head\)"):
    IdExpo(grad_cam, **KW)(lambda b: _predictor(params)(b), xb, yb, jax.random.key(0))


def test_integer_images_are_promoted():
  params, xb, yb = _setup()
  xi = (jnp.arange(xb.size).reshape(xb.shape) % 3).astype(jnp.int32)
  a = IdExpo(grad_cam, **KW)(_predictor(params), xi, yb, jax.random.key(0))
  b = IdExpo(grad_cam, **KW)(_predictor(params), xi.astype(jnp.float32), yb, jax.random.key(0))
  np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("deletion,chunk_size", [("ratio", None), ("direct", 5)])
def test_clean_ce_equals_a_separate_model_call_in_value_and_gradient(deletion, chunk_size):
  """`aux["clean_ce"]` (the clean row of the soft-curve batch) is the batch's CE: a loss that uses
  it instead of calling the model again has the same value and gradient (float32 rounding)."""
  params, xb, _ = _setup(4)
  pred = np.asarray(_predictor(params)(xb)).argmax(-1)
  yb = jnp.asarray([pred[0], (pred[1] + 1) % 4, pred[2]], jnp.int32)  # accuracy 2/3
  key = jax.random.key(5)
  kw = dict(explainer=grad_cam, deletion=deletion, chunk_size=chunk_size, **KW)

  def separate(p):  # the formulation before `clean_ce`: CE of its own forward pass
    logits = _predictor(p)(xb)
    pen, aux = IdExpo(**kw)(_predictor(p), xb, yb, key)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    acc = (logits.argmax(-1) == yb).mean()
    return ce + 0.3 * pen + 0.1 * aux["attribution_sq"], (ce, acc)

  def shared(p):
    pen, aux = IdExpo(**kw)(_predictor(p), xb, yb, key)
    return aux["clean_ce"] + 0.3 * pen + 0.1 * aux["attribution_sq"], aux

  (want, (ce, acc)), want_grad = jax.jit(jax.value_and_grad(separate, has_aux=True))(params)
  (got, aux), got_grad = jax.jit(jax.value_and_grad(shared, has_aux=True))(params)
  np.testing.assert_allclose(aux["clean_ce"], ce, **F32)
  np.testing.assert_allclose(aux["clean_acc"], 2 / 3, **F32)
  np.testing.assert_allclose(acc, 2 / 3, **F32)
  np.testing.assert_allclose(got, want, **F32)
  for g, w in zip(got_grad, want_grad):
    assert np.abs(w).max() > 0
    np.testing.assert_allclose(g, w, **f32(scale=float(np.abs(w).max())))
