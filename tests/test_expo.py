"""Tests for ExpO's regularisers: expo_fidelity, expo_fidelity_1d, expo_stability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from idexpo_jax.regularisers.expo import expo_fidelity, expo_fidelity_1d, expo_stability
from tolerances import F32

D = 3
W = jnp.asarray([[0.5, -1.0], [2.0, 0.3], [-0.7, 1.1]], jnp.float32)
XB = jax.random.normal(jax.random.key(0), (4, D))
REGULARISERS = (expo_fidelity, expo_fidelity_1d, expo_stability)


def affine(xb):
  return xb @ W + 1.0


def square(xb):
  return jnp.sum(xb ** 2, axis=-1)


def mlp(params, xb):
  w1, b1, w2, b2 = params
  return jnp.tanh(xb @ w1 + b1) @ w2 + b2


def mlp_params(dtype):
  ks = jax.random.split(jax.random.key(7), 4)
  return (jax.random.normal(ks[0], (D, 5), dtype), jax.random.normal(ks[1], (5,), dtype),
          jax.random.normal(ks[2], (5, 2), dtype), jax.random.normal(ks[3], (2,), dtype))


@pytest.mark.parametrize("reg", (expo_fidelity, expo_fidelity_1d))
def test_fidelity_zero_for_affine_positive_for_curved(reg):
  key = jax.random.key(1)
  f = jax.jit(lambda xb, k: reg(affine, xb, k)[0])
  g = jax.jit(lambda xb, k: reg(square, xb, k))
  zero = f(XB, key)
  loss, aux = g(XB, key)
  assert abs(float(zero)) < 1e-6 * float(jnp.mean(affine(XB) ** 2))
  assert float(loss) > 1e-2 and float(aux["neighbour_var"]) > float(loss)


@pytest.mark.parametrize("reg, closed", [(expo_fidelity, 2 * D * 0.5 ** 4),
                                         (expo_fidelity_1d, 2 * 0.5 ** 4)])
def test_fidelity_of_quadratic_matches_closed_form(reg, closed):
  """For Σ x_d² the linear part is fitted and the residual is Var(σ² Σ ε_d²) = 2·(#dims)·σ⁴."""
  loss, _ = jax.jit(lambda k: reg(square, XB, k, n_neighbors=3000))(jax.random.key(2))
  np.testing.assert_allclose(loss, closed, rtol=0.1)


def test_fidelity_equals_float64_least_squares_on_the_same_neighbours(x64):
  with x64():
    xb = XB.astype(jnp.float64)
    key = jax.random.key(3)
    m, sigma = 8, 0.5
    loss, _ = expo_fidelity(square, xb, key, n_neighbors=m, sigma=sigma)
    offsets = sigma * np.asarray(jax.random.normal(key, (xb.shape[0], m, D), jnp.float64))
  ref = []
  for x, off in zip(np.asarray(xb), offsets):
    xs = x + off
    y = np.sum(xs ** 2, axis=1)
    design = np.concatenate([xs, np.ones((m, 1))], axis=1)
    beta = np.linalg.lstsq(design, y, rcond=None)[0]
    ref.append(np.mean((y - design @ beta) ** 2))
  np.testing.assert_allclose(loss, np.mean(ref), rtol=1e-9)


@pytest.mark.parametrize("reg", REGULARISERS)
def test_gradient_matches_finite_differences(reg, x64):
  with x64():
    xb = XB.astype(jnp.float64)
    params = mlp_params(jnp.float64)
    key = jax.random.key(4)
    check_grads(jax.jit(lambda p: reg(lambda x: mlp(p, x), xb, key)[0]), (params,), order=1,
                modes=("rev",), atol=1e-6, rtol=1e-6)


def test_stability_of_linear_model_matches_closed_form():
  """E ‖W u‖² with u ~ U(−r, r)^D is r²/3 · ‖W‖²_F."""
  r = 0.05
  loss, aux = jax.jit(lambda k: expo_stability(affine, XB, k, radius=r, n_neighbors=5000))(
      jax.random.key(5))
  np.testing.assert_allclose(loss, r ** 2 / 3 * float(jnp.sum(W ** 2)), rtol=0.03)
  assert float(aux["max_change"]) >= float(loss)


@pytest.mark.parametrize("reg", REGULARISERS)
def test_same_key_same_output(reg):
  f = jax.jit(lambda k: reg(square, XB, k)[0])
  a, b, c = f(jax.random.key(6)), f(jax.random.key(6)), f(jax.random.key(7))
  np.testing.assert_array_equal(a, b)
  assert a != c


def _run(reg, fn, **kw):
  return jax.jit(lambda xb, k: reg(fn, xb, k, **kw)[0])(XB, jax.random.key(8))


@pytest.mark.parametrize("reg", REGULARISERS)
def test_regression_values_as_vector_or_column(reg):
  # Another output shape is another program: float32 to the policy, not bit for bit.
  np.testing.assert_allclose(_run(reg, square), _run(reg, lambda xb: square(xb)[:, None]), **F32)


@pytest.mark.parametrize("reg", REGULARISERS)
def test_classification_outputs(reg):
  """"prob" fits the probability of the class predicted at the clean x, "probs" every class's.

  With a margin so large that no neighbour changes class, "prob" is the fit of that column;
  "probs" ("logits") equals "raw" on a model that returns the softmax (the logits) itself.
  """
  logits = lambda xb: jnp.stack([square(xb), square(xb) + 20.0], axis=-1)  # noqa: E731
  p1 = lambda xb: jax.nn.softmax(logits(xb), axis=-1)[:, 1]  # noqa: E731
  np.testing.assert_allclose(_run(reg, logits, output="prob"), _run(reg, p1), rtol=1e-5)
  np.testing.assert_allclose(_run(reg, logits, output="log_prob"),
                             _run(reg, lambda xb: jnp.log(p1(xb))), rtol=1e-4, atol=1e-12)
  curved = lambda xb: jnp.stack([square(xb), jnp.sin(xb[:, 0])], axis=-1)  # noqa: E731
  probs = lambda xb: jax.nn.softmax(curved(xb), axis=-1)  # noqa: E731
  got = _run(reg, curved, output="probs")
  assert got > 0
  np.testing.assert_allclose(got, _run(reg, probs), **F32)
  np.testing.assert_allclose(_run(reg, curved, output="logits"), _run(reg, curved), **F32)


@pytest.mark.parametrize("reg, kwargs, name", [
    (expo_fidelity, dict(xb=jnp.ones((D,))), "`xb`"),
    (expo_fidelity_1d, dict(xb=jnp.ones((2, 2, D))), "`xb`"),
    (expo_stability, dict(xb=jnp.ones((2, D), jnp.int32)), "`xb`"),
    (expo_fidelity, dict(n_neighbors=D), "`n_neighbors`"),
    (expo_fidelity_1d, dict(n_neighbors=2), "`n_neighbors`"),
    (expo_stability, dict(n_neighbors=0), "`n_neighbors`"),
    (expo_fidelity, dict(sigma=0.0), "`sigma`"),
    (expo_stability, dict(radius=-1.0), "`radius`"),
    (expo_fidelity_1d, dict(output="logit_mean"), "`output`"),
    (expo_fidelity, dict(output="predicted_prob"), "`output`"),
    (expo_stability, dict(logits_fn=square, output="probs"), "`output='probs'`"),
    (expo_stability, dict(logits_fn=lambda xb: xb[:, :, None]), "`logits_fn`"),
])
def test_bad_input_raises_naming_the_argument(reg, kwargs, name):
  args = dict(logits_fn=affine, xb=XB, key=jax.random.key(0))
  args.update(kwargs)
  with pytest.raises(ValueError, match=name):
    reg(args.pop("logits_fn"), args.pop("xb"), args.pop("key"), **args)


# --- Loud edges (issue 13): scales given as arrays, traced scales, empty batches.


@pytest.mark.parametrize("fn,scale", [(expo_fidelity, "sigma"), (expo_fidelity_1d, "sigma"),
                                      (expo_stability, "radius")])
def test_scales_and_batches_are_checked(fn, scale):
  model = lambda xb: jnp.sin(xb @ jnp.ones((3, 2)))
  xb = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
  for bad in (0.0, jnp.asarray(0.0), np.float32(-0.5)):
    with pytest.raises(ValueError, match=f"`{scale}`"):
      fn(model, xb, jax.random.PRNGKey(0), **{scale: bad})
  assert np.isnan(jax.jit(lambda s: fn(model, xb, jax.random.PRNGKey(0), **{scale: s})[0])(-1.0))
  with pytest.raises(ValueError, match="`xb`"):
    fn(model, xb[:0], jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="`n_neighbors`"):
    fn(model, xb, jax.random.PRNGKey(0), n_neighbors=25.0)
