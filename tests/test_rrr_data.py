"""Tests for idexpo_jax.data.rrr_data: Toy Color and decoy digits obey their definitions."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from idexpo_jax.data.rrr_data import (load_decoy_digits, load_toy_color, make_toy_color,
                                      toy_color_masks)

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 128, 255), (128, 0, 255)]


def _rules_brute_force(img):
  """Decides both rules from the 0–255 RGB triples of one image, pixel by pixel."""
  rgb = [[tuple(int(round(v * 255)) for v in img[i, j]) for j in range(5)] for i in range(5)]
  for row in rgb:
    for px in row:
      assert px in PALETTE, px
  corners = {rgb[0][0], rgb[0][4], rgb[4][0], rgb[4][4]}
  top = [rgb[0][1], rgb[0][2], rgb[0][3]]
  return len(corners) == 1, len(set(top)) == 3


def test_toy_color_classes_follow_both_rules():
  split = make_toy_color(600, seed=3)
  assert split.x.shape == (600, 5, 5, 3) and split.x.dtype == np.float32
  assert split.y.dtype == np.int32 and (split.y == 0).sum() == 300
  for img, label in zip(split.x, split.y):
    corner, top = _rules_brute_force(img)
    assert (corner, top) == ((True, True) if label == 0 else (False, False))
  # The other pixels are not constant: every colour appears at a non-rule pixel.
  centre = {tuple(int(round(v * 255)) for v in px) for px in split.x[:, 2, 2]}
  assert centre == set(PALETTE)


def test_toy_color_probe_sets_each_rule_independently():
  rng = np.random.default_rng(0)
  corner, top = rng.random(200) < 0.5, rng.random(200) < 0.5
  split = make_toy_color(200, seed=1, corner_rule=corner, top_rule=top)
  got = np.array([_rules_brute_force(img) for img in split.x])
  np.testing.assert_array_equal(got[:, 0], corner)
  np.testing.assert_array_equal(got[:, 1], top)
  np.testing.assert_array_equal(split.y, np.where(corner, 0, 1))
  with pytest.raises(ValueError, match="top_rule"):
    make_toy_color(10, corner_rule=np.ones(10, bool))
  with pytest.raises(ValueError, match="shape"):
    make_toy_color(10, corner_rule=np.ones(9, bool), top_rule=np.ones(9, bool))


def test_toy_color_is_seeded_and_splits_differ():
  a = load_toy_color(n_train=50, n_val=20, n_test=30, seed=0)
  b = load_toy_color(n_train=50, n_val=20, n_test=30, seed=0)
  np.testing.assert_array_equal(a.train.x, b.train.x)
  assert not np.array_equal(a.train.x[:20], a.val.x)
  assert not np.array_equal(a.train.x, load_toy_color(n_train=50, n_val=20, n_test=30,
                                                      seed=1).train.x)
  assert (a.num_classes, a.test.x.shape[0], a.mean.shape) == (2, 30, (1, 1, 3))


def test_toy_color_masks_mark_the_rule_pixels():
  m = toy_color_masks()
  pix_c = {(i, j) for i, j in zip(*np.nonzero(m.corners.any(-1)))}
  pix_t = {(i, j) for i, j in zip(*np.nonzero(m.top_middle.any(-1)))}
  assert pix_c == {(0, 0), (0, 4), (4, 0), (4, 4)}
  assert pix_t == {(0, 1), (0, 2), (0, 3)}
  assert m.corners.sum() == 12 and m.top_middle.sum() == 9  # all three channels


def test_decoy_patch_encodes_the_label_in_train_and_not_at_test():
  patch = 2
  d = load_decoy_digits(patch=patch, seed=0)
  raw = load_digits()
  assert d.decoy.train.x.shape[1:] == (8, 8, 1) and d.decoy.num_classes == 10
  for k, (dec, cln, mask, level) in enumerate(zip(d.decoy[:3], d.clean[:3], d.annotation,
                                                  d.level)):
    np.testing.assert_array_equal(dec.y, cln.y)
    assert mask.shape == dec.x.shape and mask.dtype == bool
    # Outside the patch the images are the untouched digits.
    np.testing.assert_array_equal(dec.x[~mask], cln.x[~mask])
    for x, m, y, v in zip(dec.x, mask, dec.y, level):
      rows, cols = np.nonzero(m[..., 0])
      assert len(rows) == patch * patch
      assert rows.min() in (0, 8 - patch) and cols.min() in (0, 8 - patch)
      assert rows.max() - rows.min() == cols.max() - cols.min() == patch - 1
      np.testing.assert_allclose(x[m], 1.0 - 25.0 * v / 255.0, rtol=0, atol=1e-7)
    decoded = np.array([np.rint((1.0 - x[m].mean()) * 255.0 / 25.0) for x, m in zip(dec.x, mask)])
    agreement = np.mean(decoded == dec.y)
    if k < 2:
      assert agreement == 1.0
    else:  # random digit levels at test: the patch agrees with the label at chance
      assert agreement < 0.2
      counts = np.bincount(decoded.astype(int), minlength=10)
      assert counts.min() > 0.04 * len(decoded)
  # The clean splits are scikit-learn's digits.
  flat = (raw.images.reshape(len(raw.images), -1) / 16.0).astype(np.float32)
  rows = d.clean.train.x.reshape(len(d.clean.train.x), -1)[:20]
  assert (rows[:, None, :] == flat[None]).all(-1).any(1).all()
  # All four corners are used.
  corners = {(m[..., 0].nonzero()[0].min(), m[..., 0].nonzero()[1].min()) for m in d.annotation[0]}
  assert corners == {(0, 0), (0, 8 - patch), (8 - patch, 0), (8 - patch, 8 - patch)}


def test_decoy_rejects_bad_patch():
  with pytest.raises(ValueError, match="patch"):
    load_decoy_digits(patch=0)
