"""The jitted, donated train step with a real ID-ExpO loss (CE + Grad-CAM soft Ins/Del)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from idexpo_jax import models
from idexpo_jax.explainers.grad_cam import grad_cam
from idexpo_jax.regularisers.idexpo import IdExpo
from idexpo_jax.core.predictor import Predictor
from idexpo_jax.training.train import init_train_state, make_train_step
from test_models import fast_model  # tests/ is on sys.path under pytest's default import mode
from tolerances import F32


def _batch(n=4, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.uniform(size=(n, 8, 8, 1)), jnp.float32),
          jnp.asarray(rng.integers(0, 10, size=n), jnp.int32))


def _cnn():
  model = fast_model(lambda: models.SmallCNN(1, 10, width=2, rngs=nnx.Rngs(0)))
  return models.functional(model)


def idexpo_loss(graphdef, rest):
  """CE + 0.1 · mean(cIns + cDel) with Grad-CAM; the key jitters the inputs, so it matters."""

  def loss_fn(params, batch, key):
    xb, yb = batch
    xb = xb + 0.01 * jax.random.normal(key, xb.shape, xb.dtype)
    pred = models.predictor_fn(graphdef, params, rest)
    ce = optax.softmax_cross_entropy_with_integer_labels(pred(xb), yb).mean()
    pen, aux = IdExpo(grad_cam, baseline=0.0, n_steps=4)(pred, xb, yb, key)
    return ce + 0.1 * pen, {"ce": ce, **aux}

  return loss_fn


def _fresh_state(params, optimizer):
  return init_train_state(jax.tree.map(jnp.array, params), optimizer)  # own buffers (donation)


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_step_decreases_the_loss_and_is_deterministic():
  g, params, rest = _cnn()
  optimizer = optax.sgd(0.05)
  step = make_train_step(idexpo_loss(g, rest), optimizer)
  batch, key = _batch(), jax.random.key(0)
  state, metrics0 = step(_fresh_state(params, optimizer), batch, key)
  assert {"loss", "grad_norm", "ce", "cins", "cdel"} <= set(metrics0)
  assert np.isfinite(metrics0["grad_norm"]) and metrics0["grad_norm"] > 0
  # The second step reports the loss at the first step's parameters (same batch, same key).
  one_step = jax.tree.map(np.asarray, state.params)
  state, metrics1 = step(state, batch, key)
  assert int(state.step) == 2
  assert metrics1["loss"] < metrics0["loss"], (metrics0["loss"], metrics1["loss"])
  # Same key: bit-identical parameters; another key (another input jitter): different ones.
  again, _ = step(_fresh_state(params, optimizer), batch, key)
  other, _ = step(_fresh_state(params, optimizer), batch, jax.random.key(1))
  _assert_trees_equal(again.params, one_step)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(other.params),
                                                       jax.tree.leaves(one_step)))


def test_donation_and_unjitted_step_match_optax_by_hand():
  """Donated, undonated and `jit=False` steps all equal `optax.sgd` on `jax.grad(loss_fn)`."""
  w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 2)), jnp.float32)
  xb, yb = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)), jnp.float32), jnp.asarray(
      [0, 1, 1, 0])

  def loss_fn(params, batch, key):
    logits = batch[0] @ params["w"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(), {}

  grad = jax.grad(lambda p: loss_fn(p, (xb, yb), None)[0])({"w": w})["w"]
  expected = np.asarray(w - 0.1 * grad)
  for options in ({"donate": True}, {"donate": False}, {"jit": False}):
    state = _fresh_state({"w": w}, optax.sgd(0.1))
    old = state.params["w"]
    new, _ = make_train_step(loss_fn, optax.sgd(0.1), **options)(state, (xb, yb), None)
    np.testing.assert_allclose(new.params["w"], expected, **F32)
    assert old.is_deleted() == options.get("donate", False), options
    if options.get("donate"):
      again, _ = make_train_step(loss_fn, optax.sgd(0.1), **options)(new, (xb, yb), None)
      assert int(again.step) == 2  # a donated step runs on its own output


def test_stateful_step_updates_batchnorm_but_eval_passes_do_not():
  model = fast_model(lambda: models.ResNet18(1, 10, width=2, rngs=nnx.Rngs(0)))
  xb, yb = _batch(n=2, seed=1)
  xb = 2.0 * xb + 1.0
  optimizer = optax.sgd(0.01)

  def pretrain_loss(graphdef):
    def loss_fn(params, model_state, batch, key):
      logits, new_state = models.logits_with_state(graphdef, params, model_state, batch[0])
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()
      return ce, ({}, new_state)
    return loss_fn

  model.train()
  g_train, params, rest = models.functional(model)
  step = make_train_step(pretrain_loss(g_train), optimizer, stateful=True, donate=False)
  state = init_train_state(params, optimizer, model_state=rest)
  new, _ = step(state, (xb, yb), jax.random.key(0))
  for a, b in zip(jax.tree.leaves(rest), jax.tree.leaves(new.model_state)):
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 0

  # Fine-tuning in eval mode: the perturbed passes of the ID-ExpO penalty leave the statistics.
  # (A random pixel attribution keeps the compile small; Grad-CAM in a step is tested above.)
  model.eval()
  g_eval, _, _ = models.functional(model)
  explainer = lambda pred, x, y, key: jax.random.normal(key, x.shape[:2])

  def finetune_loss(params, model_state, batch, key):
    net = nnx.merge(g_eval, params, model_state, copy=True)
    pen, aux = IdExpo(explainer, baseline=0.0, n_steps=2)(Predictor(net.features, net.head), batch[0], batch[1], key)
    _, _, after = nnx.split(net, nnx.Param, ...)
    return pen, (aux, after)

  step = make_train_step(finetune_loss, optimizer, stateful=True, donate=False)
  tuned, metrics = step(new, (xb, yb), jax.random.key(0))
  assert np.isfinite(metrics["loss"])
  _assert_trees_equal(tuned.model_state, new.model_state)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(tuned.params),
                                                       jax.tree.leaves(new.params)))


def test_donated_state_passed_again_is_refused():
  """Reusing a donated state raises a clear error (XLA's own is obscure; on a mesh it crashed)."""
  opt = optax.sgd(0.1)
  loss_fn = lambda p, b, k: (jnp.mean((b @ p["w"]) ** 2), {})  # noqa: E731
  state = init_train_state({"w": jnp.ones((3, 2))}, opt)
  step = make_train_step(loss_fn, opt)
  new, _ = step(state, jnp.ones((4, 3)), None)
  with pytest.raises(ValueError, match=r"already donated .*leaf \.step"):
    step(state, jnp.ones((4, 3)), None)
  step(new, jnp.ones((4, 3)), None)  # the returned state is fine
  assert step.lower(new, jnp.ones((4, 3)), None) is not None  # jit's API still there
  undonated = make_train_step(loss_fn, opt, donate=False)
  fresh = init_train_state({"w": jnp.ones((3, 2))}, opt)
  undonated(fresh, jnp.ones((4, 3)), None)
  undonated(fresh, jnp.ones((4, 3)), None)  # not donated: reusable


def test_init_train_state_owns_its_buffers_so_a_donated_step_spares_the_caller():
  opt = optax.sgd(0.1, momentum=0.9)
  params = {"w": jnp.asarray(np.arange(6.0).reshape(3, 2), jnp.float32)}
  model_state = {"count": jnp.zeros((), jnp.int32)}
  before = np.arange(6.0).reshape(3, 2)  # an independent copy of the caller's values

  def loss_fn(p, ms, b, k):
    return jnp.mean((b @ p["w"]) ** 2), ({}, {"count": ms["count"] + 1})

  state = init_train_state(params, opt, model_state=model_state)
  step = make_train_step(loss_fn, opt, stateful=True)  # donates
  new, _ = step(state, jnp.ones((4, 3)), None)
  assert state.params["w"].is_deleted()  # the state's own buffers were donated...
  assert not params["w"].is_deleted() and not model_state["count"].is_deleted()  # ...not these
  np.testing.assert_array_equal(np.asarray(params["w"]), before)
  assert int(model_state["count"]) == 0 and int(new.model_state["count"]) == 1
  assert not np.array_equal(np.asarray(new.params["w"]), before)  # the step did train
  # The caller's arrays can start another run, which gives the same result.
  again, _ = step(init_train_state(params, opt, model_state=model_state), jnp.ones((4, 3)), None)
  _assert_trees_equal(again.params, new.params)


@pytest.mark.parametrize("name", ["loss", "grad_norm"])
def test_aux_entry_named_like_a_reported_metric_is_refused(name):
  opt = optax.sgd(0.1)

  def loss_fn(p, b, k):
    loss = jnp.mean((b @ p["w"]) ** 2)
    return loss, {name: 2.0 * loss, "ce": loss}

  state = init_train_state({"w": jnp.ones((3, 2))}, opt)
  with pytest.raises(ValueError, match=rf"aux.*\['{name}'\].*Rename them"):
    make_train_step(loss_fn, opt, donate=False)(state, jnp.ones((4, 3)), None)
  ok = lambda p, b, k: (loss_fn(p, b, k)[0], {"ce": loss_fn(p, b, k)[1]["ce"]})  # noqa: E731
  _, metrics = make_train_step(ok, opt, donate=False)(state, jnp.ones((4, 3)), None)
  assert float(metrics["loss"]) == float(metrics["ce"])  # the reported loss is the loss
