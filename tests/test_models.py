"""NNX models: feature/head shapes, the functional `Predictor`, and BatchNorm modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from idexpo_jax import models


def fast_model(ctor, seed=0):
  """`ctor()` built abstractly, its variables filled from NumPy (eager NNX init is slow on CPU).

  Kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.1²), BatchNorm scales/variances 1 and means 0. The
  structure (shapes, graph, modes) is the one `ctor` builds.
  """
  graphdef, state = nnx.split(nnx.eval_shape(ctor))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-2].key
    if name == "kernel":
      value = rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    elif name == "bias":
      value = 0.1 * rng.normal(size=leaf.shape)
    elif name in ("scale", "var"):
      value = np.ones(leaf.shape)
    else:
      value = np.zeros(leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def _x(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _forward(graphdef, params, rest, xb):
  """Features, head(features) and the predictor's call, plus the module's own `__call__`."""
  pred = models.predictor_fn(graphdef, params, rest)
  feats = pred.features(xb)
  module_call = nnx.merge(graphdef, params, rest)(xb)
  return feats, pred.head(feats), pred(xb), module_call


def test_mlp_matches_numpy_forward():
  model = models.MLP(5, 3, hidden=(4, 6), rngs=nnx.Rngs(0))  # the real initialiser
  xb = _x((2, 5))
  g, params, rest = models.functional(model)
  feats, logits, call, module_call = jax.jit(lambda p, xb: _forward(g, p, rest, xb))(params, xb)
  np.testing.assert_array_equal(feats, xb)  # identity features
  h = np.asarray(xb, np.float64)
  for layer in model.layers:
    h = np.maximum(h @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...]), 0.0)
  ref = h @ np.asarray(model.out.kernel[...]) + np.asarray(model.out.bias[...])
  assert logits.shape == (2, 3)
  np.testing.assert_allclose(logits, ref, atol=1e-5)
  np.testing.assert_allclose(call, module_call, atol=1e-6)


@pytest.mark.parametrize("name,ctor,x_shape,feat_shape", [
    ("cnn", lambda: models.SmallCNN(1, 10, width=2, rngs=nnx.Rngs(0)), (2, 8, 8, 1), (2, 4, 4, 4)),
    ("resnet", lambda: models.ResNet18(3, 10, width=2, rngs=nnx.Rngs(0)), (2, 8, 8, 3),
     (2, 4, 4, 4)),
    ("resnet_stem2", lambda: models.ResNet18(3, 10, width=2, stem_stride=2, rngs=nnx.Rngs(0)),
     (2, 8, 8, 3), (2, 2, 2, 4)),
])
def test_feature_and_head_shapes_and_predictor_fn(name, ctor, x_shape, feat_shape):
  model = fast_model(ctor)
  model.eval()
  xb = _x(x_shape)
  g, params, rest = models.functional(model)
  feats, logits, call, module_call = jax.jit(lambda p, xb: _forward(g, p, rest, xb))(params, xb)
  assert feats.shape == feat_shape, name
  assert logits.shape == (2, 10)
  np.testing.assert_allclose(call, logits, atol=1e-6)
  np.testing.assert_allclose(call, module_call, atol=1e-5)
  with pytest.raises(ValueError, match="`x`"):
    model(_x(x_shape[1:]))  # one image without batch axis


def test_batchnorm_updates_only_in_train_mode():
  model = fast_model(lambda: models.ResNet18(3, 10, width=2, rngs=nnx.Rngs(0)))
  xb = 1.0 + 2.0 * _x((4, 8, 8, 3))
  run = lambda g: jax.jit(lambda p, r, xb: models.logits_with_state(g, p, r, xb))
  model.train()
  g_train, params, rest = models.functional(model)
  logits_train, rest_train = run(g_train)(params, rest, xb)
  model.eval()
  g_eval, _, _ = models.functional(model)
  logits_eval, rest_eval = run(g_eval)(params, rest, xb)
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max()
           for a, b in zip(jax.tree.leaves(rest), jax.tree.leaves(rest_train))]
  assert min(moved) > 0, "every running statistic moves in train mode"
  for a, b in zip(jax.tree.leaves(rest), jax.tree.leaves(rest_eval)):
    np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(logits_train) - np.asarray(logits_eval)).max() > 1e-3  # batch vs running
  pred_logits = jax.jit(lambda p, xb: models.predictor_fn(g_eval, p, rest)(xb))(params, xb)
  np.testing.assert_allclose(pred_logits, logits_eval, atol=1e-5)


def test_mlp_wrong_width_names_x():
  model = fast_model(lambda: models.MLP(5, 3, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="`x`"):
    model(_x((2, 4)))
