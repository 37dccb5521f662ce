"""Linen and Equinox adapters: the same logits, NHWC ↔ CHW, Grad-CAM through the adapter."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idexpo_jax as ij
from idexpo_jax import adapters


class LinenCNN(nn.Module):

  def setup(self):
    self.conv = nn.Conv(3, (3, 3))
    self.out = nn.Dense(4)

  def features(self, x):
    return jnp.tanh(self.conv(x))

  def head(self, a):
    return self.out(a.mean(axis=(1, 2)))

  def __call__(self, x):
    return self.head(self.features(x))


def _xb(seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(2, 6, 6, 2)), jnp.float32)


def test_linen_predictor_equals_apply_and_explains():
  module, xb = LinenCNN(), _xb()
  variables = module.init(jax.random.key(0), xb)
  pred = adapters.linen_predictor(module, variables, features="features", head="head")
  np.testing.assert_allclose(pred(xb), module.apply(variables, xb), rtol=1e-6)
  feats = module.apply(variables, xb, method="features")
  np.testing.assert_allclose(pred.features(xb), feats, rtol=1e-6)
  plain = adapters.linen_predictor(module, variables)
  np.testing.assert_allclose(plain(xb), module.apply(variables, xb), rtol=1e-6)
  # Grad-CAM through the adapter equals Grad-CAM of hand-written features/head.
  manual = ij.Predictor(lambda x: module.apply(variables, x, method="features"),
                        lambda a: module.apply(variables, a, method="head"))
  np.testing.assert_allclose(ij.explainers.grad_cam.grad_cam(pred, xb[0], 1), ij.explainers.grad_cam.grad_cam(manual, xb[0], 1),
                             rtol=1e-5, atol=1e-7)
  # The variables are the leaves: explain follows new parameters.
  cam = ij.GradCam(baseline=0.0)
  a = ij.explain(cam, pred, xb, jax.random.key(0), targets=jnp.asarray([0, 1]))
  v2 = jax.tree_util.tree_map(lambda p: p * 1.5 + 0.1, variables)
  b = ij.explain(cam, adapters.linen_predictor(module, v2, features="features", head="head"), xb,
                 jax.random.key(0), targets=jnp.asarray([0, 1]))
  assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-4
  with pytest.raises(ValueError, match="both"):
    adapters.linen_predictor(module, variables, features="features")


def test_equinox_predictor_transposes_to_channels_first():
  eqx = pytest.importorskip("equinox")

  class CNN(eqx.Module):
    conv: eqx.nn.Conv2d
    out: eqx.nn.Linear

    def __init__(self, key):
      k1, k2 = jax.random.split(key)
      self.conv = eqx.nn.Conv2d(2, 3, 3, padding=1, key=k1)
      self.out = eqx.nn.Linear(3, 4, key=k2)

    def features(self, x):  # (C, H, W) -> (F, H, W)
      return jnp.tanh(self.conv(x))

    def head(self, a):
      return self.out(a.mean(axis=(1, 2)))

    def __call__(self, x):
      return self.head(self.features(x))

  model, xb = CNN(jax.random.key(0)), _xb(1)
  pred = adapters.equinox_predictor(model, features="features", head="head")
  chw = jnp.transpose(xb, (0, 3, 1, 2))
  np.testing.assert_allclose(pred(xb), jax.vmap(model)(chw), rtol=1e-5, atol=1e-6)
  feats = pred.features(xb)
  assert feats.shape == (2, 6, 6, 3)  # channels-last maps for Grad-CAM
  np.testing.assert_allclose(feats, jnp.transpose(jax.vmap(model.features)(chw), (0, 2, 3, 1)),
                             rtol=1e-6)
  manual = ij.Predictor(lambda x: jnp.transpose(jax.vmap(model.features)(
      jnp.transpose(x, (0, 3, 1, 2))), (0, 2, 3, 1)),
                        lambda a: jax.vmap(model.head)(jnp.transpose(a, (0, 3, 1, 2))))
  np.testing.assert_allclose(ij.explainers.grad_cam.grad_cam(pred, xb[1], 2), ij.explainers.grad_cam.grad_cam(manual, xb[1], 2),
                             rtol=1e-5, atol=1e-7)
  # Tabular models: 1-D examples are never transposed.
  mlp = eqx.nn.MLP(5, 3, 4, 1, key=jax.random.key(1))
  xt = jnp.ones((2, 5), jnp.float32)
  np.testing.assert_allclose(adapters.equinox_predictor(mlp)(xt), jax.vmap(mlp)(xt), rtol=1e-6)
  # An Equinox model has non-array leaves (activation functions): explain keeps them static.
  phi = ij.explain(ij.Lime(baseline=0.0, n_samples=16, distance="euclidean"),
                   adapters.equinox_predictor(mlp), xt, jax.random.key(0))
  assert phi.shape == (2, 5)
