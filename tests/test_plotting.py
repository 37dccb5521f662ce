"""Tests for idexpo_jax.plotting: PNG files are written and bad shapes raise clear errors."""

import numpy as np
import pytest

from idexpo_jax import plotting
from plot_checks import text_overlaps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == PNG_MAGIC


def _image_pixels(path):
  import matplotlib.image
  return matplotlib.image.imread(path)


def test_plot_heatmaps_pixels_and_segments(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(3, 8, 8, 1))
  maps = {"before": rng.normal(size=(3, 8, 8)), "after": np.zeros((3, 8, 8))}  # constant map ok
  path = plotting.plot_heatmaps(images, maps, str(tmp_path / "sub" / "h.png"),
                                titles=["a", "b", "c"])
  assert _is_png(path)
  segments = np.arange(64).reshape(8, 8) // 16  # 4 units
  path2 = plotting.plot_heatmaps(images[..., 0], {"units": rng.normal(size=(3, 4))},
                                 str(tmp_path / "s.png"), segments=segments)
  assert _is_png(path2)
  # More rows give a taller figure.
  assert _image_pixels(path).shape[0] > _image_pixels(path2).shape[0]


def test_plot_heatmaps_rejects_bad_shapes(tmp_path):
  images = np.zeros((2, 8, 8, 1))
  with pytest.raises(ValueError, match="attributions"):
    plotting.plot_heatmaps(images, {"m": np.zeros((2, 4, 4))}, str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="one map per image"):
    plotting.plot_heatmaps(images, {"m": np.zeros((3, 8, 8))}, str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="images"):
    plotting.plot_heatmaps(np.zeros((8, 8)), {}, str(tmp_path / "x.png"))


def test_plot_curves_bands_and_errors(tmp_path):
  fr = np.linspace(0, 1, 5)
  curves = {"ce": np.random.default_rng(1).uniform(size=(10, 5)), "one": np.ones((1, 5))}
  for band in ("sem", "std", "none"):
    assert _is_png(plotting.plot_curves(fr, curves, str(tmp_path / f"{band}.png"), band=band,
                                        vline=0.5))
  with pytest.raises(ValueError, match="len\\(fractions\\)"):
    plotting.plot_curves(fr, {"bad": np.zeros((3, 4))}, str(tmp_path / "bad.png"))
  with pytest.raises(ValueError, match="band"):
    plotting.plot_curves(fr, curves, str(tmp_path / "bad.png"), band="iqr")


def test_plot_scatter(tmp_path):
  series = {"ce": ([0.9], [0.3]), "idexpo": ([0.88, 0.9, 0.91], [0.5, 0.45, 0.4])}
  path = plotting.plot_scatter(series, str(tmp_path / "s.png"), connect=True,
                               annotations={"idexpo": ["η=1", "η=2", "η=3"]})
  assert _is_png(path)
  with pytest.raises(ValueError, match="equal length"):
    plotting.plot_scatter({"bad": ([1, 2], [1])}, str(tmp_path / "bad.png"))


def test_module_imports_without_matplotlib_loaded():
  import subprocess
  import sys
  code = ("import sys, idexpo_jax.plotting; "
          "sys.exit(1 if 'matplotlib' in sys.modules else 0)")
  assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _map_images(fig):
  """`{row label: [AxesImage of the maps]}` of a `plot_heatmaps` figure (rows 1..R)."""
  out = {}
  for ax in fig.axes:
    if ax.get_label() == "<colorbar>" or not ax.images:
      continue
    ss = ax.get_subplotspec()
    if ss is None or ss.rowspan.start == 0:
      continue
    out.setdefault(ss.rowspan.start, []).append(ax.images[-1])
  return out


