"""`idexpo_jax.conv` against `lax.conv_general_dilated` (float64): values, first- and second-order
gradients, the `nnx.Conv` drop-in, the models, and the backend switch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax
from jax.test_util import check_grads

from idexpo_jax import conv as C
from idexpo_jax.models import ResNet18, SmallCNN
from tolerances import F32, F64, f32

DN = ("NHWC", "HWIO", "NHWC")
PLANS = [None, "shifted", "patches", C.Plan("lax", "lax", "shifted"),
         C.Plan("patches", "lax", "patches"), C.Plan("shifted", "shifted", "lax")]


def _ref(x, w, stride, padding):
  return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=DN)


def _data(side, k, cin=3, cout=4, n=2, seed=0, width=None):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, side, width or side, cin)))
  w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin))
  return x, w


def _loss(conv):
  """A nonlinear scalar of the convolution, so that second derivatives are not trivially zero."""
  return lambda x, w: jnp.sum(jnp.sin(conv(x, w)) ** 2)


def _second(conv):
  """A scalar of the first-order gradients (what differentiating Grad-CAM's weights needs)."""
  def f(x, w):
    gx, gw = jax.grad(_loss(conv), (0, 1))(x, w)
    return jnp.sum(jnp.tanh(gx) * x) + jnp.sum(gw ** 2)
  return f


CASES = [(side, k, stride, pad) for side in (1, 2, 4, 9) for k in (3, 1) for stride in (1, 2)
         for pad in ("SAME", "VALID") if not (pad == "VALID" and side < k)]


@pytest.mark.parametrize("side,k,stride,pad", CASES)
@pytest.mark.parametrize("plan", PLANS, ids=str)
def test_values_and_gradients_match_lax_in_float64(x64, side, k, stride, pad, plan):
  with x64():
    x, w = _data(side, k, width=side + 1 if side == 9 else None)
    ours = lambda x, w: C.conv2d(x, w, stride, pad, method=plan)
    ref = lambda x, w: _ref(x, w, stride, pad)
    np.testing.assert_allclose(ours(x, w), ref(x, w), **F64)
    for a, b in zip(jax.grad(_loss(ours), (0, 1))(x, w), jax.grad(_loss(ref), (0, 1))(x, w)):
      np.testing.assert_allclose(a, b, **F64)
    for a, b in zip(jax.grad(_second(ours), (0, 1))(x, w), jax.grad(_second(ref), (0, 1))(x, w)):
      np.testing.assert_allclose(a, b, **F64)


@pytest.mark.parametrize("side,stride", [(2, 1), (4, 2), (6, 1)])
def test_check_grads_second_order(x64, side, stride):
  with x64():
    x, w = _data(side, 3, cin=2, cout=3)
    check_grads(lambda x, w: C.conv2d(x, w, stride, "SAME"), (x, w), order=2, modes=["rev"])


def test_explicit_padding_and_negative_transpose_padding(x64):
  # lo > k - 1 makes the transposed convolution's padding negative on that side.
  with x64():
    x, w = _data(5, 3)
    pads = ((3, 0), (1, 2))
    ours = lambda x, w: C.conv2d(x, w, 1, pads, method=C.Plan("lax", "lax", "shifted"))
    ref = lambda x, w: _ref(x, w, 1, pads)
    np.testing.assert_allclose(ours(x, w), ref(x, w), **F64)
    for a, b in zip(jax.grad(_second(ours), (0, 1))(x, w), jax.grad(_second(ref), (0, 1))(x, w)):
      np.testing.assert_allclose(a, b, **F64)


def test_float32_jit_and_vmap_match_lax():
  x, w = _data(4, 3, cin=8, cout=16, n=6)
  x, w = x.astype(jnp.float32), w.astype(jnp.float32)
  ours = jax.jit(jax.vmap(lambda xi: C.conv2d(xi[None], w, 2, "SAME")[0]))
  np.testing.assert_allclose(ours(x), _ref(x, w, 2, "SAME"), **F32)


def test_conv_layer_is_nnx_conv_with_the_same_parameters(x64):
  for kw in ({}, {"use_bias": False}, {"strides": 2}):
    ours = C.Conv(3, 5, (3, 3), rngs=nnx.Rngs(3), **kw)
    theirs = nnx.Conv(3, 5, (3, 3), rngs=nnx.Rngs(3), **kw)
    assert isinstance(ours, nnx.Conv)
    a, b = nnx.to_pure_dict(nnx.state(ours, nnx.Param)), nnx.to_pure_dict(nnx.state(theirs,
                                                                                    nnx.Param))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(u, v)
  with x64():
    layer = C.Conv(3, 5, (3, 3), strides=2, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.arange(5.0)
    x, _ = _data(2, 3)
    want = _ref(x, layer.kernel[...], 2, "SAME") + jnp.arange(5.0)
    np.testing.assert_allclose(layer(x), want, **F64)


def test_unsupported_options_fall_back_to_lax(x64):
  with x64():
    x, w = _data(6, 3, cin=4)
    pads = ((1, 1), (1, 1))
    for kw in ({"rhs_dilation": (2, 2)}, {"lhs_dilation": (2, 1)}):
      want = lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=DN, **kw)
      got = C.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=DN, **kw)
      np.testing.assert_allclose(got, want, **F64)
    wg = w[:, :, :2]
    want = lax.conv_general_dilated(x, wg, (1, 1), "SAME", dimension_numbers=DN,
                                    feature_group_count=2)
    got = C.conv_general_dilated(x, wg, (1, 1), "SAME", dimension_numbers=DN,
                                 feature_group_count=2)
    np.testing.assert_allclose(got, want, **F64)


