"""Offline scikit-learn data: splits, scaling with training statistics only, batching."""

import numpy as np
import pytest
from sklearn import datasets

from idexpo_jax.data.sklearn_data import (Split, batches, load_digits_images, load_regression,
                                          load_tabular_classification)


def test_digits_images_are_upsampled_disjoint_splits_of_sklearn_digits():
  ds = load_digits_images(size=16, seed=0)
  digits = datasets.load_digits()
  original = (digits.images / 16.0).astype(np.float32)
  parts = [ds.train, ds.val, ds.test]
  assert [len(p.y) for p in parts] == [1078, 359, 360]  # 0.6 / 0.2 / 0.2 of 1797
  for p in parts:
    assert p.x.shape[1:] == (16, 16, 1) and p.x.dtype == np.float32 and p.y.dtype == np.int32
    # Nearest upsampling by 2: every 2×2 block is one pixel of the 8×8 image.
    small = p.x[:, ::2, ::2, 0]
    np.testing.assert_array_equal(p.x[..., 0], np.repeat(np.repeat(small, 2, 1), 2, 2))
  # Together the splits are the data set (as a multiset of (image, label) rows), disjoint.
  ours = np.concatenate([np.concatenate([p.x[:, ::2, ::2, 0].reshape(len(p.y), -1),
                                         p.y[:, None].astype(np.float32)], 1) for p in parts])
  ref = np.concatenate([original.reshape(1797, -1), digits.target[:, None].astype(np.float32)], 1)
  np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(ref, axis=0))
  assert len(ours) == 1797
  np.testing.assert_allclose(ds.mean.reshape(-1), ds.train.x.mean(), rtol=1e-5)
  assert ds.num_classes == 10 and set(ds.train.y) == set(range(10))
  again, other = load_digits_images(size=16, seed=0), load_digits_images(size=16, seed=1)
  np.testing.assert_array_equal(again.test.x, ds.test.x)
  assert not np.array_equal(other.test.y, ds.test.y)
  with pytest.raises(ValueError, match="`size`"):
    load_digits_images(size=12)


@pytest.mark.parametrize("name,n_classes", [("wine", 3), ("breast_cancer", 2)])
def test_tabular_classification_scaled_with_train_statistics(name, n_classes):
  ds = load_tabular_classification(name, seed=0)
  x_all, y_all = getattr(datasets, f"load_{name}")(return_X_y=True)
  assert len(ds.train.y) + len(ds.val.y) + len(ds.test.y) == len(y_all)
  assert ds.num_classes == n_classes and ds.train.x.dtype == np.float32
  # One affine map per feature for all splits: sorted scaled values map onto sorted raw values.
  z_all = np.concatenate([ds.train.x, ds.val.x, ds.test.x]).astype(np.float64)
  for j in range(x_all.shape[1]):
    zs, xs = np.sort(z_all[:, j]), np.sort(x_all[:, j])
    design = np.stack([zs, np.ones_like(zs)], 1)
    fit, *_ = np.linalg.lstsq(design, xs, rcond=None)
    np.testing.assert_allclose(design @ fit, xs, atol=1e-4 * (1 + np.abs(xs).max()))
  # ... and it standardises the training split: mean 0 and std 1 per feature (training statistics).
  np.testing.assert_allclose(ds.train.x.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(ds.train.x.std(0), 1.0, atol=1e-4)
  assert np.abs(ds.test.x.mean(0)).max() > 1e-3  # not re-standardised on the test split
  np.testing.assert_allclose(ds.mean, ds.train.x.mean(0), atol=1e-6)
  assert np.array_equal(np.bincount(np.concatenate([ds.train.y, ds.val.y, ds.test.y])),
                        np.bincount(y_all))
  with pytest.raises(ValueError, match="`name`"):
    load_tabular_classification("digits")


def test_regression_targets_round_trip():
  ds = load_regression("diabetes", seed=0)
  _, y = datasets.load_diabetes(return_X_y=True)
  back = np.concatenate([s.y for s in (ds.train, ds.val, ds.test)]) * ds.y_std + ds.y_mean
  np.testing.assert_allclose(np.sort(back), np.sort(y), rtol=1e-5)
  np.testing.assert_allclose(ds.train.y.mean(), 0.0, atol=1e-5)
  assert ds.num_classes == 0
  f1 = load_regression("friedman1", seed=3, n_samples=200)
  _, y = datasets.make_friedman1(n_samples=200, n_features=10, noise=1.0, random_state=3)
  back = np.concatenate([s.y for s in (f1.train, f1.val, f1.test)]) * f1.y_std + f1.y_mean
  np.testing.assert_allclose(np.sort(back), np.sort(y), rtol=1e-4, atol=1e-4)
  assert load_regression("california_like", n_samples=100).train.x.shape == (50, 8)
  with pytest.raises(ValueError, match="`name`"):
    load_regression("boston")


def test_batches_cover_the_split():
  split = Split(np.arange(10, dtype=np.float32)[:, None], np.arange(10, dtype=np.int32))
  ordered = list(batches(split, 4, drop_last=False))
  assert [len(b.y) for b in ordered] == [4, 4, 2]
  np.testing.assert_array_equal(np.concatenate([b.y for b in ordered]), np.arange(10))
  dropped = list(batches(split, 4, seed=0))
  assert [len(b.y) for b in dropped] == [4, 4]
  shuffled = np.concatenate([b.y for b in batches(split, 4, seed=0, drop_last=False)])
  assert sorted(shuffled) == list(range(10)) and not np.array_equal(shuffled, np.arange(10))
  np.testing.assert_array_equal(
      shuffled, np.concatenate([b.y for b in batches(split, 4, seed=0, drop_last=False)]))
  for b in dropped:
    np.testing.assert_array_equal(b.x[:, 0], b.y)  # rows stay paired
