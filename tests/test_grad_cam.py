"""Grad-CAM against its closed form for a GAP + linear head, and its second-order gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idexpo_jax.explainers.grad_cam import grad_cam, grad_cam_batch
from idexpo_jax.core.predictor import Predictor
from tolerances import F32

H, W, C, F, K = 8, 8, 2, 3, 4


def _features(v):
  """1×1 conv + tanh, then 2×2 average pooling: (B, 8, 8, C) -> (B, 4, 4, F)."""
  def features(xb):
    a = jnp.tanh(xb @ v)
    b, h, w, f = a.shape
    return a.reshape(b, h // 2, 2, w // 2, 2, f).mean(axis=(2, 4))
  return features


def linear_predictor(params):
  """Global average pooling + linear head."""
  v, w, c = params
  return Predictor(_features(v), lambda a: a.mean(axis=(1, 2)) @ w + c)


def nonlinear_predictor(params):
  """A head whose channel weights α depend on the features (so ∂α/∂v ≠ 0)."""
  v, u, w = params
  return Predictor(_features(v), lambda a: jnp.tanh(a @ u).mean(axis=(1, 2)) @ w)


def _params(kind, dtype=np.float32, seed=0):
  rng = np.random.default_rng(seed)
  if kind == "linear":
    shapes = [(C, F), (F, K), (K,)]
  else:
    shapes = [(C, F), (F, F), (F, K)]
  return tuple(jnp.asarray(rng.normal(size=s), dtype) for s in shapes)


def _x(dtype=np.float32, seed=1, shape=(H, W, C)):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


def closed_form_cam(params, x, target):
  """ReLU(Σ_f W_{f,y} A_f / (hw)) for the GAP + linear head, in float64 at feature resolution."""
  v, w, _ = (np.asarray(p, np.float64) for p in params)
  a = np.tanh(np.asarray(x, np.float64) @ v)
  a = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2, F).mean(axis=(1, 3))
  h, wd = a.shape[:2]
  return np.maximum((a * w[:, target]).sum(-1) / (h * wd), 0.0)


@pytest.mark.parametrize("target", [0, 3])
def test_linear_head_equals_closed_form(target):
  params, x = _params("linear"), _x()
  cam = jax.jit(lambda p, x: {
      m: grad_cam(linear_predictor(p), x, target, upsample=m)
      for m in ("nearest", "bilinear")})(params, x)
  ref = closed_form_cam(params, x, target)
  assert (ref > 0).any() and (ref == 0).any()  # both sides of the ReLU are exercised
  assert cam["nearest"].shape == (H, W)
  # Nearest upsampling repeats each CAM cell as a 2×2 block.
  np.testing.assert_allclose(cam["nearest"], np.repeat(np.repeat(ref, 2, 0), 2, 1), **F32)
  bilinear = jax.image.resize(jnp.asarray(ref, jnp.float32), (H, W), method="bilinear")
  np.testing.assert_allclose(cam["bilinear"], bilinear, **F32)


def test_non_dividing_nearest_matches_resize():
  """A 3×3 CAM resized to 10×10 (not a multiple): nearest resize of the closed form."""
  v, w, c = _params("linear")
  x = _x(shape=(10, 10, C))
  pred = Predictor(lambda xb: _features(v)(xb)[:, :3, :3],  # (B, 5, 5, F) cropped to 3×3
                   lambda a: a.mean(axis=(1, 2)) @ w + c)
  cam = jax.jit(lambda x: grad_cam(pred, x, 1))(x)
  a = np.tanh(np.asarray(x, np.float64) @ np.asarray(v, np.float64))
  a = a.reshape(5, 2, 5, 2, F).mean(axis=(1, 3))[:3, :3]
  small = np.maximum((a * np.asarray(w, np.float64)[:, 1]).sum(-1) / 9, 0.0)
  expected = jax.image.resize(jnp.asarray(small, jnp.float32), (10, 10), method="nearest")
  assert cam.shape == (10, 10)
  np.testing.assert_allclose(cam, expected, **F32)


def _cam_loss(make, second_order):
  r = jnp.asarray(np.random.default_rng(2).normal(size=(H, W)))

  def loss(params, x):
    cam = grad_cam(make(params), x, 1, second_order=second_order)
    return jnp.sum(r.astype(cam.dtype) * cam)
  return loss, r


def test_second_order_linear_head_closed_form(x64):
  """GAP + linear: W enters the CAM only through α, so its gradient is first-order-free."""
  with x64():
    params, x = _params("linear", np.float64), _x(np.float64)
    loss2, r = _cam_loss(linear_predictor, True)
    loss1, _ = _cam_loss(linear_predictor, False)
    g2 = jax.jit(jax.grad(loss2))(params, x)
    g1 = jax.jit(jax.grad(loss1))(params, x)
  # ∂/∂W_{f,1} Σ r ReLU(Σ_f W_{f,1} A_f / hw) = Σ_ij R_ij 1[cam_ij > 0] A_fij / hw,
  # with R the upsampling adjoint (block sums) of r.
  v = np.asarray(params[0])
  a = np.tanh(np.asarray(x) @ v).reshape(4, 2, 4, 2, F).mean(axis=(1, 3))
  cam = closed_form_cam(params, x, 1)
  rr = np.asarray(r).reshape(4, 2, 4, 2).sum(axis=(1, 3))
  expected = np.zeros((F, K))
  expected[:, 1] = ((rr * (cam > 0))[..., None] * a).sum((0, 1)) / 16
  np.testing.assert_allclose(g2[1], expected, rtol=1e-9, atol=1e-12)
  assert np.abs(expected).max() > 1e-3
  np.testing.assert_array_equal(g1[1], 0.0)  # second_order=False: α is a constant
  np.testing.assert_allclose(g1[0], g2[0], rtol=1e-9)  # V's path is first order here


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_second_order_gradient_matches_finite_differences(x64, kind):
  make = linear_predictor if kind == "linear" else nonlinear_predictor
  with x64():
    params, x = _params(kind, np.float64, seed=3), _x(np.float64, seed=4)
    loss2, _ = _cam_loss(make, True)
    loss1, _ = _cam_loss(make, False)
    jax.test_util.check_grads(jax.jit(lambda p: loss2(p, x)), (params,), order=1,
                              modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)
    g2 = jax.jit(jax.grad(loss2))(params, x)
    g1 = jax.jit(jax.grad(loss1))(params, x)
  diff = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(g2, g1)]
  assert diff[1] > 1e-3, diff  # the head parameters always feel ∂α/∂θ
  if kind == "nonlinear":
    assert diff[0] > 1e-3, diff  # α depends on the features: the feature weights feel it too


def test_batch_equals_vmapped_single():
  params = _params("nonlinear", seed=5)
  xb = jnp.stack([_x(seed=s) for s in range(3)])
  targets = jnp.asarray([0, 2, 3])
  pred = nonlinear_predictor(params)
  for upsample in ("nearest", "bilinear"):
    batch = jax.jit(lambda xb, t: grad_cam_batch(pred, xb, t, upsample=upsample))(xb, targets)
    single = jax.jit(jax.vmap(lambda x, t: grad_cam(pred, x, t, upsample=upsample)))(xb,
                                                                                       targets)
    assert batch.shape == (3, H, W)
    np.testing.assert_allclose(batch, single, **F32)
    assert np.all(np.asarray(batch) >= 0)


def test_wrong_inputs_name_the_argument():
  pred = linear_predictor(_params("linear"))
  traced = lambda fn, *a, **k: jax.jit(lambda: fn(*a, **k))()
  with pytest.raises(ValueError, match="`x`"):
    traced(grad_cam, pred, jnp.zeros((2, H, W, C)), 0)
  with pytest.raises(ValueError, match="`target`"):
    traced(grad_cam, pred, jnp.zeros((H, W, C)), jnp.zeros((2,), jnp.int32))
  with pytest.raises(ValueError, match="`targets`"):
    traced(grad_cam_batch, pred, jnp.zeros((2, H, W, C)), jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError, match="`xb`"):
    traced(grad_cam_batch, pred, jnp.zeros((H * W * C,)), jnp.zeros((1,), jnp.int32))
  with pytest.raises(ValueError, match="`upsample`"):
    traced(grad_cam, pred, jnp.zeros((H, W, C)), 0, upsample="cubic")
  flat = Predictor(lambda xb: xb.reshape(xb.shape[0], -1), lambda a: a[:, :K])
  with pytest.raises(ValueError, match="`features`"):
    traced(grad_cam, flat, jnp.zeros((H, W, C)), 0)


# --- Loud edges (issue 13): bare logits functions, targets, outputs, integer images.


def test_a_bare_logits_function_raises_type_error():
  from idexpo_jax.core.predictor import as_predictor
  logits_fn = linear_predictor(_params("linear"))
  for model in (lambda xb: logits_fn(xb), as_predictor(lambda xb: logits_fn(xb))):
    with pytest.raises(TypeError, match=r"Predictor\(features, head\)"):
      grad_cam(model, _x(), 0)
    with pytest.raises(TypeError, match=r"Predictor\(features, head\)"):
      grad_cam_batch(model, _x()[None], jnp.zeros((1,), jnp.int32))


@pytest.mark.parametrize("target", [-1, K, 10])
def test_target_out_of_range_raises_eagerly_and_gives_nan_maps_when_traced(target):
  pred = linear_predictor(_params("linear"))
  with pytest.raises(ValueError, match=r"`target.*\[0, 4\)"):
    grad_cam(pred, _x(), target)
  with pytest.raises(ValueError, match="`targets`"):
    grad_cam_batch(pred, jnp.stack([_x(), _x(seed=2)]), jnp.asarray([0, target]))
  cams = jax.jit(lambda t: grad_cam_batch(pred, jnp.stack([_x(), _x(seed=2)]), t))(
      jnp.asarray([1, target]))
  np.testing.assert_allclose(cams[0], np.kron(closed_form_cam(_params("linear"), _x(), 1),
                                              np.ones((2, 2))), atol=1e-6)
  assert np.isnan(cams[1]).all()
  assert np.isnan(jax.jit(lambda t: grad_cam(pred, _x(), t))(target)).all()


def test_float_target_raises_type_error():
  with pytest.raises(TypeError, match="`targets`"):
    grad_cam(linear_predictor(_params("linear")), _x(), 1.0)


def test_outputs_differentiate_the_chosen_score():
  params = _params("linear")
  pred = linear_predictor(params)
  np.testing.assert_array_equal(grad_cam(pred, _x(), 2, output="raw"), grad_cam(pred, _x(), 2))
  # log p_y = l_y − logsumexp(l): its CAM weights are W_y − Σ_k p_k W_k (finite differences below).
  cam = grad_cam(pred, _x(), 2, upsample="nearest", output="log_prob")
  v, w, c = (np.asarray(p, np.float64) for p in params)
  a = np.tanh(np.asarray(_x(), np.float64) @ v)
  a = a.reshape(4, 2, 4, 2, F).mean(axis=(1, 3))
  logits = a.mean((0, 1)) @ w + c
  p = np.exp(logits - logits.max())
  p /= p.sum()
  ref = np.maximum((a * (w[:, 2] - w @ p)).sum(-1) / 16, 0.0)
  np.testing.assert_allclose(cam, np.kron(ref, np.ones((2, 2))), atol=1e-6)
  one = Predictor(_features(params[0]), lambda a: a.mean(axis=(1, 2)) @ params[1][:, :1])
  with pytest.raises(ValueError, match="`output='prob'`"):
    grad_cam(one, _x(), 0, output="prob")


def test_integer_image_is_promoted():
  pred = linear_predictor(_params("linear"))
  x = (jnp.arange(H * W * C).reshape(H, W, C) % 3).astype(jnp.int32)
  np.testing.assert_array_equal(grad_cam(pred, x, 1), grad_cam(pred, x.astype(jnp.float32), 1))
