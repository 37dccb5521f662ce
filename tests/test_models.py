"""NNX models: feature/head shapes, the functional `Predictor`, and BatchNorm modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from idexpo_jax import models
from tolerances import F32


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
  np.testing.assert_allclose(call, module_call, **F32)


@pytest.mark.parametrize("name,ctor,x_shape,feat_shape", [
    ("cnn", lambda: models.SmallCNN(1, 10, width=2, rngs=nnx.Rngs(0)), (2, 8, 8, 1), (2, 4, 4, 4)),
    ("resnet", lambda: models.ResNet18(3, 10, width=2, rngs=nnx.Rngs(0)), (2, 8, 8, 3),
     (2, 4, 4, 4)),
])
def test_feature_and_head_shapes_and_predictor_fn(name, ctor, x_shape, feat_shape):
  model = fast_model(ctor)
  model.eval()
  xb = _x(x_shape)
  g, params, rest = models.functional(model)
  feats, logits, call, module_call = jax.jit(lambda p, xb: _forward(g, p, rest, xb))(params, xb)
  assert feats.shape == feat_shape, name
  assert logits.shape == (2, 10)
  np.testing.assert_allclose(call, logits, **F32)
  np.testing.assert_allclose(call, module_call, atol=1e-5)
  with pytest.raises(ValueError, match="`x`"):
    model(_x(x_shape[1:]))  # one image without batch axis


@pytest.mark.parametrize("stem_stride,feature_stage,feat_shape", [
    (1, 2, (2, 16, 16, 8)), (2, 2, (2, 8, 8, 8)), (1, 3, (2, 8, 8, 16))])
def test_resnet_feature_stages(stem_stride, feature_stage, feat_shape):
  """Shapes only (abstract evaluation): 32×32 inputs, stage outputs of width·2^(stage−1)."""
  model = fast_model(lambda: models.ResNet18(3, 10, width=4, stem_stride=stem_stride,
                                             feature_stage=feature_stage, rngs=nnx.Rngs(0)))
  model.eval()
  g, params, rest = models.functional(model)
  feats, logits, _, _ = jax.eval_shape(lambda p: _forward(g, p, rest, jnp.zeros((2, 32, 32, 3))),
                                       params)
  assert feats.shape == feat_shape and logits.shape == (2, 10)


def test_mlp_wrong_width_names_x():
  model = fast_model(lambda: models.MLP(5, 3, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="`x`"):
    model(_x((2, 4)))


def test_mlp_kernel_init_is_used():
  """Xavier (Glorot) uniform: weights within ±sqrt(6 / (fan_in + fan_out)), biases zero."""
  m = models.MLP(7, 1, hidden=(200, 200), kernel_init=jax.nn.initializers.glorot_uniform(),
          rngs=nnx.Rngs(0))
  for layer in [*m.layers, m.out]:
    k = np.asarray(layer.kernel[...])
    bound = np.sqrt(6.0 / sum(k.shape))
    assert np.abs(k).max() <= bound and np.abs(k).max() > 0.9 * bound
    np.testing.assert_allclose(k.std(), bound / np.sqrt(3), rtol=0.1)
    np.testing.assert_array_equal(np.asarray(layer.bias[...]), 0)


def test_small_cnn_pool_sets_the_feature_map_size():
  cnn = models.SmallCNN(1, 3, width=2, pool=4, rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
  feats = cnn.features(x)
  assert feats.shape == (2, 7, 7, 4)
  # The pooling is a 4×4 mean of the second convolution's activations.
  a = jax.nn.relu(cnn.conv2(jax.nn.relu(cnn.conv1(x))))
  np.testing.assert_allclose(feats, a.reshape(2, 7, 4, 7, 4, 4).mean((2, 4)), rtol=1e-5,
                             atol=1e-6)
  assert cnn(x).shape == (2, 3)
  with pytest.raises(ValueError, match="pool"):
    models.SmallCNN(1, 3, width=2, pool=0, rngs=nnx.Rngs(0))
