"""Tests for idexpo_jax.training.parallel: the sharded step equals the single-device step.

The multi-device check runs in a subprocess with four fake CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`), since the device count is fixed when JAX
starts.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from idexpo_jax.training import parallel

_SCRIPT = textwrap.dedent("""
  import functools
  import jax, jax.numpy as jnp, numpy as np, optax
  from flax import nnx
  jax.config.update("jax_numpy_dtype_promotion", "strict")
  from idexpo_jax import IdExpo, make_train_step, init_train_state
  from idexpo_jax.explainers.grad_cam import grad_cam
  from idexpo_jax.training import parallel
  from idexpo_jax.models import MLP, functional, logits_with_state, predictor_fn

  class BNNet(nnx.Module):  # conv-BatchNorm-GAP-linear (ResNet-18's init alone compiles ~20 ops)
    def __init__(self, rngs):
      self.conv = nnx.Conv(3, 8, (3, 3), use_bias=False, rngs=rngs)
      self.bn = nnx.BatchNorm(8, rngs=rngs)
      self.fc = nnx.Linear(8, 10, rngs=rngs)
    def __call__(self, x):
      return self.fc(jax.nn.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))

  assert jax.device_count() == 4, jax.devices()
  mesh = parallel.data_mesh()
  B, STEPS = 8, 2
  rng = np.random.default_rng(0)
  xs = rng.normal(size=(STEPS, B, 4, 4, 3)).astype(np.float32)
  ys = rng.integers(0, 10, size=(STEPS, B)).astype(np.int32)
  key = jax.random.key(42)

  def idexpo_loss(graphdef, rest):
    explainer = functools.partial(grad_cam, upsample="nearest", second_order=False)
    def loss_fn(params, batch, key):
      x, y = batch
      pred = predictor_fn(graphdef, params, rest)
      k1, k2 = jax.random.split(key)
      # Per-example noise: rows must reach the devices in order for the keys to match.
      noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(jax.random.split(k1, len(x)))
      ce = optax.softmax_cross_entropy_with_integer_labels(pred(x + 0.1 * noise), y).mean()
      pen, aux = IdExpo(explainer, baseline=jnp.zeros(3), n_steps=4)(pred, x, y, k2)
      return ce + 0.5 * pen, {"ce": ce, **aux}
    return loss_fn

  def bn_loss(graphdef):
    def loss_fn(params, state, batch, key):
      x, y = batch
      logits, new_state = logits_with_state(graphdef, params, state, x)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return ce, ({"ce": ce}, new_state)
    return loss_fn

  def run(step, state, shard):
    for t in range(STEPS):
      batch = (xs[t], ys[t])
      if shard:
        batch = parallel.shard_batch(batch, mesh)
        assert batch[0].sharding.shard_shape(batch[0].shape)[0] == B // 4
      state, metrics = step(state, batch, jax.random.fold_in(key, t))
    return state, metrics

  opt = optax.sgd(0.02, momentum=0.9, nesterov=True)
  mlp = MLP(4 * 4 * 3, 10, hidden=(16,), rngs=nnx.Rngs(0))
  net = BNNet(nnx.Rngs(1))
  net.train()
  for name, model, stateful in (("idexpo", mlp, False), ("bn", net, True)):
    graphdef, params, rest = functional(model)
    loss_fn = bn_loss(graphdef) if stateful else idexpo_loss(graphdef, rest)
    fresh = lambda: jax.tree.map(jnp.array, init_train_state(params, opt, rest if stateful else ()))
    single, m1 = run(make_train_step(loss_fn, opt, stateful=stateful), fresh(), False)
    step = parallel.make_data_parallel_step(
        make_train_step(loss_fn, opt, stateful=stateful, jit=False), mesh)
    sharded, m4 = run(step, parallel.replicate(fresh(), mesh), True)
    assert int(sharded.step) == STEPS
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
      assert b.sharding.is_fully_replicated and len(b.sharding.device_set) == 4
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(m1["loss"]), float(m4["loss"]), rtol=1e-5)
    moved = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params),
                                                         jax.tree.leaves(sharded.params)))
    assert moved > 1e-4, moved  # the steps did change the parameters
    # A donated state passed again is refused (it crashed the process with SIGSEGV before).
    donated = parallel.replicate(fresh(), mesh)
    batch = parallel.shard_batch((xs[0], ys[0]), mesh)
    step(donated, batch, key)
    try:
      step(donated, batch, key)
      raise AssertionError("a donated state was accepted again")
    except ValueError as e:
      assert "already donated" in str(e), e
    print(name, "ok")
""")


def test_sharded_step_equals_single_device_step():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
         "JAX_PLATFORMS": "cpu"}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, cwd=root, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-4000:]
  assert out.stdout.split() == ["idexpo", "ok", "bn", "ok"], out.stdout


def test_process_rows_splits_contiguously():
  batch = {"x": np.arange(12).reshape(6, 2), "y": np.arange(6)}
  parts = [parallel.process_rows(batch, num_processes=3, process_index=i) for i in range(3)]
  np.testing.assert_array_equal(np.concatenate([p["y"] for p in parts]), batch["y"])
  np.testing.assert_array_equal(parts[1]["x"], batch["x"][2:4])
  with pytest.raises(ValueError, match="divisible by 4"):
    parallel.process_rows(batch, num_processes=4, process_index=0)


def test_shard_batch_on_one_device_keeps_values():
  mesh = parallel.data_mesh()
  x = np.arange(8.0, dtype=np.float32).reshape(4, 2)
  np.testing.assert_array_equal(np.asarray(parallel.shard_batch(x, mesh)), x)
  with pytest.raises(ValueError, match="leading batch axis"):
    parallel.shard_batch(np.float32(1.0), mesh)


def test_initialize_distributed_is_a_no_op_on_one_host(monkeypatch):
  for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(var, raising=False)
  assert parallel.initialize_distributed() is False