def _primitives(fn, *args):
  return {str(e.primitive) for e in jax.make_jaxpr(fn)(*args).eqns}


def test_backend_switch(monkeypatch):
  x, w = _data(2, 3, cin=8, cout=8)
  x, w = x.astype(jnp.float32), w.astype(jnp.float32)
  cpu = _primitives(lambda x, w: C.conv2d(x, w), x, w)
  assert "conv_general_dilated" not in cpu and "custom_vjp_call" in "".join(cpu)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  gpu = _primitives(lambda x, w: C.conv2d(x, w), x, w)
  assert gpu == {"conv_general_dilated"}
  layer = C.Conv(8, 8, (3, 3), rngs=nnx.Rngs(0))
  assert "conv_general_dilated" in _primitives(lambda x: layer(x), x)


def test_cpu_plan_rule():
  assert C.cpu_plan((2, 2), (3, 3), (1, 1), 512, 512).fwd == "shifted"
  assert C.cpu_plan((16, 16), (3, 3), (1, 1), 64, 64) == C.LAX
  assert C.cpu_plan((4, 4), (3, 3), (2, 2), 256, 512).dx == "shifted"
  assert C.cpu_plan((16, 16), (1, 1), (2, 2), 64, 128) == C.Plan("shifted", "shifted", "shifted")


def _use_lax(model):
  for _, m in nnx.iter_modules(model):
    if isinstance(m, nnx.Conv):
      m.conv_general_dilated = lax.conv_general_dilated
  return model


@pytest.mark.parametrize("make,shape", [
    (lambda: SmallCNN(3, 10, width=8, rngs=nnx.Rngs(0)), (3, 16, 16, 3)),
    (lambda: ResNet18(3, 10, width=8, stem_stride=2, rngs=nnx.Rngs(0)), (3, 32, 32, 3)),
    (lambda: ResNet18(3, 10, width=4, rngs=nnx.Rngs(1)), (2, 8, 8, 3)),
])
def test_models_match_the_lax_convolution(make, shape):
  fast, slow = make(), _use_lax(make())
  fast.eval()
  slow.eval()
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape).astype(np.float32))
  gf, _, rf = nnx.split(fast, nnx.Param, ...)
  gs, ps, rs = nnx.split(slow, nnx.Param, ...)
  logits = lambda g, r: jax.jit(lambda p: nnx.merge(g, p, r)(x))
  y = logits(gf, rf)(ps)
  np.testing.assert_allclose(y, logits(gs, rs)(ps), **f32(float(jnp.abs(y).max())))
  loss = lambda g, r: jax.jit(jax.grad(lambda p: jnp.sum(jnp.tanh(nnx.merge(g, p, r)(x)))))
  a, b = loss(gf, rf)(ps), loss(gs, rs)(ps)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, **f32(float(jnp.abs(v).max())))


@pytest.mark.parametrize("bad, match", [((1, 1, 1), "strides"), ((1,), "strides")])
def test_conv2d_rejects_strides_that_are_not_a_pair(bad, match):
  x, w = _data(4, 3)
  with pytest.raises(ValueError, match=match):
    C.conv2d(x, w, bad, "SAME")


def test_conv2d_rejects_mismatched_shapes():
  x, w = _data(4, 3, cin=3)
  with pytest.raises(ValueError, match="kernel"):
    C.conv2d(x, w[:, :, :2], 1, "SAME")


def _flags_after_import(env_extra, code="import idexpo_jax"):
  import os
  import subprocess
  import sys
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "IDEXPO_JAX_KEEP_XLA_FLAGS")}
  env.update(env_extra)
  out = subprocess.run([sys.executable, "-c", f"{code}; import os; print(os.environ.get("
                        "'XLA_FLAGS', ''))"], env=env, capture_output=True, text=True, check=True)
  return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def _jaxlib_at_least_0_10():
  import jaxlib
  return tuple(int(v) for v in jaxlib.__version__.split(".")[:2]) >= (0, 10)


@pytest.mark.skipif(not _jaxlib_at_least_0_10(), reason="the flag is added on jaxlib >= 0.10 only")
def test_import_adds_the_cpu_convolution_flag_to_a_fresh_process():
  assert _flags_after_import({}) == C.CPU_XLA_FLAGS
  assert _flags_after_import({"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}) == (
      "--xla_cpu_enable_fast_math=false " + C.CPU_XLA_FLAGS)


@pytest.mark.parametrize("env, code, want", [
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=-reduce"}, "import idexpo_jax",
     "--xla_cpu_experimental_ynn_fusion_type=-reduce"),      # the user's own choice stands
    ({"IDEXPO_JAX_KEEP_XLA_FLAGS": "1"}, "import idexpo_jax", ""),   # opted out
    ({}, "import jax.numpy as jnp; jnp.ones(1).block_until_ready(); import idexpo_jax", ""),
])
def test_import_leaves_xla_flags_alone_when_it_should(env, code, want):
  assert _flags_after_import(env, code) == want
