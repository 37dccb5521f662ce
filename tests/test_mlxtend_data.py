"""ExpO's UCI tables read from the mlxtend package: contents, split, scaling."""

import hashlib

import numpy as np
import pytest

pytest.importorskip("mlxtend")

from idexpo_jax.data.mlxtend_data import (AUTOMPG_FEATURES, HOUSING_FEATURES, load_uci_regression,
                                          load_uci_table)

# sha256 of the parsed table (features and target as float64, rounded to 6 decimals). The
# digests are constants on purpose: they pin the data the results were computed on, so a changed
# file in a later mlxtend release fails here instead of silently moving the numbers.
DIGESTS = {"autompgs": "ae2460f71f1ad1840d1d006c3179155e59e7e06cd5d42947b730b4e166ca2b31",
           "housing": "832e894115c56dd24ec63848d4a3d9bd921d268d0be1bee2a8f4ee5ea318f5f7"}


@pytest.mark.parametrize("name, shape, names, target_mean", [
    # Known facts of the UCI sets: 392 Auto MPG rows with horsepower, mean 23.45 mpg; 506 Boston
    # tracts, mean MEDV 22.53 (in $1000s).
    ("autompgs", (392, 7), AUTOMPG_FEATURES, 23.4459),
    ("housing", (506, 13), HOUSING_FEATURES, 22.5328)])
def test_tables(name, shape, names, target_mean):
  x, y, features = load_uci_table(name)
  assert x.shape == shape and y.shape == shape[:1] and features == names
  assert np.isfinite(x).all() and np.isfinite(y).all()
  assert (x.std(0) > 0).all()
  np.testing.assert_allclose(y.mean(), target_mean, atol=1e-4)
  table = np.ascontiguousarray(np.round(np.column_stack([x, y]), 6))
  assert hashlib.sha256(table.tobytes()).hexdigest() == DIGESTS[name]


def test_autompg_columns():
  x, y, _ = load_uci_table("autompgs")
  # cylinders 3–8, origin 1–3, model years 70–82: the columns are where the names say.
  assert set(np.unique(x[:, 0])) <= {3, 4, 5, 6, 8}
  assert set(np.unique(x[:, 6])) == {1, 2, 3}
  assert x[:, 5].min() == 70 and x[:, 5].max() == 82
  assert 9 <= y.min() and y.max() <= 47


@pytest.mark.parametrize("name", ["autompgs", "housing"])
def test_split_is_zscored_with_training_statistics(name):
  x, y, _ = load_uci_table(name)
  ds = load_uci_regression(name, seed=3)
  n = len(y)
  assert [len(s.y) for s in (ds.train, ds.val, ds.test)] == [
      round(0.5 * n), round(0.25 * n), n - round(0.5 * n) - round(0.25 * n)]
  np.testing.assert_allclose(ds.train.x.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(ds.train.x.std(0), 1, atol=1e-5)
  np.testing.assert_allclose([ds.train.y.mean(), ds.train.y.std()], [0, 1], atol=1e-5)
  # Undoing the scaling gives rows of the table back; the splits are disjoint and cover it.
  rows = np.concatenate([s.y for s in (ds.train, ds.val, ds.test)]) * ds.y_std + ds.y_mean
  np.testing.assert_allclose(np.sort(rows), np.sort(y), rtol=1e-5)
  assert not np.allclose(ds.train.x[:5], load_uci_regression(name, seed=4).train.x[:5])
  np.testing.assert_array_equal(ds.test.x, load_uci_regression(name, seed=3).test.x)


def test_constant_training_columns_are_dropped():
  from idexpo_jax.data.mlxtend_data import split_standardize
  rng = np.random.default_rng(0)
  x = np.column_stack([rng.normal(size=40), np.full(40, 2.0), rng.normal(size=40)])
  ds = split_standardize(x, rng.normal(size=40), seed=0, name="toy")
  assert ds.train.x.shape == (20, 2) and np.isfinite(ds.test.x).all()


def test_bad_name():
  with pytest.raises(ValueError, match="autompgs"):
    load_uci_table("boston")


def test_missing_mlxtend_names_the_extra(monkeypatch):
  import sys
  monkeypatch.setitem(sys.modules, "mlxtend", None)
  monkeypatch.setitem(sys.modules, "mlxtend.data", None)
  with pytest.raises(ModuleNotFoundError, match=r"idexpo_jax\[experiments\]"):
    load_uci_table("housing")
