"""Tests for idexpo_jax.plotting: PNG files are written and bad shapes raise clear errors."""

import numpy as np
import pytest

from idexpo_jax import plotting

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
