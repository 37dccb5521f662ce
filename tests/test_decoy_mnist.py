"""Tests for experiments/rrr/decoy_mnist.py: fixed batches and the two loss scalings."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.rrr import decoy_mnist
from experiments.rrr.configs import mnist, mnist_unit


def _cfg(**kw):
  c = ml_collections.ConfigDict({"hidden": (6,), "init_scale": 0.1, "lr": 1e-2, "epochs": 2,
                                 "weight_penalty": 1e-4})
  c.update(kw)
  return c


def _data(n, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.random((n, 28, 28, 1)).astype(np.float32)
  y = rng.integers(0, 10, n).astype(np.int32)
  a = np.zeros_like(x, bool)
  a[:, :4, :4] = True
  return x, y, a


def test_fixed_batches_keep_the_order_and_pad_with_zero_weights():
  x, y, a = _data(10)
  xb, yb, ab, wb = decoy_mnist.fixed_batches(x, y, a, 4)
  assert xb.shape == (3, 4, 28, 28, 1) and ab.dtype == np.float32
  np.testing.assert_array_equal(xb.reshape(12, 28, 28, 1)[:10], x)  # unshuffled
  np.testing.assert_array_equal(yb.reshape(12)[:10], y)
  np.testing.assert_array_equal(wb.reshape(12), [1.0] * 10 + [0.0] * 2)


@jax.numpy_dtype_promotion("standard")  # optax's Adam fails under the tests' strict promotion
def test_mean_scaling_trains_like_the_summed_loss_and_padding_is_inert():
  """Adam is invariant to a constant loss scale: with full batches, "mean" = "sum" / B."""
  cfg = _cfg()
  x, y, a = _data(16)
  graphdef, params0, rest = decoy_mnist.init_model(cfg, 0)
  w = np.concatenate([np.asarray(p).ravel() for p in jax.tree.leaves(params0)])
  assert w.size == 784 * 6 + 6 + 6 * 10 + 10  # every weight and bias from N(0, 0.1²)
  assert abs(w.std() - 0.1) < 0.005 and abs(w.mean()) < 0.005
  lam = jnp.float32(10.0)
  full = decoy_mnist.fixed_batches(x, y, a, 8)
  train_sum = decoy_mnist.make_trainer(cfg, graphdef, rest, scaling="sum")
  p_sum, h_sum = train_sum(params0, lam, full)
  p_mean, h_mean = decoy_mnist.make_trainer(cfg, graphdef, rest, scaling="mean")(params0, lam,
                                                                                   full)
  np.testing.assert_allclose(np.asarray(h_sum), 8 * np.asarray(h_mean), rtol=1e-4)
  # Equal up to Adam's ε, which matters only for entries with tiny gradients: compare the updates.
  flat = lambda p: np.concatenate([np.asarray(l).ravel() for l in jax.tree.leaves(p)])
  step_sum, step_mean = flat(p_sum) - flat(params0), flat(p_mean) - flat(params0)
  assert np.linalg.norm(step_sum - step_mean) < 0.02 * np.linalg.norm(step_sum)
  # Zero-weight padding rows are inert: 12 rows in batches of 8 (4 padded rows) train the same
  # whatever the padded rows hold.
  padded = decoy_mnist.fixed_batches(x[:12], y[:12], a[:12], 8)
  xj, yj, aj, wj = (np.array(b) for b in padded)
  xj[1, 4:], yj[1, 4:], aj[1, 4:] = 5.0, 3, 1.0
  assert wj[1, 4:].sum() == 0.0
  p_zero, _ = train_sum(params0, lam, padded)
  p_junk, _ = train_sum(params0, lam, (xj, yj, aj, wj))
  np.testing.assert_array_equal(flat(p_zero), flat(p_junk))
  with pytest.raises(ValueError, match="scaling"):
    decoy_mnist.make_trainer(cfg, graphdef, rest, scaling="max")


def test_configs_are_the_papers_setting():
  c, u = mnist.get_config(), mnist_unit.get_config()
  assert (c.hidden, c.lr, c.batch_size, c.epochs, c.patch, c.scaling, c.lam, c.weight_penalty,
          c.raw) == ((50, 30), 1e-3, 256, 64, 4, "sum", 1000.0, 1e-4, True)
  assert len(c.lambdas) == 13 and c.lambdas[0] == pytest.approx(1e-4)
  assert not u.raw and u.lam == pytest.approx(1000.0 / 255 ** 2)


@pytest.mark.parametrize("field,value", [("lr", -1e-3), ("epochs", 0), ("lambdas", (10.0, -1.0))])
def test_bad_config_fails_before_any_work_naming_the_field(field, value, tmp_path):
  cfg = mnist.get_config()
  cfg.out_dir = str(tmp_path / "out")
  cfg[field] = value
  with pytest.raises(ValueError, match=rf"`{field}` must be"):
    decoy_mnist.run(cfg)
  assert not (tmp_path / "out").exists()
