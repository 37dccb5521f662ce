"""Superpixel units for images through scikit-image (the optional extra `superpixels`).

LIME's image explainer scores superpixels (Ribeiro et al., KDD 2016, with quickshift). The maps
returned here are the library's `segments`: `(H, W)` int32 with ids exactly `0..d−1` (every id
used), whatever the labels of the segmentation algorithm (SLIC's may start at 1, and enforcing
connectivity can leave gaps); `relabel_segments` gives that guarantee to any label map.
"""

from __future__ import annotations

import numpy as np

from idexpo_jax.core.checks import check_int, check_positive

METHODS = ("slic", "quickshift")


def relabel_segments(labels) -> np.ndarray:
  """Maps any integer label map to ids `0..d−1`, in increasing order of the original labels.

  Two pixels share an id exactly when they share a label, so the partition is unchanged.
  """
  labels = np.asarray(labels)
  if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"`labels` must be an (H, W) integer map; got {labels.dtype} of shape "
                     f"{labels.shape}.")
  _, ids = np.unique(labels, return_inverse=True)
  return ids.reshape(labels.shape).astype(np.int32)


def superpixel_segments(image, *, method: str = "slic", n_segments: int = 50,
                        compactness: float = 10.0, **kwargs) -> np.ndarray:
  """Superpixels of one image `(H, W, C)` (channels last) as `segments` with ids `0..d−1`.

  Args:
    image: one image, channels last (e.g. floats in [0, 1]).
    method: "slic" (Achanta et al., TPAMI 2012; `skimage.segmentation.slic`) or "quickshift"
      (Vedaldi & Soatto, ECCV 2008; `skimage.segmentation.quickshift`, LIME's default).
    n_segments: SLIC's approximate number of segments (ignored by quickshift).
    compactness: SLIC's compactness (ignored by quickshift).
    **kwargs: passed to the scikit-image function (e.g. quickshift's `kernel_size`,
      `max_dist`, `ratio`).

  Returns:
    An int32 map `(H, W)` with ids exactly `0..d−1`.

  Raises:
    ImportError: without scikit-image (`pip install 'idexpo_jax[superpixels]'`).
  """
  if method not in METHODS:
    raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
  image = np.asarray(image, np.float64)
  if image.ndim != 3:
    raise ValueError(f"`image` must be one image (H, W, C) without batch axis; got shape "
                     f"{image.shape}.")
  if method == "slic":
    n_segments = check_int(n_segments, "n_segments", minimum=1)
    check_positive(compactness, "compactness")
  try:
    from skimage import segmentation
  except ImportError as err:
    raise ImportError("Superpixels need scikit-image: pip install 'idexpo_jax[superpixels]'."
                      ) from err
  if method == "slic":
    labels = segmentation.slic(image, n_segments=n_segments, compactness=compactness,
                               channel_axis=-1, start_label=0, **kwargs)
  else:
    kwargs.setdefault("convert2lab", image.shape[-1] == 3)
    if image.shape[-1] != 3 and kwargs["convert2lab"]:
      raise ValueError("quickshift's `convert2lab` needs an RGB image (H, W, 3).")
    labels = segmentation.quickshift(image, **kwargs)
  return relabel_segments(labels)
