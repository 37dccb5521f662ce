"""Tests for idexpo_jax.data.tfds_data under `tfds.testing.mock_data` (no files, no TensorFlow)."""

import sys

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from idexpo_jax.data import tfds_data  # noqa: E402

N = 24


@pytest.fixture
def mock():
  with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
    yield


def _raw(name, split):
  """Independent reference: every record of the mocked source, as float64 in [0, 1]."""
  src = tfds.data_source(name, split=split, download=False)
  x = np.stack([np.asarray(src[i]["image"], np.float64) for i in range(len(src))]) / 255.0
  y = np.array([int(src[i]["label"]) for i in range(len(src))])
  return x, y


def test_reading_does_not_import_tensorflow(mock):
  # TensorFlow is no dependency of this package; reading (mocked or prepared) never imports it.
  for name in ("cifar10", "stl10", "mnist"):
    assert tfds_data.load_tfds_images(name, val_size=1).train.x.shape[0] == N - 1
  assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("name,shape", [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1)),
                                        ("stl10", (96, 96, 3))])
def test_splits_shapes_and_standardisation(mock, name, shape):
  d = tfds_data.load_tfds_images(name, val_size=6, seed=3)
  assert d.train.x.shape == (N - 6, *shape) and d.val.x.shape == (6, *shape)
  assert d.test.x.shape == (N, *shape)
  assert d.train.x.dtype == np.float32 and d.train.y.dtype == np.int32
  assert d.num_classes == 10 and d.mean.shape == (1, 1, shape[-1])
  # Reference: hold out the same permutation, standardise with the training rows in float64.
  x, y = _raw(name, "train")
  perm = np.random.default_rng(3).permutation(N)
  tr, va = np.sort(perm[6:]), np.sort(perm[:6])
  mu, sd = x[tr].mean(axis=(0, 1, 2)), x[tr].std(axis=(0, 1, 2))
  np.testing.assert_allclose(d.train.x, (x[tr] - mu) / sd, atol=2e-5)
  np.testing.assert_allclose(d.val.x, (x[va] - mu) / sd, atol=2e-5)
  np.testing.assert_array_equal(d.train.y, y[tr])
  np.testing.assert_array_equal(d.val.y, y[va])
  xt, yt = _raw(name, "test")
  np.testing.assert_allclose(d.test.x, (xt - mu) / sd, atol=2e-5)
  np.testing.assert_array_equal(d.test.y, yt)
  np.testing.assert_allclose(d.mean, np.zeros((1, 1, shape[-1])), atol=1e-5)
  # Training and validation rows are disjoint and cover the training split.
  assert sorted(np.concatenate([tr, va]).tolist()) == list(range(N))


def test_seed_changes_the_hold_out_not_the_test_split(mock):
  a = tfds_data.load_tfds_images("cifar10", val_size=5, seed=0)
  b = tfds_data.load_tfds_images("cifar10", val_size=5, seed=0)
  c = tfds_data.load_tfds_images("cifar10", val_size=5, seed=1)
  np.testing.assert_array_equal(a.train.x, b.train.x)
  assert not np.array_equal(a.val.x, c.val.x)
  np.testing.assert_array_equal(a.test.y, c.test.y)  # same test rows (normalised differently)


def test_unit_range_without_normalisation_and_limits(mock):
  d = tfds_data.load_tfds_images("cifar10", val_size=4, normalize=False, max_train=7, max_test=5)
  assert d.train.x.shape[0] == 7 and d.test.x.shape[0] == 5 and d.val.x.shape[0] == 4
  x, _ = _raw("cifar10", "test")
  np.testing.assert_allclose(d.test.x, x[:5], atol=1e-6)
  np.testing.assert_allclose(d.mean[0, 0], d.train.x.mean(axis=(0, 1, 2)), rtol=1e-5)


def test_stl10_block_mean_resize(mock):
  d = tfds_data.load_tfds_images("stl10", val_size=2, normalize=False, image_size=32)
  assert d.test.x.shape == (N, 32, 32, 3) and d.name == "stl10_32px"
  x, _ = _raw("stl10", "test")
  for n, i, j in [(0, 0, 0), (3, 31, 5), (N - 1, 17, 30)]:  # brute-force 3×3 block means
    np.testing.assert_allclose(d.test.x[n, i, j], x[n, 3 * i:3 * i + 3, 3 * j:3 * j + 3].mean(
        axis=(0, 1)), atol=1e-6)


def test_reduce_size_rejects_non_divisors():
  with pytest.raises(ValueError, match="image_size"):
    tfds_data.reduce_size(np.zeros((1, 96, 96, 3), np.uint8), 40)


def test_batches_from_epoch_batch_fn_are_deterministic(mock):
  from idexpo_jax.training.loop import epoch_batch_fn
  d = tfds_data.load_tfds_images("cifar10", val_size=4)
  f, g = epoch_batch_fn(d.train, 5, seed=7), epoch_batch_fn(d.train, 5, seed=7)
  seen = np.concatenate([f(t).y for t in range(4)])  # one epoch: 4 batches of 5 of 20
  np.testing.assert_array_equal(f(2).x, g(2).x)
  assert sorted(seen.tolist()) == sorted(d.train.y.tolist())


def test_missing_set_names_directory_and_command(tmp_path):
  with pytest.raises(FileNotFoundError) as err:
    tfds_data.load_tfds_images("cifar10", data_dir=str(tmp_path))
  msg = str(err.value)
  assert str(tmp_path) in msg
  assert f"tfds build cifar10 --data_dir={tmp_path} --file_format=array_record" in msg


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="imagenet"), "name"),
    (dict(name="mnist", val_size=N), "val_size"),
    (dict(name="mnist", val_size=2, max_train=0), "max_train")])
def test_bad_arguments(mock, kwargs, match):
  with pytest.raises(ValueError, match=match):
    tfds_data.load_tfds_images(**kwargs)
