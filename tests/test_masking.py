"""Tests of `idexpo_jax.core.masking` against brute-force NumPy loops."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idexpo_jax.core import masking
from tolerances import F32


def _loop_segments(height, width, cell):
  n_cols = -(-width // cell)
  seg = np.zeros((height, width), np.int64)
  for i in range(height):
    for j in range(width):
      seg[i, j] = (i // cell) * n_cols + j // cell
  return seg


@pytest.mark.parametrize("height,width,cell", [(8, 8, 2), (7, 5, 3), (6, 9, 4), (5, 5, 1),
                                               (4, 3, 5)])
def test_grid_segments_matches_loop(height, width, cell):
  seg = masking.grid_segments(height, width, cell)
  assert seg.shape == (height, width) and seg.dtype == np.int32
  np.testing.assert_array_equal(seg, _loop_segments(height, width, cell))
  n_cells = -(-height // cell) * -(-width // cell)
  np.testing.assert_array_equal(np.unique(seg), np.arange(n_cells))
  assert masking.num_units((height, width, 3), seg) == n_cells


def test_num_units():
  assert masking.num_units((6, 5, 3)) == 30
  assert masking.num_units((7,)) == 7
  assert masking.num_units((6, 5, 1), masking.grid_segments(6, 5, 2)) == 9


def _loop_apply(x, z, baseline, segments):
  """Reference: `apply_unit_mask` written unit by unit in float64."""
  x = np.asarray(x, np.float64)
  b = np.broadcast_to(np.asarray(baseline, np.float64), x.shape)
  out = np.zeros(z.shape[:1] + x.shape)
  for n in range(z.shape[0]):
    if x.ndim == 1:
      for d in range(x.shape[0]):
        out[n, d] = z[n, d] * x[d] + (1 - z[n, d]) * b[d]
      continue
    for i in range(x.shape[0]):
      for j in range(x.shape[1]):
        u = i * x.shape[1] + j if segments is None else segments[i, j]
        out[n, i, j] = z[n, u] * x[i, j] + (1 - z[n, u]) * b[i, j]
  return out


@pytest.mark.parametrize("kind", ["pixels", "segments", "tabular"])
def test_apply_unit_mask_matches_loop(kind):
  rng = np.random.default_rng(0)
  segments = None
  if kind == "tabular":
    x, baseline = rng.normal(size=(7,)), rng.normal(size=(7,))
    n_units = 7
  else:
    x, baseline = rng.normal(size=(5, 6, 2)), rng.normal(size=(1, 1, 2))
    n_units = 30
    if kind == "segments":
      segments = masking.grid_segments(5, 6, 4)
      n_units = int(segments.max()) + 1
  # Binary and soft masks.
  z = np.concatenate([rng.integers(0, 2, size=(3, n_units)), rng.uniform(size=(2, n_units))])
  fn = jax.jit(lambda x, z, b: masking.apply_unit_mask(x, z, b, segments=segments))
  out = fn(jnp.asarray(x, jnp.float32), jnp.asarray(z, jnp.float32),
           jnp.asarray(baseline, jnp.float32))
  assert out.shape == (5, *x.shape) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, _loop_apply(x, z, baseline, segments), **F32)


def test_unit_sum_matches_loop():
  rng = np.random.default_rng(1)
  values = rng.normal(size=(5, 6, 2)).astype(np.float32)
  segments = masking.grid_segments(5, 6, 4)
  expected = np.zeros(segments.max() + 1)
  for i in range(5):
    for j in range(6):
      expected[segments[i, j]] += values[i, j].sum()
  np.testing.assert_allclose(masking.unit_sum(jnp.asarray(values), segments=segments), expected,
                             atol=1e-5)
  np.testing.assert_allclose(masking.unit_sum(jnp.asarray(values)),
                             values.sum(-1).reshape(-1), atol=1e-6)


def _linear_logits(w, bias):
  return lambda xb: xb.reshape(xb.shape[0], -1) @ w + bias


@pytest.mark.parametrize("chunk_size", [3, 4, 7, 20])
def test_evaluate_masked_chunked_equals_unchunked(chunk_size):
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(4, 4, 1)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
  logits_fn = _linear_logits(w, jnp.zeros((3,), jnp.float32))
  segments = masking.grid_segments(4, 4, 2)
  z = jnp.asarray(rng.uniform(size=(7, 4)), jnp.float32)  # N = 7: not a multiple of 3 or 4

  def run(z, chunk):
    return masking.evaluate_masked(logits_fn, x, z, 2, baseline=0.5, segments=segments,
                                   chunk_size=chunk)

  full = jax.jit(lambda z: run(z, None))(z)
  chunked = jax.jit(lambda z: run(z, chunk_size))(z)
  assert full.shape == chunked.shape == (7,)
  np.testing.assert_allclose(chunked, full, **F32)
  # Independent reference: NumPy masking + log-softmax in float64.
  xm = _loop_apply(np.asarray(x), np.asarray(z, np.float64), 0.5, segments)
  logits = xm.reshape(7, -1) @ np.asarray(w, np.float64)
  ref = logits[:, 2] - np.log(np.exp(logits).sum(-1))
  np.testing.assert_allclose(full, ref, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_evaluate_masked_logit_output_matches_numpy(chunk_size):
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(6,)), jnp.float32)  # tabular: units are the features
  w = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
  z = jnp.asarray(rng.integers(0, 2, size=(5, 6)), jnp.float32)
  baseline = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
  out = jax.jit(lambda z: masking.evaluate_masked(
      _linear_logits(w, bias), x, z, 1, baseline=baseline, chunk_size=chunk_size,
      output="logit"))(z)
  xm = _loop_apply(np.asarray(x), np.asarray(z, np.float64), np.asarray(baseline), None)
  ref = xm @ np.asarray(w, np.float64)[:, 1] + float(bias[1])
  assert out.shape == (5,)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  with pytest.raises(ValueError, match="`output`"):
    masking.evaluate_masked(_linear_logits(w, bias), x, z, 1, baseline=0.0, output="softmax")


def test_wrong_shapes_name_the_argument():
  x = jnp.zeros((4, 4, 1))
  with pytest.raises(ValueError, match="`z`"):
    masking.apply_unit_mask(x, jnp.ones((2, 15)), 0.0)
  with pytest.raises(ValueError, match="`z`"):
    masking.apply_unit_mask(x, jnp.ones((2, 5)), 0.0, segments=masking.grid_segments(4, 4, 2))
  with pytest.raises(ValueError, match="`z`"):
    masking.apply_unit_mask(jnp.zeros((5,)), jnp.ones((4,)), 0.0)
  with pytest.raises(ValueError, match="`segments`"):
    masking.apply_unit_mask(x, jnp.ones((4,)), 0.0, segments=masking.grid_segments(4, 3, 2))
  with pytest.raises(ValueError, match="`baseline`"):
    masking.apply_unit_mask(x, jnp.ones((16,)), jnp.zeros((3,)))
  with pytest.raises(ValueError, match="`z`"):
    masking.unit_mask_to_input(jnp.ones((3,)), (4, 4, 1))
  with pytest.raises(ValueError, match="`z`"):
    masking.evaluate_masked(lambda xb: xb.reshape(-1, 16), x, jnp.ones((16,)), 0, baseline=0.0)
  with pytest.raises(ValueError, match="`values`"):
    masking.unit_sum(jnp.ones((4, 3)), segments=masking.grid_segments(4, 4, 2))
  with pytest.raises(ValueError, match="`cell`"):
    masking.grid_segments(4, 4, 0)


# --- Loud edges (issue 13): segment ids, non-finite inputs, integer inputs, chunk sizes, outputs.


@pytest.mark.parametrize("bad, why", [
    (np.array([[0, 1], [2, -1]]), "negative"),
    (np.array([[0, 1], [3, 3]]), "missing"),                # a gap: id 2 unused
    (np.array([[1, 2], [3, 4]]), "missing"),                # SLIC's labels start at 1
    (np.array([[0.0, 1.0], [1.0, 0.0]]), "integer"),
    (np.array([0, 1, 2, 3]), "2-D"),
])
def test_segment_ids_must_be_exactly_zero_to_d_minus_one(bad, why):
  x = jnp.ones((2, 2, 1)) if bad.ndim == 2 else jnp.ones((4,))
  for call in (lambda: masking.num_units(x.shape, bad),
               lambda: masking.apply_unit_mask(x, jnp.ones((4,)), 0.0, segments=bad),
               lambda: masking.unit_sum(jnp.ones((2, 2)), segments=bad)):
    with pytest.raises(ValueError, match=f"`segments`.*{why}"):
      call()


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(st.integers(1, 6), st.integers(0, 2 ** 16), st.booleans())
def test_segment_maps_with_all_ids_pass_and_any_hole_fails(d, seed, shift):
  rng = np.random.default_rng(seed)
  seg = rng.permutation(np.resize(np.arange(d), 12)).reshape(3, 4)  # every id 0..d-1 present
  assert masking.num_units((3, 4, 1), seg) == d
  bad = seg + 1 if shift else np.where(seg == d - 1, d, seg)  # shifted, or d-1 renamed to d
  with pytest.raises(ValueError, match="`segments`"):
    masking.num_units((3, 4, 1), bad)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_removed_units_take_exactly_the_baseline_even_where_x_is_not_finite(value):
  x = jnp.asarray([1.0, value, 3.0, 4.0])
  z = jnp.asarray([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.5]])
  out = np.asarray(masking.apply_unit_mask(x, z, jnp.asarray([9.0, 8.0, 7.0, 6.0])))
  np.testing.assert_array_equal(out[0], [1.0, 8.0, 3.0, 6.0])
  np.testing.assert_array_equal(out[1, :3], [1.0, value, 7.0])  # a kept unit keeps its value
  assert out[1, 3] == 5.0


def test_integer_images_are_masked_in_floating_point():
  x = jnp.arange(12, dtype=jnp.int32).reshape(2, 2, 3)
  z = jnp.asarray([0.25, 1.0, 0.0, 0.5])
  out = masking.apply_unit_mask(x, z, 0.5)
  ref = masking.apply_unit_mask(x.astype(jnp.float32), z, 0.5)
  assert out.dtype == jnp.float32
  np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("chunk_size", [0, -2, 1.5, True])
def test_chunk_size_must_be_a_positive_int(chunk_size):
  with pytest.raises(ValueError, match="`chunk_size`"):
    masking.evaluate_masked(lambda b: b, jnp.ones((3,)), jnp.ones((4, 3)), 0, baseline=0.0,
                            chunk_size=chunk_size)


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_evaluate_masked_raw_output_of_a_regression_model(chunk_size):
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(5,)), jnp.float32)
  w = rng.normal(size=(5,))
  z = jnp.asarray(rng.integers(0, 2, size=(7, 5)), jnp.float32)
  ref = (np.asarray(z, np.float64) * np.asarray(x, np.float64)) @ w  # baseline 0
  for model in (lambda b: b @ jnp.asarray(w, b.dtype), lambda b: (b @ jnp.asarray(w, b.dtype))[:, None]):
    out = masking.evaluate_masked(model, x, z, 0, baseline=0.0, output="raw", chunk_size=chunk_size)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
