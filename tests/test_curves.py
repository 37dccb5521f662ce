"""Hard insertion/deletion curves against a brute-force float64 NumPy implementation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idexpo_jax.metrics import curves
from idexpo_jax.core import masking
from tolerances import F32

# NumPy >= 2 names it `trapezoid`; 1.26 (the lowest allowed, `make test-min`) has `trapz`.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def _softmax_prob(logits, target):
  logits = logits - logits.max()
  return np.exp(logits[target]) / np.exp(logits).sum()


def brute_force_curves(w, bias, x, phi, target, baseline, segments, step, fraction):
  """SPEC §3 written out: stable sort, k = 0, step, … ≤ fraction·U, one masked input per k."""
  x = np.asarray(x, np.float64)
  b = np.broadcast_to(np.asarray(baseline, np.float64), x.shape)
  phi = np.asarray(phi, np.float64).reshape(-1)
  n_units = phi.size
  order = sorted(range(n_units), key=lambda u: (-phi[u], u))  # ties: lower index first
  if segments is None:
    unit_of = np.arange(x.size if x.ndim == 1 else x.shape[0] * x.shape[1])
    unit_of = unit_of.reshape(x.shape[:2]) if x.ndim == 3 else unit_of
  else:
    unit_of = np.asarray(segments)
  fractions, ins, dele = [], [], []
  k = 0
  while k <= np.floor(fraction * n_units):
    top = set(order[:k])
    keep = np.vectorize(lambda u: u in top)(unit_of)
    keep = keep[..., None] if x.ndim == 3 else keep
    x_ins = np.where(keep, x, b)
    x_del = np.where(keep, b, x)
    ins.append(_softmax_prob(x_ins.reshape(-1) @ w + bias, target))
    dele.append(_softmax_prob(x_del.reshape(-1) @ w + bias, target))
    fractions.append(k / n_units)
    k += step
  return np.array(fractions), np.array(ins), np.array(dele)


def _problem(kind, seed=0, ties=False):
  rng = np.random.default_rng(seed)
  segments = None
  if kind == "tabular":
    x, baseline = rng.normal(size=(9,)), rng.normal(size=(9,))
    n_units = 9
  else:
    x, baseline = rng.normal(size=(6, 5, 2)), np.full((1, 1, 2), 0.3)
    n_units = 30
    if kind == "segments":
      segments = masking.grid_segments(6, 5, 2)
      n_units = 9
  w, bias = rng.normal(size=(x.size, 4)), rng.normal(size=(4,))
  phi = rng.integers(-2, 3, size=n_units) if ties else rng.normal(size=n_units)
  if kind == "pixels":
    phi = phi.reshape(6, 5)
  return x, baseline, w, bias, phi, segments


def _run(fn, x, phi, w, bias, baseline):
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  logits_fn = lambda w, bias: (lambda xb: xb.reshape(xb.shape[0], -1) @ w + bias)
  return jax.jit(lambda x, phi, w, bias, b: fn(logits_fn(w, bias), x, phi, b))(
      f32(x), f32(phi), f32(w), f32(bias), f32(baseline))


@pytest.mark.parametrize("kind,ties,step,fraction", [
    ("pixels", True, 2, 1.0), ("pixels", False, 3, 0.5), ("segments", True, 3, 0.5),
    ("segments", False, 2, 1.0), ("tabular", True, 2, 1.0), ("tabular", False, 3, 0.5)])
def test_curves_match_brute_force(kind, ties, step, fraction):
  x, baseline, w, bias, phi, segments = _problem(kind, ties=ties)
  fn = lambda f, x, phi, b: curves.insertion_deletion_curves(
      f, x, phi, 1, baseline=b, segments=segments, step=step, fraction=fraction)
  fr, ins, dele = _run(fn, x, phi, w, bias, baseline)
  ref_fr, ref_ins, ref_del = brute_force_curves(w, bias, x, phi, 1, baseline, segments, step,
                                                fraction)
  np.testing.assert_allclose(fr, ref_fr, atol=1e-7)
  np.testing.assert_allclose(ins, ref_ins, atol=2e-5)
  np.testing.assert_allclose(dele, ref_del, atol=2e-5)
  # k = 0: insertion is the baseline, deletion the clean input; deletion at k = U is insertion at 0.
  np.testing.assert_allclose(dele[0], _softmax_prob(np.asarray(x).reshape(-1) @ w + bias, 1),
                             atol=2e-5)


def test_chunked_curves_equal_unchunked():
  x, baseline, w, bias, phi, segments = _problem("pixels", seed=3)
  run = lambda chunk: _run(lambda f, x, phi, b: curves.insertion_deletion_curves(
      f, x, phi, 0, baseline=b, step=4, chunk_size=chunk, fraction=1.0), x, phi, w, bias, baseline)
  for a, b in zip(run(None), run(5)):
    np.testing.assert_allclose(a, b, **F32)  # chunks reorder the model's sums


def test_curve_auc_closed_forms():
  rng = np.random.default_rng(4)
  fractions = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.45])  # uneven last interval
  curve = rng.uniform(size=(3, 6))
  mean = curves.curve_auc(jnp.asarray(fractions), jnp.asarray(curve), auc="mean")
  np.testing.assert_allclose(mean, curve[:, 1:].mean(-1), **F32)
  trap = curves.curve_auc(jnp.asarray(fractions), jnp.asarray(curve), auc="trapezoid")
  ref = _trapezoid(curve, fractions, axis=-1) / (fractions[-1] - fractions[0])
  np.testing.assert_allclose(trap, ref, **F32)
  full = np.linspace(0.0, 1.0, 6)
  np.testing.assert_allclose(curves.curve_auc(jnp.asarray(full), jnp.asarray(curve),
                                              auc="trapezoid"),
                             _trapezoid(curve, full, axis=-1), **F32)


@pytest.mark.parametrize("kind", ["pixels", "segments", "tabular"])
def test_scores_and_batch_match_curves(kind):
  x, baseline, w, bias, phi, segments = _problem(kind, seed=5)
  ref_fr, ref_ins, ref_del = brute_force_curves(w, bias, x, phi, 2, baseline, segments, 2, 1.0)
  for auc in ("mean", "trapezoid"):
    fn = lambda f, x, phi, b: curves.insertion_deletion_scores(
        f, x, phi, 2, baseline=b, segments=segments, step=2, auc=auc, fraction=1.0)
    ins, dele = _run(fn, x, phi, w, bias, baseline)
    if auc == "mean":
      np.testing.assert_allclose([ins, dele], [ref_ins[1:].mean(), ref_del[1:].mean()], atol=2e-5)
    else:
      span = ref_fr[-1] - ref_fr[0]
      np.testing.assert_allclose(
          [ins, dele], [_trapezoid(ref_ins, ref_fr) / span, _trapezoid(ref_del, ref_fr) / span],
          atol=2e-5)
  # batch_insertion_deletion: vmapped over examples with per-example targets.
  xb = np.stack([x, -x, 0.5 * x])
  phib = np.stack([phi, -phi, np.abs(phi)])
  targets = np.array([2, 0, 3])
  fn = lambda f, xb, phib, b: curves.batch_insertion_deletion(
      f, xb, phib, jnp.asarray(targets), baseline=b, segments=segments, step=2, fraction=1.0)
  fr, ins_b, del_b = _run(fn, xb, phib, w, bias, baseline)
  for i in range(3):
    _, ref_i, ref_d = brute_force_curves(w, bias, xb[i], phib[i], targets[i], baseline, segments,
                                         2, 1.0)
    np.testing.assert_allclose(ins_b[i], ref_i, atol=2e-5)
    np.testing.assert_allclose(del_b[i], ref_d, atol=2e-5)
  np.testing.assert_allclose(fr, ref_fr, atol=1e-7)


def _traced(fn, *args, **kwargs):
  """Calls `fn` under `jit` (the checks fire while tracing; nothing runs op by op)."""
  return jax.jit(lambda: fn(*args, **kwargs))()


def test_wrong_inputs_name_the_argument():
  logits_fn = lambda xb: xb.reshape(xb.shape[0], -1)[:, :3]
  x = jnp.zeros((4, 4, 1))
  phi = jnp.zeros((16,))
  curve = functools.partial(_traced, curves.insertion_deletion_curves, logits_fn, x, target=0)
  kw = dict(baseline=0.0, step=2)
  with pytest.raises(ValueError, match="`attribution`"):
    curve(attribution=jnp.zeros((15,)), **kw)
  with pytest.raises(ValueError, match="`attribution`"):
    curve(attribution=phi, segments=masking.grid_segments(4, 4, 2), **kw)
  with pytest.raises(ValueError, match="`segments`"):
    curve(attribution=jnp.zeros((4,)), segments=masking.grid_segments(4, 2, 2), **kw)
  with pytest.raises(ValueError, match="`fraction`"):
    curve(attribution=phi, fraction=0.0, **kw)
  with pytest.raises(ValueError, match="`step`"):
    curve(attribution=phi, baseline=0.0, step=0)
  with pytest.raises(ValueError, match="`step`"):  # no point besides k = 0: would give NaN
    _traced(curves.insertion_deletion_scores, logits_fn, x, phi, 0, baseline=0.0, step=9,
            fraction=0.5)
  with pytest.raises(ValueError, match="`auc`"):
    _traced(curves.insertion_deletion_scores, logits_fn, x, phi, 0, auc="sum", **kw)
  with pytest.raises(ValueError, match="`curve`"):
    _traced(curves.curve_auc, jnp.zeros((3,)), jnp.zeros((4,)))
  xb = jnp.zeros((2, 4, 4, 1))
  with pytest.raises(ValueError, match="`targets`"):
    _traced(curves.batch_insertion_deletion, logits_fn, xb, jnp.zeros((2, 16)),
            jnp.zeros((3,), jnp.int32), **kw)
  with pytest.raises(ValueError, match="`attributions`"):
    _traced(curves.batch_insertion_deletion, logits_fn, xb, jnp.zeros((3, 16)),
            jnp.zeros((2,), jnp.int32), **kw)


# --- Loud edges (issue 13): targets, NaN attributions, steps, outputs, integer inputs.


def _linear_problem():
  rng = np.random.default_rng(7)
  w = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
  x = jnp.asarray(rng.normal(size=(4, 4, 1)), jnp.float32)
  phi = jnp.asarray(rng.normal(size=(16,)), jnp.float32)
  return (lambda xb: xb.reshape(xb.shape[0], -1) @ w), x, phi, w


@pytest.mark.parametrize("target", [-1, 3])
def test_target_out_of_range_raises_eagerly_and_gives_nan_curves_when_traced(target):
  fn, x, phi, _ = _linear_problem()
  kw = dict(baseline=0.0, step=4)
  with pytest.raises(ValueError, match="`target`"):
    curves.insertion_deletion_curves(fn, x, phi, target, **kw)
  _, ins, dele = jax.jit(lambda t: curves.insertion_deletion_curves(fn, x, phi, t, **kw))(target)
  assert np.isnan(ins).all() and np.isnan(dele).all()
  with pytest.raises(ValueError, match="`targets`"):
    curves.batch_insertion_deletion(fn, x[None], phi[None], jnp.asarray([target]), **kw)


def test_nan_attribution_raises_eagerly_and_gives_nan_curves_when_traced():
  fn, x, phi, _ = _linear_problem()
  bad = phi.at[3].set(jnp.nan)
  with pytest.raises(ValueError, match="`attribution`.*NaN"):
    curves.insertion_deletion_curves(fn, x, bad, 1, baseline=0.0, step=4, fraction=1.0)
  with pytest.raises(ValueError, match="`attributions`.*NaN"):
    curves.batch_insertion_deletion(fn, x[None], bad[None], jnp.asarray([1]), baseline=0.0, step=4, fraction=1.0)
  _, ins, dele = jax.jit(lambda a: curves.insertion_deletion_curves(fn, x, a, 1, baseline=0.0,
                                                                    step=4, fraction=1.0))(bad)
  assert np.isnan(ins).all() and np.isnan(dele).all()


@pytest.mark.parametrize("step", [1.5, 2.0, True])
def test_step_must_be_an_int(step):
  fn, x, phi, _ = _linear_problem()
  with pytest.raises(ValueError, match="`step`"):
    curves.insertion_deletion_curves(fn, x, phi, 1, baseline=0.0, step=step, fraction=1.0)


def test_raw_output_scores_a_regression_model_and_integer_x_is_promoted():
  _, x, phi, w = _linear_problem()
  regression = lambda xb: xb.reshape(xb.shape[0], -1) @ w[:, 0]
  fr, ins, dele = curves.insertion_deletion_curves(regression, x, phi, 0, baseline=0.0, step=4,
                                                   output="raw", fraction=1.0)
  order = np.argsort(-np.asarray(phi), kind="stable")
  xs, ws = np.asarray(x, np.float64).reshape(-1), np.asarray(w[:, 0], np.float64)
  ref_ins = [(xs * ws)[order[:k]].sum() for k in (0, 4, 8, 12, 16)]
  np.testing.assert_allclose(ins, ref_ins, atol=1e-5)
  np.testing.assert_allclose(dele, (xs * ws).sum() - np.asarray(ref_ins), atol=1e-5)
  xi = (jnp.arange(16).reshape(4, 4, 1) % 4).astype(jnp.int32)
  out_i = curves.insertion_deletion_curves(regression, xi, phi, 0, baseline=0.5, step=4,
                                           output="raw", fraction=1.0)
  out_f = curves.insertion_deletion_curves(regression, xi.astype(jnp.float32), phi, 0,
                                           baseline=0.5, step=4, output="raw", fraction=1.0)
  np.testing.assert_array_equal(np.stack(out_i), np.stack(out_f))
  with pytest.raises(ValueError, match="output='raw'"):
    curves.insertion_deletion_curves(regression, x, phi, 0, baseline=0.0, step=4, fraction=1.0)
