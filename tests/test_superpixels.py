"""Superpixel segments: ids exactly 0..d-1, the partition of scikit-image, usable as units."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("skimage")
from skimage import segmentation  # noqa: E402

import idexpo_jax as ij  # noqa: E402
from idexpo_jax.core.superpixels import relabel_segments, superpixel_segments  # noqa: E402


def _image(c=3, size=16, seed=0):
  rng = np.random.default_rng(seed)
  img = np.zeros((size, size, c))
  img[: size // 2] = rng.uniform(size=c)
  img[size // 2:, : size // 3] = rng.uniform(size=c)
  return np.clip(img + 0.02 * rng.normal(size=img.shape), 0, 1)


def _same_partition(a, b):
  pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
  return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_relabel_gives_contiguous_ids_and_keeps_the_partition():
  labels = np.array([[5, 5, 9], [2, 9, -1]])
  ids = relabel_segments(labels)
  np.testing.assert_array_equal(ids, [[2, 2, 3], [1, 3, 0]])
  assert ids.dtype == np.int32
  with pytest.raises(ValueError, match="integer"):
    relabel_segments(np.zeros((2, 2)))


@pytest.mark.parametrize("method,c,kw", [("slic", 3, dict(n_segments=6)),
                                         ("slic", 1, dict(n_segments=4)),
                                         ("quickshift", 3, dict(kernel_size=3, max_dist=6))])
def test_superpixels_are_contiguous_and_equal_scikit_image(method, c, kw):
  img = _image(c)
  seg = superpixel_segments(img, method=method, **kw)
  d = int(seg.max()) + 1
  assert seg.shape == (16, 16) and seg.dtype == np.int32 and d >= 2
  np.testing.assert_array_equal(np.unique(seg), np.arange(d))
  if method == "slic":
    ref = segmentation.slic(img, channel_axis=-1, compactness=10.0, start_label=1, **kw)
  else:
    ref = segmentation.quickshift(img, **kw)
  assert _same_partition(seg, ref)


def test_superpixels_as_explainer_units():
  img = _image(3)
  seg = superpixel_segments(img, n_segments=6)
  d = int(seg.max()) + 1
  w = jnp.asarray(np.random.default_rng(1).normal(size=(16 * 16 * 3, 2)), jnp.float32)
  fn = lambda xb: xb.reshape(xb.shape[0], -1) @ w
  x = jnp.asarray(img, jnp.float32)
  phi = ij.IntegratedGradients(segments=seg, baseline=0.0, output="logit")(fn, x, 1, None)
  pixel = np.asarray(w[:, 1]).reshape(16, 16, 3) * img
  np.testing.assert_allclose(phi, [pixel[seg == u].sum() for u in range(d)], rtol=1e-4,
                             atol=1e-4)
  assert ij.Lime(segments=seg, baseline=0.0, n_samples=20)(fn, x, 0, jax.random.key(0)).shape \
      == (d,)


def test_errors(monkeypatch):
  with pytest.raises(ValueError, match="method"):
    superpixel_segments(_image(), method="felzenszwalb")
  with pytest.raises(ValueError, match="image"):
    superpixel_segments(np.zeros((4, 4)))
  monkeypatch.setitem(sys.modules, "skimage", None)
  with pytest.raises(ImportError, match="superpixels"):
    superpixel_segments(_image())
