"""Real image data through `tfds.data_source`: CIFAR-10, STL-10 and MNIST.

`tfds.data_source` reads prepared ArrayRecord files by random access and needs no TensorFlow.
Preparing a set once does (TFDS's builders read the raw archives with `tf.io.gfile`):

    pip install tensorflow
    tfds build cifar10 --data_dir=DIR --file_format=array_record

`load_tfds_images` reads the splits into memory as a `Dataset` (the same NamedTuple as the
scikit-learn loaders), so the rest of the library and the experiments treat both alike:

* validation: `val_size` examples held out from the training split by a seeded permutation (none
  of the three sets has an official validation split; never tune on `test`);
* images: float32 `(N, H, W, C)`, optionally reduced by an integer factor (block mean, e.g. STL-10
  96 → 32), then standardised per channel with the training split's mean and standard deviation;
* `Dataset.mean`: the per-channel training mean of the normalised inputs, shape `(1, 1, C)` — the
  ID-ExpO baseline for removed pixels (the dataset mean colour).

Batching and shuffling: `idexpo_jax.training.loop.epoch_batch_fn(dataset.train, batch_size, seed=...)`, a
pure function of the step, so that checkpointed runs resume exactly.

Tests run under `tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE)`, which fakes the
sources from the feature specs without any file or TensorFlow.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from idexpo_jax._optional import require
from idexpo_jax.core.checks import check_int
from idexpo_jax.data.sklearn_data import Dataset, Split

# name -> (tfds training split, tfds test split, default validation size, number of classes)
_SETS = {
    "cifar10": ("train", "test", 5000, 10),
    "stl10": ("train", "test", 500, 10),
    "mnist": ("train", "test", 5000, 10),
}


def default_data_dir() -> str:
  """TFDS's data directory: `$TFDS_DATA_DIR` or `~/tensorflow_datasets`."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def prepare_command(name: str, data_dir: Optional[str] = None) -> str:
  """The shell command that prepares `name` for `tfds.data_source` in `data_dir`."""
  return (f"pip install tensorflow && tfds build {name} --data_dir={data_dir or default_data_dir()}"
          " --file_format=array_record")


def _check_name(name: str):
  if name not in _SETS:
    raise ValueError(f"`name` must be one of {tuple(_SETS)}; got {name!r}.")


def open_source(name: str, split: str, *, data_dir: Optional[str] = None):
  """`tfds.data_source(name, split=split)` without downloading, with a clear error.

  Args:
    name: `cifar10`, `stl10` or `mnist`.
    split: a TFDS split name (`train`, `test`).
    data_dir: TFDS data directory (default `default_data_dir()`).

  Returns:
    A random-access source: `len(source)`, `source[i] -> {"image": uint8 (H, W, C), "label"}`.

  Raises:
    FileNotFoundError: the set is not prepared in `data_dir` (ArrayRecord format); the message
      names the directory and the preparing command.
  """
  tfds = require("tensorflow_datasets", "experiments", what="tfds data sources")
  _check_name(name)
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # TFDS raises several types here; keep the original as the cause.
    raise FileNotFoundError(
        f"{name!r} (split {split!r}) is not prepared for `tfds.data_source` in "
        f"{data_dir or default_data_dir()!r}. Prepare it once (this step needs TensorFlow; reading "
        f"does not) with:\n  {prepare_command(name, data_dir)}\nor pass `data_dir=` where it is "
        f"prepared. TFDS said: {type(e).__name__}: {e}") from e


def read_examples(source, indices=None, *, progress: bool = False):
  """Decodes examples of a source into `(images uint8 (N, H, W, C), labels int32 (N,))`.

  Args:
    source: a random-access source (`open_source`).
    indices: which records (default: all, in order).
    progress: show a tqdm bar.
  """
  indices = np.arange(len(source)) if indices is None else np.asarray(indices)
  if progress:
    from tqdm.auto import tqdm
    indices = tqdm(indices, desc="decoding", leave=False)
  records = [source[int(i)] for i in indices]
  if not records:
    raise ValueError("`indices` selects no example.")
  images = np.stack([np.asarray(r["image"], np.uint8) for r in records])
  labels = np.asarray([int(r["label"]) for r in records], np.int32)
  return images, labels