def test_heatmaps_signed_rows_diverging_symmetric_with_colorbar():
  rng = np.random.default_rng(2)
  images = rng.uniform(size=(3, 8, 8))
  segments = np.arange(64).reshape(8, 8) // 16
  lime_phi = rng.normal(size=(3, 4))
  lime_phi[1, 2] = -7.5  # the largest magnitude is negative: the limits must still be ±7.5
  gradcam = np.abs(rng.normal(size=(3, 8, 8)))
  fig = plotting.plot_heatmaps(images, {"lime": lime_phi[:, segments], "gradcam": gradcam},
                               None, titles=["a", "b", "c"])
  try:
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 2  # one per attribution row
    rows = _map_images(fig)
    signed, positive = rows[1], rows[2]
    assert len(signed) == len(positive) == 3
    for im in signed:
      vmin, vmax = im.get_clim()
      assert vmin == -vmax
      np.testing.assert_allclose(vmax, 7.5)
      assert im.get_cmap().name == plotting.SIGNED_CMAP
      # 0 maps to the centre of the diverging colormap.
      assert im.norm(0.0) == pytest.approx(0.5)
    for im in positive:
      assert im.get_clim() == pytest.approx((0.0, gradcam.max()))
      assert im.get_cmap().name == plotting.POSITIVE_CMAP
    # Colorbars span the rows' limits.
    lims = sorted(tuple(cb.get_ylim()) for cb in colorbars)
    np.testing.assert_allclose(lims, sorted([(-7.5, 7.5), (0.0, gradcam.max())]))
  finally:
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_heatmaps_signed_override_and_map_scale():
  rng = np.random.default_rng(3)
  images = rng.uniform(size=(2, 4, 4))
  phi = np.abs(rng.normal(size=(2, 4, 4))) + 0.1  # all positive but declared signed
  phi[1] *= 10.0
  fig = plotting.plot_heatmaps(images, {"shap": phi}, None, signed={"shap": True}, scale="map")
  try:
    for j, im in enumerate(_map_images(fig)[1]):
      assert im.get_clim() == (-1.0, 1.0)  # each map divided by its own max|φ|
      np.testing.assert_allclose(np.asarray(im.get_array()).max(), 1.0)
  finally:
    import matplotlib.pyplot as plt
    plt.close(fig)
  with pytest.raises(ValueError, match="scale"):
    plotting.plot_heatmaps(images, {"shap": phi}, None, scale="global")
  # Greyscale inputs get the outline (a contour set), RGB inputs a blended greyscale underlay.
  for imgs, contour, layers in ((images, True, 1), (np.stack([images] * 3, -1), False, 2)):
    fig = plotting.plot_heatmaps(imgs, {"shap": phi}, None)
    ax = next(iter(_map_images(fig).values()))[0].axes
    assert bool(ax.collections) == contour and len(ax.images) == layers
    plotting._pyplot().close(fig)
  with pytest.raises(ValueError, match="overlay"):
    plotting.plot_heatmaps(images, {"shap": phi}, None, overlay="alpha")


def test_color_limits():
  assert plotting.color_limits(np.array([[-3.0, 1.0]]), signed=True) == (-3.0, 3.0)
  assert plotting.color_limits(np.array([0.5, 2.0]), signed=False) == (0.0, 2.0)
  assert plotting.color_limits(np.zeros(3), signed=True) == (-1.0, 1.0)


