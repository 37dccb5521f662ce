"""The UCI ExpO experiment: its LIME metrics, early stopping and a smoke run of the driver."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("mlxtend")

from experiments.expo_uci import main as expo_uci
from experiments.expo_uci.configs import smoke
from idexpo_jax.explainers.local_linear import local_linear_fit

D = 3


def curved(xb):
  return jnp.sin(xb[:, 0]) * xb[:, 1] + xb[:, 2] ** 2


@pytest.mark.parametrize("around_mean", [True, False])
def test_lime_metrics_against_direct_fits(around_mean):
  x = jnp.asarray([0.3, -0.8, 1.1], jnp.float32)
  center = jnp.asarray([0.1, 0.0, -0.2], jnp.float32)
  key = jax.random.key(0)
  n = 64
  out = expo_uci.lime_metrics(curved, x, key, center=center if around_mean else None,
                              n_samples=n, n_neighbors=4, sigma=0.1, ridge=1.0, redraw=True)
  k_eps, k_nb, k_re = jax.random.split(key, 3)
  eps = jax.random.normal(k_eps, (n - 1, D))
  xs = x + 0.1 * jax.random.normal(k_nb, (4, D))

  def explain(p, e):
    base = center if around_mean else p
    return local_linear_fit(curved, p, jnp.concatenate([p[None], base + e]), ridge=1.0)

  c0, i0 = explain(x, eps)
  cs = [explain(p, eps)[0] for p in xs]  # the same draws at every x' (common random numbers)
  f = lambda p: float(curved(p[None])[0])  # noqa: E731
  np.testing.assert_allclose(out["pf"], (float(x @ c0 + i0) - f(x)) ** 2, rtol=1e-4, atol=1e-7)
  nf = np.mean([(float(p @ c0 + i0) - f(p)) ** 2 for p in xs])
  np.testing.assert_allclose(out["nf"], nf, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(out["s"], np.mean([np.sum((c - c0) ** 2) for c in cs]), rtol=1e-3,
                             atol=1e-8)
  c2, _ = explain(x, jax.random.normal(k_re, (n - 1, D)))
  np.testing.assert_allclose(out["s_redraw"], np.sum((c2 - c0) ** 2), rtol=1e-3, atol=1e-8)
  assert out["s"] > 0 and out["s_redraw"] > 0


def test_affine_model_scores_zero():
  affine = lambda xb: xb @ jnp.asarray([1.0, -2.0, 0.5]) + 0.1  # noqa: E731
  x = jnp.asarray([0.3, -0.8, 1.1], jnp.float32)
  for center in (None, jnp.zeros(D)):
    out = expo_uci.lime_metrics(affine, x, jax.random.key(1), center=center, n_samples=50,
                                n_neighbors=3, sigma=0.1, ridge=0.0, redraw=True)
    for v in out.values():
      np.testing.assert_allclose(v, 0, atol=1e-6)
    quick = expo_uci.lime_metrics(curved, x, jax.random.key(1), center=center, n_samples=50,
                                  n_neighbors=3, sigma=0.1, ridge=0.0, redraw=False,
                                  stability=False)
    full = expo_uci.lime_metrics(curved, x, jax.random.key(1), center=center, n_samples=50,
                                 n_neighbors=3, sigma=0.1, ridge=0.0, redraw=False)
    assert np.isnan(quick["s"])
    np.testing.assert_allclose([quick["pf"], quick["nf"]], [full["pf"], full["nf"]], rtol=1e-5)


def test_select_c_rule():
  cfg = smoke.get_config()
  val_mse = np.array([1.5, 1.05, 1.0])
  metric = np.array([0.01, 0.02, 0.05])
  assert expo_uci.select_c(cfg, val_mse, metric, 1.0) == 1   # lowest metric within 10 %
  assert expo_uci.select_c(cfg, val_mse + 1, metric, 1.0) == 2  # none within: lowest MSE


def test_smoke_run_writes_every_cell(tmp_path):
  """Early stopping restores the best validation epoch; the JSON has the issue's structure."""
  cfg = smoke.get_config()
  cfg.methods = ("none", "expo_fidelity")
  cfg.reg.c_grid = (0.1, 0.05)  # 0.05: the reference's final c for autompgs (`at_paper_c`)
  cfg.out_dir = str(tmp_path)
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam fails under the tests' strict mode
    expo_uci.run(cfg)
  out = json.loads((tmp_path / "metrics.json").read_text())
  r = out["autompgs"]
  assert set(r) == {"none", "expo_fidelity"}
  for method, cells in r.items():
    for cell in expo_uci.CELLS:
      c = cells[cell]
      assert c["n"] == 2 and np.isfinite(c["mean"]) and c["sd"] >= 0
      assert ("paper" in c) == (cell in expo_uci.PAPER[method])
    assert all(cfg.train.min_epochs <= e <= cfg.train.max_epochs for e in cells["epochs"])
    assert all(b <= e for b, e in zip(cells["best_epoch"], cells["epochs"]))
  assert r["expo_fidelity"]["lime_nf"]["paper"] == 0.011
  assert set(r["expo_fidelity"]["chosen_c"]) <= set(cfg.reg.c_grid)
  assert (tmp_path / "table.md").read_text().count("\n| lime_nf |") == 1  # one row per cell
  # The reference's c is evaluated for every trial; a trial that chose it reports the same model.
  fixed, fid = r["expo_fidelity"]["at_paper_c"], r["expo_fidelity"]
  assert fixed["c"] == 0.05 and fixed["lime_nf"]["n"] == 2 and r["none"]["at_paper_c"] is None
  for t, c in enumerate(fid["chosen_c"]):
    if c == 0.05:
      assert fixed["per_trial"][t] == fid["per_trial"][t]
  np.testing.assert_allclose(fixed["mse"]["mean"],
                             np.mean([p["mse"] for p in fixed["per_trial"]]), rtol=1e-12)
  assert "| ExpO-Fidelity | 0.05 |" in (tmp_path / "table.md").read_text()
