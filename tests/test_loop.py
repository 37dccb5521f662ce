"""Tests for idexpo_jax.training.loop: the deterministic training loop and batch function."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from idexpo_jax.data.sklearn_data import Split
from idexpo_jax.training.loop import epoch_batch_fn, fit
from idexpo_jax.training.train import init_train_state, make_train_step


def _regression_problem(n=32, d=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  w = np.arange(1, d + 1, dtype=np.float32)
  return Split(x, (x @ w).astype(np.float32)), w


def _loss_fn(params, batch, key):
  del key
  pred = batch.x @ params["w"]
  return jnp.mean((pred - batch.y) ** 2), {}


def test_epoch_batch_fn_is_a_permutation_per_epoch_and_deterministic():
  split, _ = _regression_problem(n=10)
  fn = epoch_batch_fn(split, 3, seed=7)  # 3 batches per epoch, 1 example dropped
  for epoch in range(3):
    rows = np.concatenate([fn(3 * epoch + i).x for i in range(3)])
    # 9 distinct examples of the split, each at most once.
    matches = (rows[:, None, :] == split.x[None]).all(-1)
    assert matches.sum() == 9 and (matches.sum(0) <= 1).all()
  again = epoch_batch_fn(split, 3, seed=7)
  for t in (5, 0, 4, 5):  # any order, same batch
    np.testing.assert_array_equal(again(t).x, fn(t).x)
  assert not np.array_equal(fn(0).x, fn(3).x)  # epochs are reshuffled
  assert not np.array_equal(epoch_batch_fn(split, 3, seed=8)(0).x, fn(0).x)


def test_epoch_batch_fn_rejects_bad_batch_size():
  split, _ = _regression_problem(n=4)
  with pytest.raises(ValueError, match="batch_size"):
    epoch_batch_fn(split, 5)


def test_fit_converges_records_history_and_evaluates():
  split, w = _regression_problem()
  opt = optax.sgd(0.1)
  step = make_train_step(_loss_fn, opt)
  state = init_train_state({"w": jnp.zeros(3)}, opt)
  evals = []

  def eval_fn(s):
    evals.append(int(s.step))
    return {"err": jnp.abs(s.params["w"] - w).max()}

  state, hist = fit(step, state, epoch_batch_fn(split, 8), num_steps=200, key=jax.random.key(0),
                    eval_fn=eval_fn, eval_every=50, progress=False)
  assert int(state.step) == 200 and len(hist) == 200
  assert [h["step"] for h in hist] == list(range(1, 201))
  assert evals == [50, 100, 150, 200]
  assert "err" in hist[49] and "err" not in hist[50]
  assert all(isinstance(v, float) for v in hist[0].values() if not isinstance(v, int))
  np.testing.assert_allclose(state.params["w"], w, atol=1e-3)
  assert hist[-1]["loss"] < 1e-4 < hist[0]["loss"]


def test_fit_resumes_bit_identically_and_folds_the_step_into_the_key():
  split, _ = _regression_problem()
  opt = optax.sgd(0.05, momentum=0.9)  # optax.adam trips strict dtype promotion

  def noisy_loss(params, batch, key):  # the key matters: the result depends on fold_in(key, t)
    loss, aux = _loss_fn(params, batch, key)
    return loss + jnp.sum(jax.random.normal(key, (3,)) * params["w"]), aux

  step = make_train_step(noisy_loss, opt, donate=False)
  batch_fn = epoch_batch_fn(split, 8, seed=1)
  key = jax.random.key(3)
  init = lambda: init_train_state({"w": jnp.zeros(3)}, opt)
  full, hist = fit(step, init(), batch_fn, num_steps=10, key=key, progress=False)
  half, _ = fit(step, init(), batch_fn, num_steps=4, key=key, progress=False)
  resumed, hist2 = fit(step, half, batch_fn, num_steps=10, key=key, progress=False)
  np.testing.assert_array_equal(full.params["w"], resumed.params["w"])
  assert [h["step"] for h in hist2] == list(range(5, 11))
  # Independent reference: the same steps written out by hand.
  s = init()
  for t in range(10):
    s, _ = step(s, batch_fn(t), jax.random.fold_in(key, t))
  np.testing.assert_array_equal(full.params["w"], s.params["w"])


def test_fit_with_progress_bar_and_zero_steps(monkeypatch):
  import io

  import tqdm.auto
  import tqdm.std
  out = io.StringIO()  # the bar's own stream, independent of pytest's stderr capture
  monkeypatch.setattr(tqdm.auto, "tqdm", functools.partial(tqdm.std.tqdm, file=out))
  split, _ = _regression_problem()
  opt = optax.sgd(0.1)
  step = make_train_step(_loss_fn, opt)
  state = init_train_state({"w": jnp.zeros(3)}, opt)
  state, hist = fit(step, state, epoch_batch_fn(split, 8), num_steps=3, key=jax.random.key(0),
                    desc="unit")
  assert len(hist) == 3 and "unit" in out.getvalue() and "3/3" in out.getvalue()
  same, none = fit(step, state, epoch_batch_fn(split, 8), num_steps=3, key=jax.random.key(0),
                   progress=False)
  assert none == [] and int(same.step) == 3
  with pytest.raises(ValueError, match="num_steps"):
    fit(step, state, epoch_batch_fn(split, 8), num_steps=-1, key=jax.random.key(0))