def test_bar_chart_for_1d_attributions(tmp_path):
  rng = np.random.default_rng(4)
  a, b = rng.normal(size=(2, 6)), rng.normal(size=(2, 6))
  names = [f"feature number {i}" for i in range(6)]
  fig = plotting.plot_attribution_bars({"ce": a, "idexpo": b}, None, feature_names=names,
                                       titles=["x0", "x1"], top_k=4)
  try:
    grid = [[ax for ax in fig.axes if ax.get_subplotspec().rowspan.start == r] for r in (0, 1)]
    for r, phi in enumerate((a, b)):
      for j, ax in enumerate(sorted(grid[r], key=lambda ax: ax.get_subplotspec().colspan.start)):
        bars = ax.containers[0]
        # Brute-force reference: the 4 features of largest max|φ| over both rows, top first.
        top = sorted(range(6), key=lambda f: -max(abs(a[j, f]), abs(b[j, f])))[:4]
        by_y = sorted(bars.patches, key=lambda p: -p.get_y())
        np.testing.assert_allclose([p.get_width() for p in by_y], phi[j, top])
        ticks = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())),
                       key=lambda t: -t[0])
        assert [t for _, t in ticks] == [names[f] for f in top]  # top to bottom
        for p in bars.patches:  # red positive, blue negative
          assert (p.get_facecolor()[0] > p.get_facecolor()[2]) == (p.get_width() >= 0)
        lo, hi = ax.get_xlim()  # symmetric, shared by the rows of an example
        assert lo == pytest.approx(-hi)
        assert hi == pytest.approx(1.05 * max(np.abs(a[j]).max(), np.abs(b[j]).max()))
  finally:
    import matplotlib.pyplot as plt
    plt.close(fig)
  assert _is_png(plotting.plot_attribution_bars({"one": a[0]}, str(tmp_path / "b.png")))
  with pytest.raises(ValueError, match="feature_names"):
    plotting.plot_attribution_bars({"ce": a}, None, feature_names=["x"])
  with pytest.raises(ValueError, match="one shape"):
    plotting.plot_attribution_bars({"ce": a, "bad": np.zeros((2, 5))}, None)


def test_text_overlaps_detects_overprinting():
  plt = plotting._pyplot()
  fig, ax = plt.subplots()
  ax.text(0.5, 0.5, "first label")
  ax.text(0.5, 0.5, "second label")
  assert ("first label", "second label") in text_overlaps(fig)
  plt.close(fig)


def test_no_overlapping_text_in_any_figure():
  plt = plotting._pyplot()
  rng = np.random.default_rng(5)
  figs = {
      "heatmaps": plotting.plot_heatmaps(
          rng.uniform(size=(6, 8, 8)),
          {"pretrained · gradcam": np.abs(rng.normal(size=(6, 8, 8))),
           "idexpo_kernelshap · kernel_shap": rng.normal(size=(6, 8, 8)),
           "CE checkpoint\nIns 0.88 Del 0.52": rng.normal(size=(6, 8, 8)) * 1e-4},
          None, titles=[f"label {i}" for i in range(6)]),
      "bars": plotting.plot_attribution_bars(
          {"CE checkpoint\nIns 0.88 Del 0.52": rng.normal(size=(3, 30)),
           "ID-ExpO\nIns 0.95 Del 0.40": rng.normal(size=(3, 30))}, None,
          feature_names=[f"worst concave points {i}" for i in range(30)],
          titles=["label 0", "label 1", "label 0"], top_k=10),
      # Narrow panels with small, differently scaled values (crowded x tick labels).
      "bars_scales": plotting.plot_attribution_bars(
          {"CE": rng.normal(size=(4, 13)) * [[0.5], [0.06], [0.3], [0.004]],
           "ID-ExpO": rng.normal(size=(4, 13)) * [[0.5], [0.06], [0.3], [0.004]]}, None,
          feature_names=[f"od280/od315_of_diluted_wines_{i}" for i in range(13)]),
      # Seven labelled points within 0.2% of each other (the study's crowded λ grids).
      "scatter": plotting.plot_scatter(
          {"CE": ([0.963], [0.728]),
           "ExpO-Stability": ([0.963, 0.9625, 0.955], [0.727, 0.7275, 0.73]),
           "Gradient penalty": ([0.9632, 0.9628, 0.95], [0.7268, 0.7272, 0.63])}, None,
          annotations={"CE": ["λ=0"], "ExpO-Stability": ["λ=3", "λ=10", "λ=30"],
                       "Gradient penalty": ["λ=1e-05", "λ=3e-05", "λ=0.0003"]},
          connect=True, title="digits × lime"),
      "curves": plotting.plot_curves(np.linspace(0, 1, 5), {"a": rng.uniform(size=(4, 5))},
                                     None, vline=0.5, title="insertion"),
  }
  for name, fig in figs.items():
    assert text_overlaps(fig) == [], name
    plt.close(fig)