def reduce_size(images: np.ndarray, image_size: int) -> np.ndarray:
  """Reduces `(N, H, W, C)` images to `(N, image_size, image_size, C)` float32 by block means.

  `H` and `W` must be equal integer multiples of `image_size` (e.g. STL-10 96 → 32 or 48).
  """
  n, h, w, c = images.shape
  image_size = check_int(image_size, "image_size", minimum=1)
  if h != w or h % image_size:
    raise ValueError(f"`image_size` must divide the square image size {h}×{w}; "
                     f"got {image_size}.")
  r = h // image_size
  x = images.astype(np.float32).reshape(n, image_size, r, image_size, r, c)
  return x.mean(axis=(2, 4))


def load_tfds_images(name: str, *, data_dir: Optional[str] = None, val_size: Optional[int] = None,
                     seed: int = 0, image_size: Optional[int] = None, normalize: bool = True,
                     max_train: Optional[int] = None, max_test: Optional[int] = None,
                     progress: bool = False) -> Dataset:
  """CIFAR-10, STL-10 or MNIST from `tfds.data_source`, in memory, as a `Dataset`.

  Args:
    name: `cifar10`, `stl10` or `mnist`.
    data_dir: TFDS data directory (default `default_data_dir()`).
    val_size: examples held out from the training split for validation (defaults: 5000 for
      CIFAR-10 and MNIST, 500 for STL-10); taken before `max_train`.
    seed: seed of the validation hold-out permutation.
    image_size: optional smaller side length (block mean by an integer factor).
    normalize: standardise per channel with the training statistics (else scale to [0, 1]).
    max_train: keep at most this many training examples (after the hold-out; for quick runs).
    max_test: read at most the first `max_test` test examples.
    progress: show tqdm bars while decoding.

  Returns:
    A `Dataset` with float32 images `(N, H, W, C)`, int32 labels and `mean` `(1, 1, C)`.
  """
  _check_name(name)
  check_int(val_size, "val_size", minimum=0, none_ok=True)
  check_int(seed, "seed", minimum=0)
  check_int(image_size, "image_size", minimum=1, none_ok=True)
  for arg, v in (("max_train", max_train), ("max_test", max_test)):
    check_int(v, arg, minimum=1, none_ok=True)
  train_split, test_split, default_val, num_classes = _SETS[name]
  val_size = default_val if val_size is None else val_size
  train_src = open_source(name, train_split, data_dir=data_dir)
  test_src = open_source(name, test_split, data_dir=data_dir)
  n = len(train_src)
  if not 0 <= val_size < n:
    raise ValueError(f"`val_size` must be in [0, {n}) (the training split of {name}); "
                     f"got {val_size}.")
  perm = np.random.default_rng(seed).permutation(n)
  val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:][:max_train])
  test_idx = np.arange(min(len(test_src), max_test or len(test_src)))

  def prep(images):
    x = images.astype(np.float32) if image_size is None else reduce_size(images, image_size)
    return x / np.float32(255.0)

  x_tr, y_tr = read_examples(train_src, train_idx, progress=progress)
  x_tr = prep(x_tr)
  if normalize:
    mu = x_tr.mean(axis=(0, 1, 2), dtype=np.float64).astype(np.float32)
    sd = x_tr.std(axis=(0, 1, 2), dtype=np.float64).astype(np.float32) + np.float32(1e-6)
  else:
    mu, sd = np.zeros(x_tr.shape[-1], np.float32), np.ones(x_tr.shape[-1], np.float32)

  def norm(x):
    return (x - mu) / sd

  x_tr = norm(x_tr)
  splits = [Split(x_tr, y_tr)]
  for src, idx in ((train_src, val_idx), (test_src, test_idx)):
    if len(idx):
      x, y = read_examples(src, idx, progress=progress)
      splits.append(Split(norm(prep(x)), y))
    else:
      splits.append(Split(np.zeros((0, *x_tr.shape[1:]), np.float32), np.zeros((0,), np.int32)))
  mean = x_tr.mean(axis=(0, 1, 2), keepdims=True)[0]
  suffix = "" if image_size is None else f"_{image_size}px"
  return Dataset(*splits, mean=mean, num_classes=num_classes, name=f"{name}{suffix}")
