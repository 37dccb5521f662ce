"""Offline data from scikit-learn: digits as images, tabular classification and regression.

Splits are made with a seed (numpy), features are standardised with training-set statistics only,
and nothing is ever downloaded.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import numpy as np

from idexpo_jax._optional import require
from idexpo_jax.core.checks import check_fraction, check_int


class Split(NamedTuple):
  """One split: inputs `x` (float32) and targets `y` (int32 labels or float32 values)."""

  x: np.ndarray
  y: np.ndarray


class Dataset(NamedTuple):
  """Train/validation/test splits with the statistics used to normalise them.

  Attributes:
    train, val, test: the splits.
    mean: training mean of the (normalised) inputs: the default baseline for removed units.
    num_classes: number of classes (0 for regression).
    name: data set name.
    y_mean, y_std: training statistics of a standardised regression target (else 0 and 1).
  """

  train: Split
  val: Split
  test: Split
  mean: np.ndarray
  num_classes: int
  name: str
  y_mean: float = 0.0
  y_std: float = 1.0


def _split_indices(n: int, fractions, seed: int):
  """Seeded train/validation/test indices of `n` examples; every split must be non-empty.

  `fractions` are three reals in (0, 1) summing to 1; the train and validation sizes are rounded
  and the test split takes the rest.
  """
  seed = check_int(seed, "seed", minimum=0)
  try:
    parts = tuple(fractions)
  except TypeError as err:
    raise ValueError(f"`fractions` must be three train/validation/test fractions summing to 1; "
                     f"got {fractions!r}.") from err
  if len(parts) != 3:
    raise ValueError(f"`fractions` must be three train/validation/test fractions summing to 1; "
                     f"got {fractions!r}.")
  parts = [check_fraction(f, f"fractions[{i}]", high_open=True) for i, f in enumerate(parts)]
  if abs(sum(parts) - 1.0) > 1e-6:
    raise ValueError(f"`fractions` must sum to 1; got {fractions!r} (sum {sum(parts):g}).")
  n_train = int(round(parts[0] * n))
  n_val = int(round(parts[1] * n))
  sizes = (n_train, n_val, n - n_train - n_val)
  if min(sizes) < 1:
    raise ValueError(f"`fractions`={fractions!r} of {n} examples give an empty split (train, "
                     f"validation, test sizes {sizes}); every split needs at least one example.")
  perm = np.random.default_rng(seed).permutation(n)
  return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def load_digits_images(*, size: int = 16, seed: int = 0, fractions=(0.6, 0.2, 0.2)) -> Dataset:
  """scikit-learn's 8×8 digits as `(N, size, size, 1)` images in [0, 1], nearest-upsampled.

  `size` must be a multiple of 8. `mean` is the per-channel training mean (shape `(1, 1, 1)`),
  the ID-ExpO convention for the removed-pixel baseline.
  """
  load_digits = require("sklearn.datasets", "experiments", what="data loaders").load_digits
  size = check_int(size, "size", minimum=8)
  if size % 8:
    raise ValueError(f"`size` must be a multiple of 8; got {size}.")
  d = load_digits()
  x = (d.images / 16.0).astype(np.float32)
  r = size // 8
  x = np.repeat(np.repeat(x, r, axis=1), r, axis=2)[..., None]
  y = d.target.astype(np.int32)
  tr, va, te = _split_indices(len(y), fractions, seed)
  mean = x[tr].mean(axis=(0, 1, 2), keepdims=True)[0]
  return Dataset(Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]), mean, 10,
                 f"digits{size}")


_CLASSIFICATION = ("breast_cancer", "wine", "iris")


def load_tabular_classification(name: str, *, seed: int = 0, fractions=(0.5, 0.25, 0.25)
                                ) -> Dataset:
  """`breast_cancer`, `wine` or `iris`, z-scored with training statistics (`mean` is then ~0)."""
  datasets = require("sklearn.datasets", "experiments", what="data loaders")
  if name not in _CLASSIFICATION:
    raise ValueError(f"`name` must be one of {_CLASSIFICATION}; got {name!r}.")
  x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
  x = x.astype(np.float64)
  tr, va, te = _split_indices(len(y), fractions, seed)
  mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-8
  x = ((x - mu) / sd).astype(np.float32)
  y = y.astype(np.int32)
  return Dataset(Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                 x[tr].mean(0), int(y.max()) + 1, name)


_REGRESSION = ("diabetes", "friedman1", "california_like")


def load_regression(name: str, *, seed: int = 0, n_samples: int = 1000,
                    fractions=(0.5, 0.25, 0.25)) -> Dataset:
  """Regression data available offline, features and target z-scored with training statistics.

  `diabetes` (442×10, bundled), `friedman1` (`make_friedman1`, 10 features, noise 1.0) and
  `california_like` (`make_regression`-free smooth nonlinear generator:
  `y = sin(x0)·x1 + x2² − x3·x4 + noise`, 8 features) — the last two generated with `seed`.
  `y_mean`/`y_std` undo the target scaling.
  """
  datasets = require("sklearn.datasets", "experiments", what="data loaders")
  n_samples = check_int(n_samples, "n_samples", minimum=3)
  if name == "diabetes":
    x, y = datasets.load_diabetes(return_X_y=True)
  elif name == "friedman1":
    x, y = datasets.make_friedman1(n_samples=n_samples, n_features=10, noise=1.0,
                                   random_state=seed)
  elif name == "california_like":
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_samples, 8))
    y = np.sin(x[:, 0]) * x[:, 1] + x[:, 2] ** 2 - x[:, 3] * x[:, 4] + 0.1 * rng.normal(
        size=n_samples)
  else:
    raise ValueError(f"`name` must be one of {_REGRESSION}; got {name!r}.")
  tr, va, te = _split_indices(len(y), fractions, seed)
  mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-8
  x = ((x - mu) / sd).astype(np.float32)
  y_mean, y_std = float(y[tr].mean()), float(y[tr].std())
  y = ((y - y_mean) / y_std).astype(np.float32)
  return Dataset(Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                 x[tr].mean(0), 0, name, y_mean, y_std)


def batches(split: Split, batch_size: int, *, seed: Optional[int] = None,
            drop_last: bool = True) -> Iterator[Split]:
  """Iterates over a split in minibatches, shuffled by `seed` (in order when `seed is None`).

  The arguments are checked when called (not at the first batch).
  """
  n = len(split.y)
  batch_size = check_int(batch_size, "batch_size", minimum=1)
  seed = check_int(seed, "seed", minimum=0, none_ok=True)
  idx = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
  stop = n - n % batch_size if drop_last and n >= batch_size else n
  return (Split(split.x[idx[i:i + batch_size]], split.y[idx[i:i + batch_size]])
          for i in range(0, stop, batch_size))
