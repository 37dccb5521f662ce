"""Figures for explanations and faithfulness metrics, written to PNG files.

Functions take NumPy-compatible arrays and an output path; matplotlib is imported inside each
function with the non-interactive Agg backend, so importing this module needs no matplotlib.

* `plot_heatmaps`: images with attribution overlays, one row per model (e.g. before/after).
* `plot_curves`: mean insertion and deletion curves with a shaded band.
* `plot_scatter`: one metric against another (e.g. Ins against accuracy), one series per method.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence

import numpy as np


def _pyplot():
  import matplotlib
  matplotlib.use("Agg", force=True)
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  _pyplot().close(fig)
  return path


def _unit_maps(attributions, n: int, spatial, segments) -> np.ndarray:
  """`(n, H, W)` maps from pixel maps `(n, H, W)` or unit scores `(n, d)` with `segments`."""
  a = np.asarray(attributions, dtype=np.float64)
  if a.shape[0] != n:
    raise ValueError(f"each entry of `attributions` needs one map per image ({n}); got shape "
                     f"{a.shape}.")
  if segments is not None:
    seg = np.asarray(segments)
    if a.ndim != 2 or tuple(seg.shape) != tuple(spatial):
      raise ValueError(f"with `segments` {seg.shape}, attributions must be (N, d) for images "
                       f"{spatial}; got {a.shape}.")
    return a[:, seg]
  if a.shape[1:] != tuple(spatial):
    raise ValueError(f"`attributions` must be (N, H, W) = (N, *{tuple(spatial)}) without "
                     f"`segments`; got {a.shape}.")
  return a


def plot_heatmaps(images, attributions: Mapping[str, object], path: str, *,
                  segments=None, titles: Optional[Sequence[str]] = None, cmap: str = "jet",
                  alpha: float = 0.5, normalize: str = "per_map") -> str:
  """Images in the first row, then one row of attribution overlays per entry of `attributions`.

  Args:
    images: `(N, H, W)` or `(N, H, W, C)` with values in [0, 1] (C = 1 or 3).
    attributions: row label -> `(N, H, W)` maps, or `(N, d)` unit scores with `segments`.
    path: output PNG path.
    segments: optional `(H, W)` int map of unit ids.
    titles: optional column titles (e.g. labels and predictions).
    cmap, alpha: colormap and opacity of the overlay.
    normalize: "per_map" scales each map to [0, 1] (Grad-CAM display convention) or "none".

  Returns:
    `path`.
  """
  plt = _pyplot()
  imgs = np.asarray(images, dtype=np.float64)
  if imgs.ndim == 4 and imgs.shape[-1] == 1:
    imgs = imgs[..., 0]
  if imgs.ndim not in (3, 4):
    raise ValueError(f"`images` must be (N, H, W) or (N, H, W, C); got {imgs.shape}.")
  if normalize not in ("per_map", "none"):
    raise ValueError(f"`normalize` must be 'per_map' or 'none'; got {normalize!r}.")
  n = imgs.shape[0]
  rows = {name: _unit_maps(a, n, imgs.shape[1:3], segments) for name, a in attributions.items()}
  fig, axes = plt.subplots(1 + len(rows), n, figsize=(1.4 * n, 1.5 * (1 + len(rows))),
                           squeeze=False)
  gray = "gray" if imgs.ndim == 3 else None
  for j in range(n):
    axes[0, j].imshow(imgs[j], cmap=gray, vmin=0.0, vmax=1.0)
    if titles is not None:
      axes[0, j].set_title(str(titles[j]), fontsize=8)
    for i, (name, maps) in enumerate(rows.items(), start=1):
      m = maps[j]
      if normalize == "per_map":
        lo, hi = m.min(), m.max()
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
      axes[i, j].imshow(imgs[j], cmap=gray, vmin=0.0, vmax=1.0)
      axes[i, j].imshow(m, cmap=cmap, alpha=alpha, vmin=0.0 if normalize == "per_map" else None,
                        vmax=1.0 if normalize == "per_map" else None)
      if j == 0:
        axes[i, j].set_ylabel(name, fontsize=8)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  axes[0, 0].set_ylabel("input", fontsize=8)
  return _save(fig, path)


def plot_curves(fractions, curves: Mapping[str, object], path: str, *, title: str = "",
                xlabel: str = "fraction of units perturbed",
                ylabel: str = "probability of the target", band: str = "sem",
                vline: Optional[float] = None) -> str:
  """Mean curve over examples per entry, with a shaded band.

  Args:
    fractions: `(P,)` x positions.
    curves: label -> `(N, P)` per-example curves (e.g. insertion curves of one model).
    path: output PNG path.
    title, xlabel, ylabel: text of the axes.
    band: "sem" (±1 standard error of the mean), "std" (±1 standard deviation) or "none".
    vline: optional x position of a dashed vertical line (e.g. the scored fraction 0.5).

  Returns:
    `path`.
  """
  plt = _pyplot()
  fr = np.asarray(fractions, dtype=np.float64)
  if band not in ("sem", "std", "none"):
    raise ValueError(f"`band` must be 'sem', 'std' or 'none'; got {band!r}.")
  fig, ax = plt.subplots(figsize=(4.2, 3.2))
  for name, c in curves.items():
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != fr.shape[0]:
      raise ValueError(f"curves[{name!r}] must be (N, P) with P = len(fractions) = "
                       f"{fr.shape[0]}; got {c.shape}.")
    mean = c.mean(0)
    line, = ax.plot(fr, mean, label=name)
    if band != "none" and c.shape[0] > 1:
      spread = c.std(0, ddof=1)
      if band == "sem":
        spread = spread / np.sqrt(c.shape[0])
      ax.fill_between(fr, mean - spread, mean + spread, color=line.get_color(), alpha=0.25)
  if vline is not None:
    ax.axvline(vline, color="gray", linestyle="--", linewidth=0.8)
  ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(fr.min(), fr.max()))
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def plot_scatter(series: Mapping[str, tuple], path: str, *, xlabel: str = "accuracy",
                 ylabel: str = "Ins", title: str = "",
                 annotations: Optional[Mapping[str, Sequence[str]]] = None,
                 connect: bool = False) -> str:
  """One metric against another, one marker series per entry (e.g. Ins vs accuracy per method).

  Args:
    series: label -> `(x, y)` sequences of equal length (e.g. accuracies and Ins of the models
      selected for several η).
    path: output PNG path.
    xlabel, ylabel, title: text of the axes.
    annotations: optional label -> one text per point (e.g. "η=2").
    connect: join the points of a series with a line (in the given order).

  Returns:
    `path`.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(4.2, 3.2))
  for name, (xs, ys) in series.items():
    xs, ys = np.atleast_1d(np.asarray(xs, np.float64)), np.atleast_1d(np.asarray(ys, np.float64))
    if xs.shape != ys.shape or xs.ndim != 1:
      raise ValueError(f"series[{name!r}] must be two 1-D sequences of equal length; got "
                       f"{xs.shape} and {ys.shape}.")
    ax.plot(xs, ys, marker="o", linestyle="-" if connect else "none", label=name)
    if annotations and name in annotations:
      for x, y, text in zip(xs, ys, annotations[name]):
        ax.annotate(str(text), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
  ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  return _save(fig, path)
