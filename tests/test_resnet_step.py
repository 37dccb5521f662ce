"""The PyTorch ResNet-18 of `benchmarks.torch_resnet` computes what ours does: logits, the
ID-ExpO Grad-CAM loss of both PyTorch steps and their gradients (first and second order)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmarks import resnet_step as rs
from tolerances import f32

torch = pytest.importorskip("torch", reason="torch is not installed: `make bench` installs "
                            "torch==2.13.0 (CPU)")


def _model(width=8, seed=0):
  model = rs.make_model(width=width, seed=seed)
  rng = np.random.default_rng(seed)
  for _, m in nnx.iter_modules(model):  # non-trivial frozen statistics
    if isinstance(m, nnx.BatchNorm):
      m.mean[...] = jnp.asarray(rng.normal(size=m.mean.shape).astype(np.float32) * 0.1)
      m.var[...] = jnp.asarray(rng.uniform(0.5, 1.5, size=m.var.shape).astype(np.float32))
  return model


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def test_torch_resnet_copy_equals_ours():
  from benchmarks.torch_resnet import torch_resnet18
  model = _model()
  x, _, _ = rs.make_batch(3)
  want = np.asarray(model(jnp.asarray(x)))
  with torch.no_grad():
    got = torch_resnet18(model)(_nchw(x)).numpy()
  np.testing.assert_allclose(got, want, **f32(float(np.abs(want).max())))


@pytest.mark.parametrize("variant,second_order", [("loop", False), ("vectorised", True)])
def test_torch_steps_loss_and_gradients_match_ours(variant, second_order):
  from benchmarks.torch_idexpo import idexpo_gradcam_loss
  from benchmarks.torch_resnet import idexpo_gradcam_loss_loop, torch_resnet18
  from idexpo_jax.models import functional
  model = _model(seed=1)
  x, y, base = rs.make_batch(2, seed=1)
  graphdef, params, rest = functional(model)
  loss_fn = rs.ours_loss(graphdef, rest, jnp.asarray(base), second_order=second_order)
  batch = (jnp.asarray(x), jnp.asarray(y))
  (loss, _), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, batch,
                                                                        jax.random.key(0))
  tm = torch_resnet18(model)
  kw = dict(n_steps=rs.N_STEPS, fraction=rs.FRACTION, lam=rs.LAM, lam2=rs.LAM2)
  args = (tm, _nchw(x), torch.from_numpy(y.astype(np.int64)),
          torch.from_numpy(base)[:, None, None])
  tl = (idexpo_gradcam_loss_loop(*args, **kw) if variant == "loop"
        else idexpo_gradcam_loss(*args, ce_from_clean_row=True, **kw))
  tl.backward()
  np.testing.assert_allclose(float(tl), float(loss), **f32(float(abs(loss))))
  g = nnx.to_pure_dict(grads)
  # Gradients through 20 convolutions, the CAM's backward pass and the soft masks: float32
  # reordering grows along the chain; 1e-4 relative to the largest entry of each tensor.
  pairs = [(tm.fc.weight.grad.numpy().T, g["fc"]["kernel"]),
           (tm.stem.weight.grad.numpy().transpose(2, 3, 1, 0), g["stem"]["kernel"]),
           (tm.stages[3][1].conv2.weight.grad.numpy().transpose(2, 3, 1, 0),
            g["stages"][3][1]["conv2"]["kernel"])]
  for got, want in pairs:
    want = np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
