"""Figures for explanations and faithfulness metrics, as a paper would print them.

Functions take NumPy-compatible arrays and an output path; matplotlib is imported inside each
function with the non-interactive Agg backend, so importing this module needs no matplotlib.
With `path=None` a function returns the `matplotlib.figure.Figure` instead of writing a PNG
(the caller closes it), e.g. to adjust it or to check its layout.

* `plot_heatmaps`: images with attribution maps, one row per model or explainer. Signed maps
  (LIME, KernelSHAP) use a diverging colormap centred at 0 with symmetric limits ±max|φ|
  (red: the unit raises the target's score, blue: it lowers it); non-negative maps (Grad-CAM)
  a sequential one from 0. Every row has a colorbar; the input's outline is drawn on each map.
* `plot_attribution_bars`: tabular attributions as signed horizontal bar charts with feature
  names, one panel per (row, example).
* `plot_curves`: mean insertion and deletion curves with a shaded band.
* `plot_scatter`: one metric against another, one series per method, point labels placed so that
  they do not overprint each other, the markers or the legend (outside the axes).

All figures use constrained layout, so titles, labels and colorbars do not overlap.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from idexpo_jax._optional import require

SIGNED_CMAP = "RdBu_r"  # diverging, white at 0, red positive
POSITIVE_CMAP = "magma_r"  # sequential, white at 0, dark at the maximum


def _pyplot():
  matplotlib = require("matplotlib", "experiments", what="plots")
  matplotlib.use("Agg", force=True)
  import matplotlib.pyplot as plt
  return plt


def _finish(fig, path: Optional[str]):
  """Writes `fig` to `path` and closes it (returns `path`), or returns `fig` if `path` is None."""
  if path is None:
    return fig
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=150, bbox_inches="tight")
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


def color_limits(maps, *, signed: bool) -> tuple[float, float]:
  """`(vmin, vmax)` of a colour scale: `(−m, m)` with `m = max|maps|` if `signed`, else `(0, m)`.

  An all-zero (or empty) input gives `m = 1` so that the scale is never degenerate.
  """
  a = np.abs(np.asarray(maps, dtype=np.float64))
  m = float(np.nanmax(a)) if a.size else 0.0
  m = m if np.isfinite(m) and m > 0 else 1.0
  return (-m, m) if signed else (0.0, m)


def _is_signed(signed, name: str, maps: np.ndarray) -> bool:
  if isinstance(signed, Mapping):
    signed = signed.get(name)
  if signed is None:
    return bool(np.nanmin(maps) < 0) if maps.size else False
  return bool(signed)


def _split_label(name: str) -> str:
  """Row labels on the left of a heatmap row: long labels broken at " · " / spaces."""
  if len(name) <= 14 or "\n" in name:
    return name
  for sep in (" · ", " "):
    if sep in name:
      head, tail = name.split(sep, 1)
      return f"{head}\n{tail}" if sep == " " else f"{head}\n· {tail}"
  return name


def plot_heatmaps(images, attributions: Mapping[str, object], path: Optional[str], *,
                  segments=None, titles: Optional[Sequence[str]] = None,
                  signed: Union[None, bool, Mapping[str, bool]] = None,
                  scale: str = "row", overlay: Optional[str] = None, alpha: float = 0.6,
                  colorbar_label: str = "attribution φ"):
  """Images in the first row, then one row of attribution maps per entry of `attributions`.

  Each row has one colour scale and a colorbar. A signed row (LIME, KernelSHAP, gradients) uses
  the diverging `SIGNED_CMAP` with symmetric limits `vmin = −vmax = −max|φ|` (0 is white); a
  non-negative row (Grad-CAM) the sequential `POSITIVE_CMAP` from 0 to `max φ`.

  Args:
    images: `(N, H, W)` or `(N, H, W, C)` with values in [0, 1] (C = 1 or 3).
    attributions: row label -> `(N, H, W)` maps, or `(N, d)` unit scores with `segments`.
    path: output PNG path, or None to return the figure.
    segments: optional `(H, W)` int map of unit ids.
    titles: optional column titles (e.g. labels and predictions).
    signed: None infers per row (signed iff some value is negative), a bool applies to every
      row, a mapping row label -> bool sets rows (others inferred).
    scale: "row" (one scale over the row's maps; magnitudes comparable across examples) or
      "map" (each map divided by its own max|φ|; colorbar in relative units).
    overlay: how the input is shown with its map: "contour" (the map in its true colours, the
      input's outline drawn on it at half its intensity range; default for greyscale images),
      "blend" (the map with opacity `alpha` over the greyscale input; default for RGB images)
      or "none".
    alpha: opacity of the map with `overlay="blend"`.
    colorbar_label: text beside each colorbar (with scale "map": "φ / max|φ|").

  Returns:
    `path`, or the figure if `path` is None.
  """
  plt = _pyplot()
  imgs = np.asarray(images, dtype=np.float64)
  if imgs.ndim == 4 and imgs.shape[-1] == 1:
    imgs = imgs[..., 0]
  if imgs.ndim not in (3, 4):
    raise ValueError(f"`images` must be (N, H, W) or (N, H, W, C); got {imgs.shape} "
                     f"(tabular attributions: `plot_attribution_bars`).")
  if scale not in ("row", "map"):
    raise ValueError(f"`scale` must be 'row' or 'map'; got {scale!r}.")
  if overlay is None:  # outlines read well on digits, not on photographs
    overlay = "contour" if imgs.ndim == 3 else "blend"
  if overlay not in ("contour", "blend", "none"):
    raise ValueError(f"`overlay` must be 'contour', 'blend' or 'none'; got {overlay!r}.")
  n = imgs.shape[0]
  rows = {name: _unit_maps(a, n, imgs.shape[1:3], segments) for name, a in attributions.items()}
  grey = imgs if imgs.ndim == 3 else imgs @ np.array([0.299, 0.587, 0.114])[: imgs.shape[-1]]
  # A narrow last column holds the colorbars, so that every row's images line up.
  fig, grid = plt.subplots(1 + len(rows), n + 1, figsize=(1.2 * n + 1.1, 1.3 * (1 + len(rows))),
                           squeeze=False, layout="constrained",
                           gridspec_kw={"width_ratios": [1.0] * n + [0.07]})
  axes, caxes = grid[:, :n], grid[:, n]
  caxes[0].set_axis_off()
  for j in range(n):
    axes[0, j].imshow(imgs[j], cmap="gray" if imgs.ndim == 3 else None, vmin=0.0, vmax=1.0)
    if titles is not None:
      axes[0, j].set_title(str(titles[j]), fontsize=8)
  axes[0, 0].set_ylabel("input", fontsize=8)
  for i, (name, maps) in enumerate(rows.items(), start=1):
    is_signed = _is_signed(signed, name, maps)
    if scale == "map":
      maps = np.stack([m / color_limits(m, signed=True)[1] for m in maps])
    vmin, vmax = color_limits(maps, signed=is_signed)
    cmap = SIGNED_CMAP if is_signed else POSITIVE_CMAP
    for j in range(n):
      ax = axes[i, j]
      if overlay == "blend":
        ax.imshow(grey[j], cmap="gray", vmin=0.0, vmax=1.0)
      im = ax.imshow(maps[j], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                     alpha=alpha if overlay == "blend" else None)
      lo, hi = float(grey[j].min()), float(grey[j].max())
      if overlay == "contour" and hi > lo:
        ax.contour(grey[j], levels=[(lo + hi) / 2], colors="k", linewidths=0.7)
    axes[i, 0].set_ylabel(_split_label(name), fontsize=7)
    # The colorbar shows the colormap itself (full opacity), not the blended overlay.
    sm = plt.cm.ScalarMappable(norm=im.norm, cmap=im.cmap)
    caxes[i].set_label("<colorbar>")  # matplotlib's own name for colorbar axes
    cbar = fig.colorbar(sm, cax=caxes[i])
    cbar.ax.tick_params(labelsize=6)
    cbar.ax.yaxis.get_offset_text().set_fontsize(6)
    cbar.set_label("φ / max|φ|" if scale == "map" else colorbar_label, fontsize=6)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  return _finish(fig, path)


def plot_attribution_bars(attributions: Mapping[str, object], path: Optional[str], *,
                          feature_names: Optional[Sequence[str]] = None,
                          titles: Optional[Sequence[str]] = None, top_k: Optional[int] = 10,
                          xlabel: str = "attribution φ"):
  """Tabular attributions as signed horizontal bar charts: rows = entries, columns = examples.

  Each column shows the same features for every row: the `top_k` features of largest
  `max |φ|` over the rows of that example, largest at the top. Positive bars are red (the
  feature raises the target's score), negative ones blue; each column (example) shares
  symmetric x limits `±max|φ|` over its rows, so the methods compare bar for bar.

  Args:
    attributions: row label -> `(N, D)` attributions (or `(D,)` for one example).
    path: output PNG path, or None to return the figure.
    feature_names: `D` names (default `x0..x{D-1}`).
    titles: optional column titles (e.g. labels and predictions).
    top_k: number of features per example (None: all `D`, in their order).
    xlabel: text under the bottom row.

  Returns:
    `path`, or the figure if `path` is None.
  """
  plt = _pyplot()
  from matplotlib.ticker import MaxNLocator
  rows = {}
  for name, a in attributions.items():
    a = np.asarray(a, dtype=np.float64)
    rows[name] = a[None] if a.ndim == 1 else a
  if not rows:
    raise ValueError("`attributions` is empty.")
  shapes = {a.shape for a in rows.values()}
  if len(shapes) != 1 or len(next(iter(shapes))) != 2:
    raise ValueError(f"every entry of `attributions` must be (N, D) of one shape; got "
                     f"{ {k: v.shape for k, v in rows.items()} }.")
  n, d = next(iter(shapes))
  names = [f"x{i}" for i in range(d)] if feature_names is None else [str(f) for f in
                                                                       feature_names]
  if len(names) != d:
    raise ValueError(f"`feature_names` must have D = {d} entries; got {len(names)}.")
  k = d if top_k is None else max(1, min(int(top_k), d))
  stacked = np.stack(list(rows.values()))  # (R, N, D)
  if top_k is None:
    order = np.tile(np.arange(d), (n, 1))
  else:
    order = np.argsort(-np.abs(stacked).max(axis=0), axis=1, kind="stable")[:, :k]  # (N, k)
  fig, axes = plt.subplots(len(rows), n, figsize=(2.3 * n + 0.8, 0.17 * k * len(rows) + 0.9),
                           squeeze=False, layout="constrained")
  for i, (name, a) in enumerate(rows.items()):
    for j in range(n):
      ax = axes[i, j]
      vals = a[j, order[j]]
      ypos = np.arange(k)[::-1]
      ax.barh(ypos, vals, color=np.where(vals >= 0, "#b2182b", "#2166ac"), height=0.75)
      ax.axvline(0.0, color="k", linewidth=0.6)
      lo, hi = color_limits(stacked[:, j], signed=True)  # shared down the column
      ax.set_xlim(1.05 * lo, 1.05 * hi)
      ax.xaxis.set_major_locator(MaxNLocator(nbins=2, symmetric=True))
      ax.set_ylim(-0.6, k - 0.4)
      ax.set_yticks(ypos, [names[f] for f in order[j]], fontsize=6)
      ax.tick_params(axis="x", labelsize=6)
      ax.xaxis.get_offset_text().set_fontsize(6)
      ax.grid(axis="x", alpha=0.3)
      if i == 0 and titles is not None:
        ax.set_title(str(titles[j]), fontsize=8)
      if i == len(rows) - 1:
        ax.set_xlabel(xlabel, fontsize=7)
    axes[i, 0].set_ylabel(name, fontsize=7)
  return _finish(fig, path)


def plot_curves(fractions, curves: Mapping[str, object], path: Optional[str], *, title: str = "",
                xlabel: str = "fraction of units perturbed",
                ylabel: str = "probability of the target", band: str = "sem",
                vline: Optional[float] = None):
  """Mean curve over examples per entry, with a shaded band.

  Args:
    fractions: `(P,)` x positions.
    curves: label -> `(N, P)` per-example curves (e.g. insertion curves of one model).
    path: output PNG path, or None to return the figure.
    title, xlabel, ylabel: text of the axes.
    band: "sem" (±1 standard error of the mean), "std" (±1 standard deviation) or "none".
    vline: optional x position of a dashed vertical line (e.g. the scored fraction 0.5).

  Returns:
    `path`, or the figure if `path` is None.
  """
  plt = _pyplot()
  fr = np.asarray(fractions, dtype=np.float64)
  if band not in ("sem", "std", "none"):
    raise ValueError(f"`band` must be 'sem', 'std' or 'none'; got {band!r}.")
  fig, ax = plt.subplots(figsize=(4.6, 3.3), layout="constrained")
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
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.set_xlim(fr.min(), fr.max())
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  return _finish(fig, path)


def _place_labels(ax, points, texts, *, colors=None, obstacles=(),
                  fontsize: float = 6.5) -> list:
  """Greedy label placement: each text at the first offset around its point (nearest first)
  whose box overlaps no placed label, no marker, no obstacle point (`(M, 2)` data coordinates,
  e.g. samples along the lines) and stays inside the axes; a thin leader line joins a label moved
  away from its point. Returns the annotations."""
  fig = ax.figure
  renderer = fig.canvas.get_renderer()
  data = np.asarray(points, dtype=np.float64).reshape(-1, 2)
  pts = ax.transData.transform(data)
  r = 3.0 * fig.dpi / 72.0  # marker half-size in pixels
  blocked = [(x - r, y - r, x + r, y + r) for x, y in pts]
  if len(obstacles):
    q = 1.0 * fig.dpi / 72.0
    blocked += [(x - q, y - q, x + q, y + q)
                for x, y in ax.transData.transform(np.asarray(obstacles, np.float64))]
  frame = ax.get_window_extent(renderer)
  placed, out = [], []
  directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
  candidates = [(dx * rad, dy * rad) for rad in (4, 9, 15, 22, 30, 40, 52, 66, 82, 100)
                for dx, dy in directions]
  colors = ["k"] * len(data) if colors is None else list(colors)
  for (x, y), text, color in zip(data, texts, colors):
    best, fewest = None, None
    for ox, oy in candidates:
      ha = "left" if ox > 0 else "right" if ox < 0 else "center"
      va = "bottom" if oy > 0 else "top" if oy < 0 else "center"
      ann = ax.annotate(str(text), (x, y), xytext=(ox, oy), textcoords="offset points",
                        fontsize=fontsize, ha=ha, va=va)
      bb = ann.get_window_extent(renderer)
      ann.remove()
      box = (bb.x0 - 1, bb.y0 - 1, bb.x1 + 1, bb.y1 + 1)
      inside = (bb.x0 >= frame.x0 and bb.x1 <= frame.x1 and bb.y0 >= frame.y0
                and bb.y1 <= frame.y1)
      hits = sum(_intersects(box, o) for o in placed) * 100 + sum(
          _intersects(box, o) for o in blocked) + (0 if inside else 1000)
      if fewest is None or hits < fewest:
        best, fewest = (ox, oy, ha, va, box), hits
      if hits == 0:
        break
    assert best is not None  # `candidates` is never empty
    ox, oy, ha, va, box = best
    far = max(abs(ox), abs(oy)) > 9
    arrow = dict(arrowstyle="-", color="0.55", linewidth=0.5, shrinkA=0, shrinkB=2.5)
    out.append(ax.annotate(str(text), (x, y), xytext=(ox, oy), textcoords="offset points",
                           fontsize=fontsize, ha=ha, va=va, color=color,
                           arrowprops=arrow if far else None))
    placed.append(box)
  return out


def _along(ax, lines, *, spacing: float = 4.0) -> np.ndarray:
  """Points every ~`spacing` pixels along polylines given in data coordinates (data coords)."""
  out = [np.zeros((0, 2))]
  inv = ax.transData.inverted()
  for line in lines:
    disp = ax.transData.transform(line)
    for a, b in zip(disp[:-1], disp[1:]):
      k = max(int(np.hypot(*(b - a)) / spacing), 1)
      t = np.linspace(0.0, 1.0, k + 1)[1:-1, None]
      if len(t):
        out.append(inv.transform(a + t * (b - a)))
  return np.concatenate(out)


def _intersects(a, b) -> bool:
  return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def plot_scatter(series: Mapping[str, tuple], path: Optional[str], *, xlabel: str = "accuracy",
                 ylabel: str = "Ins", title: str = "",
                 annotations: Optional[Mapping[str, Sequence[str]]] = None,
                 connect: bool = False):
  """One metric against another, one marker series per entry (e.g. Ins vs accuracy per method).

  Point labels (`annotations`, in their series' colour) are placed next to their points where
  they overprint no other label or marker (farther out, with a thin leader line, where the neighbourhood is crowded);
  the legend sits outside the axes.

  Args:
    series: label -> `(x, y)` sequences of equal length (e.g. accuracies and Ins of the models
      selected for several η).
    path: output PNG path, or None to return the figure.
    xlabel, ylabel, title: text of the axes.
    annotations: optional label -> one text per point (e.g. "η=2").
    connect: join the points of a series with a line (in the given order).

  Returns:
    `path`, or the figure if `path` is None.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.6, 3.6), layout="constrained")
  labelled, lines = [], []
  for name, (xs, ys) in series.items():
    xs, ys = np.atleast_1d(np.asarray(xs, np.float64)), np.atleast_1d(np.asarray(ys, np.float64))
    if xs.shape != ys.shape or xs.ndim != 1:
      raise ValueError(f"series[{name!r}] must be two 1-D sequences of equal length; got "
                       f"{xs.shape} and {ys.shape}.")
    line, = ax.plot(xs, ys, marker="o", markersize=4, linestyle="-" if connect else "none",
                    linewidth=1.0, label=name)
    if annotations and name in annotations:
      texts = list(annotations[name])
      if len(texts) != len(xs):
        raise ValueError(f"annotations[{name!r}] needs one text per point ({len(xs)}); got "
                         f"{len(texts)}.")
      labelled += [((x, y), t, line.get_color()) for x, y, t in zip(xs, ys, texts)]
    if connect and len(xs) > 1:
      lines.append(np.stack([xs, ys], axis=1))
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
  if labelled:
    ax.margins(0.12)  # room for labels at the edges
    fig.canvas.draw()
    fig.set_layout_engine("none")  # freeze the layout: label positions are computed on it
    obstacles = _along(ax, lines)
    _place_labels(ax, [p for p, _, _ in labelled], [t for _, t, _ in labelled],
                  colors=[c for _, _, c in labelled], obstacles=obstacles)
  return _finish(fig, path)
