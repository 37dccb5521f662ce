"""Soft insertion/deletion (SPEC §2) against a float64 NumPy reference, the hard curves and FD."""

import functools
import importlib

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from idexpo_jax.metrics import curves
from idexpo_jax.core import masking
from tolerances import F32

# The package re-exports the function `soft_curves`, which shadows the submodule's attribute name.
soft_curves = importlib.import_module("idexpo_jax.metrics.soft_curves")

SETTINGS = settings(max_examples=20, deadline=None)


def _linear(w, bias):
  return lambda xb: xb.reshape(xb.shape[0], -1) @ w + bias


def _unit_of(x, segments):
  if segments is not None:
    return np.asarray(segments)
  if x.ndim == 3:
    return np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2])
  return np.arange(x.size)


def _log_prob(w, bias, xs, target):
  logits = xs.reshape(xs.shape[0], -1) @ w + bias
  m = logits.max(-1, keepdims=True)
  return logits[:, target] - (m[:, 0] + np.log(np.exp(logits - m).sum(-1)))


def reference_steps(n_units, n_steps, fraction):
  """SPEC §2 step 2 by enumeration: the largest m ≤ ceil(floor(fU)/Δ) with mΔ < U."""
  delta = max(n_units // n_steps, 1)
  cap = int(np.ceil(np.floor(fraction * n_units) / delta))
  return delta, max(m for m in range(cap + 1) if m * delta < n_units)


def reference_thresholds(phi, n_steps, fraction):
  """Thresholds `t_m` and scale `s` of SPEC §2 step 3 in float64."""
  srt = np.sort(np.asarray(phi, np.float64).reshape(-1))[::-1]
  delta, n_soft = reference_steps(srt.size, n_steps, fraction)
  t = np.array([(srt[m * delta - 1] + srt[m * delta]) / 2 for m in range(1, n_soft + 1)])
  gaps = srt[:-1] - srt[1:]
  s = gaps[gaps > 0].mean() if (gaps > 0).any() else 1.0
  return t, s


def reference_soft(w, bias, x, phi, target, baseline, segments, *, n_steps, fraction,
                   temperature, thresholds=None):
  """`(cIns, cDel ratio, cDel direct, log p_ins, log p_del)` of SPEC §2, float64, no log-softmax.

  `thresholds=(t, s)` freezes the stop-gradient quantities (for finite differences).
  """
  phi = np.asarray(phi, np.float64).reshape(-1)
  t, s = reference_thresholds(phi, n_steps, fraction) if thresholds is None else thresholds
  alpha = 1.0 / (1.0 + np.exp(-temperature * (phi[None, :] - t[:, None]) / s))  # (M, U)
  x = np.asarray(x, np.float64)
  b = np.broadcast_to(np.asarray(baseline, np.float64), x.shape)
  a_in = alpha[:, _unit_of(x, segments)]
  a_in = a_in[..., None] if x.ndim == 3 else a_in
  lp_ins = _log_prob(w, bias, a_in * x + (1 - a_in) * b, target)
  lp_del = _log_prob(w, bias, (1 - a_in) * x + a_in * b, target)
  lp_x = _log_prob(w, bias, x[None], target)[0]
  return (-lp_ins.mean(), (lp_del - lp_x).mean(), -np.log1p(-np.exp(lp_del)).mean(), lp_ins,
          lp_del)


def _problem(kind, seed=0):
  """(x, baseline, w, bias, phi, segments, n_steps, fraction) with Δ and M given in comments."""
  rng = np.random.default_rng(seed)
  if kind == "pixels":  # U = 16, Δ = 2, M = 4
    x, segments, n_units, n_steps, fraction = rng.normal(size=(4, 4, 2)), None, 16, 8, 0.5
  elif kind == "segments":  # U = 9, Δ = 2, M = ceil(9/2) = 5 clipped to 4 (fraction 1)
    x, segments, n_units, n_steps, fraction = (rng.normal(size=(6, 6, 1)),
                                               masking.grid_segments(6, 6, 2), 9, 4, 1.0)
  else:  # U = 10, Δ = 1, M = 5
    x, segments, n_units, n_steps, fraction = rng.normal(size=(10,)), None, 10, 10, 0.5
  baseline = 0.2 * rng.normal(size=x.shape)
  w, bias = rng.normal(size=(x.size, 3)), rng.normal(size=(3,))
  # Well-separated distinct attributions: the hard limit is unambiguous.
  phi = rng.permutation(n_units) + 0.1 * rng.uniform(size=n_units)
  return x, baseline, w, bias, phi, segments, n_steps, fraction


def _f32(*arrays):
  return [jnp.asarray(a, jnp.float32) for a in arrays]


@pytest.mark.parametrize("kind", ["pixels", "segments", "tabular"])
def test_soft_curves_tend_to_hard_curves(kind):
  x, baseline, w, bias, phi, segments, n_steps, fraction = _problem(kind)
  n_units = phi.size
  delta, n_soft = reference_steps(n_units, n_steps, fraction)
  xj, bj, wj, biasj, phij = _f32(x, baseline, w, bias, phi)

  @jax.jit
  def run(temperature):
    soft = soft_curves.soft_curves(_linear(wj, biasj), xj, phij, 1, baseline=bj,
                                   segments=segments, n_steps=n_steps, fraction=fraction,
                                   temperature=temperature)
    costs = soft_curves.soft_insertion_deletion(
        _linear(wj, biasj), xj, phij, 1, baseline=bj, segments=segments, n_steps=n_steps,
        fraction=fraction, temperature=temperature)
    return soft, costs

  _, hard_ins, hard_del = jax.jit(lambda: curves.insertion_deletion_curves(
      _linear(wj, biasj), xj, phij, 1, baseline=bj, segments=segments, step=delta, fraction=1.0))()
  hard_ins, hard_del = np.asarray(hard_ins[1:n_soft + 1]), np.asarray(hard_del[1:n_soft + 1])
  clean = np.exp(_log_prob(w, bias, x[None], 1)[0])
  errors = []
  for temperature in (1.0, 10.0, 100.0, 1e4):
    (lp_ins, lp_del, lp_x), (cins, cdel) = run(temperature)
    assert lp_ins.shape == lp_del.shape == (n_soft,)
    errors.append(max(np.abs(np.exp(lp_ins) - hard_ins).max(),
                      np.abs(np.exp(lp_del) - hard_del).max()))
  assert errors[0] > 1e-3, "a loose temperature should differ from the hard curve"
  assert all(b <= a + 1e-6 for a, b in zip(errors, errors[1:])), errors
  assert errors[-1] < 1e-3, errors
  np.testing.assert_allclose(cins, -np.log(hard_ins).mean(), atol=1e-3)
  np.testing.assert_allclose(cdel, np.mean(np.log(hard_del) - np.log(clean)), atol=1e-3)


@pytest.mark.parametrize("kind", ["pixels", "segments", "tabular"])
def test_costs_match_float64_reference(kind):
  """cIns, "ratio" and "direct" cDel at τ = 1 and τ = 3 against NumPy closed forms."""
  x, baseline, w, bias, phi, segments, n_steps, fraction = _problem(kind, seed=1)
  phi = np.random.default_rng(7).normal(size=phi.shape)
  xj, bj, wj, biasj, phij = _f32(x, baseline, w, bias, phi)

  @functools.partial(jax.jit, static_argnames="deletion")
  def run(temperature, deletion):
    return soft_curves.soft_insertion_deletion(
        _linear(wj, biasj), xj, phij, 2, baseline=bj, segments=segments, n_steps=n_steps,
        fraction=fraction, temperature=temperature, deletion=deletion)

  for temperature in (1.0, 3.0):
    cins, cdel_ratio, cdel_direct, _, _ = reference_soft(
        w, bias, x, phi, 2, baseline, segments, n_steps=n_steps, fraction=fraction,
        temperature=temperature)
    np.testing.assert_allclose(run(temperature, "ratio"), [cins, cdel_ratio], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(run(temperature, "direct"), [cins, cdel_direct], rtol=1e-4,
                               atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(n_units=st.integers(1, 300), n_steps=st.integers(1, 100),
       fraction=st.sampled_from([0.01, 0.1, 0.25, 0.5, 0.7, 0.99, 1.0]))
def test_step_counts(n_units, n_steps, fraction):
  expected = reference_steps(n_units, n_steps, fraction)
  if expected[1] == 0 and n_units >= 2:
    with pytest.raises(ValueError, match="fraction"):
      soft_curves.soft_step_counts(n_units, n_steps, fraction)
    return
  delta, n_soft = soft_curves.soft_step_counts(n_units, n_steps, fraction)
  assert (delta, n_soft) == expected
  assert n_soft * delta < n_units or n_soft == 0


@pytest.mark.parametrize("n_units,n_steps", [(9, 4), (8, 8), (7, 64), (12, 5)])
def test_fraction_one_keeps_top_units_without_indexing_past_the_end(n_units, n_steps):
  phi = np.random.default_rng(n_units).permutation(n_units).astype(np.float32)
  delta, n_soft = reference_steps(n_units, n_steps, 1.0)
  alpha = jax.jit(lambda p: soft_curves.soft_keep_masks(
      p, n_steps=n_steps, fraction=1.0, temperature=1e4))(jnp.asarray(phi))
  assert alpha.shape == (n_soft, n_units)
  order = np.argsort(-phi)
  for m in range(1, n_soft + 1):
    expected = np.zeros(n_units)
    expected[order[:m * delta]] = 1.0
    np.testing.assert_allclose(alpha[m - 1], expected, **F32)


def test_log_softmax_keeps_masks_and_changes_gradient():
  phi = jnp.asarray(np.random.default_rng(3).normal(size=(12,)), jnp.float32)
  r = jnp.asarray(np.random.default_rng(4).normal(size=(3, 12)), jnp.float32)

  def masks(p, log_softmax):
    return soft_curves.soft_keep_masks(p, n_steps=4, fraction=0.75, temperature=2.0,
                                       log_softmax=log_softmax)

  loss = lambda p, ls: jnp.sum(r * masks(p, ls))
  with_ls, without = jax.jit(lambda p: (masks(p, True), masks(p, False)))(phi)
  assert with_ls.shape == (3, 12)
  np.testing.assert_allclose(with_ls, without, atol=1e-5)
  g_ls, g = jax.jit(lambda p: (jax.grad(loss)(p, True), jax.grad(loss)(p, False)))(phi)
  assert np.abs(g_ls - g).max() > 1e-2
  # Chain rule through log-softmax: g_ls = g − softmax(φ) Σ g.
  sm = np.exp(phi - phi.max()) / np.exp(phi - phi.max()).sum()
  np.testing.assert_allclose(g_ls, g - sm * np.sum(g), atol=1e-5)


@pytest.mark.parametrize("deletion", ["ratio", "direct"])
def test_gradient_wrt_attribution_matches_finite_differences(x64, deletion):
  """∂(cIns + cDel)/∂φ equals central differences of the float64 reference at frozen t_m, s."""
  x, baseline, w, bias, phi, segments, n_steps, fraction = _problem("segments", seed=2)
  phi = np.random.default_rng(5).normal(size=phi.shape)
  kw = dict(n_steps=n_steps, fraction=fraction, temperature=2.0)
  pick = 1 if deletion == "ratio" else 2
  with x64():
    def loss(p):
      cins, cdel = soft_curves.soft_insertion_deletion(
          _linear(jnp.asarray(w), jnp.asarray(bias)), jnp.asarray(x), p, 0,
          baseline=jnp.asarray(baseline), segments=segments, deletion=deletion,
          log_softmax=False, **kw)
      return cins, cdel
    grads = jax.jit(jax.jacrev(loss))(jnp.asarray(phi))
    grads = np.asarray(grads[0]), np.asarray(grads[1])
  frozen = reference_thresholds(phi, n_steps, fraction)
  eps = 1e-6
  for u in range(phi.size):
    e = np.zeros_like(phi)
    e[u] = eps
    plus = reference_soft(w, bias, x, phi + e, 0, baseline, segments, thresholds=frozen, **kw)
    minus = reference_soft(w, bias, x, phi - e, 0, baseline, segments, thresholds=frozen, **kw)
    np.testing.assert_allclose(grads[0][u], (plus[0] - minus[0]) / (2 * eps), rtol=1e-5,
                               atol=1e-8)
    np.testing.assert_allclose(grads[1][u], (plus[pick] - minus[pick]) / (2 * eps), rtol=1e-5,
                               atol=1e-8)
  assert np.abs(grads[0]).max() > 1e-3 and np.abs(grads[1]).max() > 1e-3


def test_gradient_wrt_model_matches_finite_differences(x64):
  """Through the masked inputs into the model: `jax.test_util.check_grads` in float64."""
  x, baseline, w, bias, phi, segments, n_steps, fraction = _problem("pixels", seed=4)
  with x64():
    def loss(w):
      cins, cdel = soft_curves.soft_insertion_deletion(
          _linear(w, jnp.asarray(bias)), jnp.asarray(x), jnp.asarray(phi), 1,
          baseline=jnp.asarray(baseline), n_steps=n_steps, fraction=fraction)
      return cins + cdel
    jax.test_util.check_grads(jax.jit(loss), (jnp.asarray(w),), order=1, modes=("rev",),
                              eps=1e-5, atol=1e-6, rtol=1e-6)


_TAB_X = np.linspace(-1.0, 1.0, 6)
_TAB_W = np.random.default_rng(6).normal(size=(6, 3))


@functools.partial(jax.jit, static_argnames=("fraction", "deletion"))
def _tabular_value_and_grad(phi, temperature, *, fraction, deletion):
  def total(p):
    cins, cdel = soft_curves.soft_insertion_deletion(
        _linear(jnp.asarray(_TAB_W[:p.shape[0]], jnp.float32), jnp.zeros((3,), jnp.float32)),
        jnp.asarray(_TAB_X[:p.shape[0]], jnp.float32), p, 0, baseline=0.0, n_steps=64,
        fraction=fraction, temperature=temperature, deletion=deletion)
    return cins + cdel, (cins, cdel)
  return jax.value_and_grad(total, has_aux=True)(phi)


def _assert_finite(out):
  for leaf in jax.tree.leaves(out):
    assert np.all(np.isfinite(leaf)), out


@SETTINGS
@given(phi=hnp.arrays(np.float32, (6,), elements=st.integers(-2, 2).map(float)),
       temperature=st.sampled_from([1.0, 1e3]), fraction=st.sampled_from([0.5, 1.0]))
def test_ties_are_finite(phi, temperature, fraction):
  _assert_finite(_tabular_value_and_grad(jnp.asarray(phi), temperature, fraction=fraction,
                                         deletion="ratio"))


@SETTINGS
@given(value=st.floats(-1e3, 1e3, width=32), n_units=st.sampled_from([1, 2, 6]))
def test_constant_attributions_and_few_units_are_finite(value, n_units):
  (total, (cins, cdel)), grad = _tabular_value_and_grad(
      jnp.full((n_units,), value, jnp.float32), 1.0, fraction=1.0, deletion="direct")
  _assert_finite((total, grad))
  if n_units == 1:  # nothing to rank: no soft step
    assert float(cins) == float(cdel) == 0.0 and np.all(np.asarray(grad) == 0.0)
  else:  # constant φ: every soft mask is ½ and, with log-softmax, the gradient sums to 0
    np.testing.assert_allclose(np.sum(grad), 0.0, atol=1e-4)


def test_wrong_inputs_name_the_argument():
  logits_fn = _linear(jnp.ones((16, 2)), jnp.zeros((2,)))
  x = jnp.zeros((4, 4, 1))
  phi = jnp.zeros((16,))

  def call(**kw):  # traced, not run op by op: the checks fire while tracing
    kw = {"baseline": 0.0, **kw}
    return jax.jit(lambda: soft_curves.soft_insertion_deletion(logits_fn, x, target=0, **kw))()

  with pytest.raises(ValueError, match="`attribution`"):
    call(attribution=jnp.zeros((4, 3)))
  with pytest.raises(ValueError, match="`attribution`"):
    call(attribution=phi, segments=masking.grid_segments(4, 4, 2))
  with pytest.raises(ValueError, match="`segments`"):
    call(attribution=jnp.zeros((4,)), segments=masking.grid_segments(2, 4, 2))
  with pytest.raises(ValueError, match="`deletion`"):
    call(attribution=phi, deletion="log")
  with pytest.raises(ValueError, match="`n_steps`"):
    call(attribution=phi, n_steps=0)
  with pytest.raises(ValueError, match="`fraction`"):
    call(attribution=phi, fraction=1.5)
  with pytest.raises(ValueError, match="`baseline`"):
    call(attribution=phi, baseline=jnp.zeros((3, 3)))


def test_fraction_covering_no_step_raises_naming_fraction():
  x = jnp.ones((8,), jnp.float32)
  phi = jnp.arange(8, dtype=jnp.float32)
  logits_fn = lambda xb: jnp.stack([xb.sum(-1), -xb.sum(-1)], axis=-1)
  with pytest.raises(ValueError, match="fraction"):
    soft_curves.soft_insertion_deletion(logits_fn, x, phi, 0, baseline=0.0, fraction=0.1,
                                        n_steps=8)


# --- Loud edges (issue 13): temperature, steps, one-output models, traced targets.

soft_insertion_deletion = soft_curves.soft_insertion_deletion
soft_keep_masks = soft_curves.soft_keep_masks


def _tab_problem():
  rng = np.random.default_rng(11)
  w = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  x = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
  phi = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
  return (lambda xb: xb @ w), x, phi


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_temperature_must_be_positive(temperature):
  fn, x, phi = _tab_problem()
  kw = dict(baseline=0.0, n_steps=6)
  with pytest.raises(ValueError, match="`temperature`"):
    soft_insertion_deletion(fn, x, phi, 1, temperature=temperature, **kw)
  with pytest.raises(ValueError, match="`temperature`"):
    soft_keep_masks(phi, temperature=temperature)
  out = jax.jit(lambda t: soft_insertion_deletion(fn, x, phi, 1, temperature=t, **kw))(temperature)
  assert np.isnan(out).all()


@pytest.mark.parametrize("n_steps", [0, 2.5, True])
def test_n_steps_must_be_a_positive_int(n_steps):
  fn, x, phi = _tab_problem()
  with pytest.raises(ValueError, match="`n_steps`"):
    soft_insertion_deletion(fn, x, phi, 1, baseline=0.0, n_steps=n_steps)


@pytest.mark.parametrize("target", [-1, 3])
def test_target_out_of_range_raises_eagerly_and_gives_nan_when_traced(target):
  fn, x, phi = _tab_problem()
  with pytest.raises(ValueError, match="`target`"):
    soft_insertion_deletion(fn, x, phi, target, baseline=0.0, n_steps=6)
  out = jax.jit(lambda t: soft_insertion_deletion(fn, x, phi, t, baseline=0.0, n_steps=6))(target)
  assert np.isnan(out).all()
  single = jax.jit(lambda t: soft_insertion_deletion(lambda b: b @ jnp.ones((1, 3)), x[:1],
                                                     phi[:1], t, baseline=0.0))(target)
  assert np.isnan(single).all()  # one unit: no soft step, but an invalid target is still NaN


def test_one_output_model_raises_and_integer_x_is_promoted():
  fn, x, phi = _tab_problem()
  with pytest.raises(ValueError, match="`output='log_prob'`.*output='raw'"):
    soft_insertion_deletion(lambda b: fn(b)[:, :1], x, phi, 0, baseline=0.0, n_steps=6)
  xi = jnp.arange(6) - 3
  np.testing.assert_array_equal(
      soft_insertion_deletion(fn, xi, phi, 1, baseline=0.5, n_steps=6),
      soft_insertion_deletion(fn, xi.astype(jnp.float32), phi, 1, baseline=0.5, n_steps=6))
