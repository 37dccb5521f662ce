"""Figures and tables of the study (the ID-ExpO paper's Figures 2–5), from `run_study` outputs."""

from __future__ import annotations

from typing import Optional

import matplotlib
import numpy as np

from idexpo_jax import plotting

matplotlib.use("Agg")

LABELS = {"ce": "CE", "idexpo": "ID-ExpO", "expo_fidelity": "ExpO-Fidelity",
          "expo_stability": "ExpO-Stability", "gradient": "Gradient penalty"}


def _grid_series(results: dict, metric: str, transform=lambda v: v):
  """`({method: (test acc, metric)}, {method: λ labels})` over each method's weight grid."""
  series, notes = {}, {}
  for g in results["grid"]:
    acc, val = series.setdefault(LABELS.get(g["method"], g["method"]), ([], []))
    acc.append(g["test"]["accuracy"]["mean"])
    val.append(float(transform(g["test"][metric]["mean"])))
    notes.setdefault(LABELS.get(g["method"], g["method"]), []).append(f"λ={g['weight']:g}")
  return series, notes


def plot_metric_vs_accuracy(results: dict, metric: str, label: str, path: str, *,
                            transform=lambda v: v) -> str:
  """A metric against test accuracy along each method's weight grid (Figures 2 and 3).

  Every weight of the grid is shown (seed means on the test split, for display only; the
  tables' weights are chosen on validation), so the points trace each method's trade-off.
  """
  series, notes = _grid_series(results, metric, transform)
  return plotting.plot_scatter(
      series, path, xlabel="test accuracy", ylabel=label, annotations=notes, connect=True,
      title=f"{results['dataset']} × {results['explainer']} (mean of {len(results['seeds'])} "
            f"seeds)")


def plot_change(results: dict, artefacts: dict, path: str) -> str:
  """Per-example change of Ins and Del from the CE checkpoint (Figure 4), selected at main η.

  One panel per method with the percentage of examples in each quadrant (not a plain scatter,
  so not `plotting.plot_scatter`).
  """
  import matplotlib.pyplot as plt
  before = artefacts["before"]
  b_ins, b_del = np.stack(before["test_ins"]), np.stack(before["test_del"])
  methods = list(results["per_example_change"])
  fig, axes = plt.subplots(1, len(methods), figsize=(3.3 * len(methods), 3.4), squeeze=False)
  for ax, m in zip(axes[0], methods):
    ch = results["per_example_change"][m]
    rec = artefacts["per_seed"][(m, ch["weight"])]
    d_ins = (np.stack(rec["test_ins"]) - b_ins).ravel()
    d_del = (np.stack(rec["test_del"]) - b_del).ravel()
    ax.scatter(d_ins, d_del, s=3, alpha=0.4)
    ax.axhline(0, c="k", lw=0.6)
    ax.axvline(0, c="k", lw=0.6)
    q = ch["quadrants_pct"]
    ax.set_title(f"{LABELS.get(m, m)} (λ={ch['weight']:g})", fontsize=9)
    kw = dict(transform=ax.transAxes, fontsize=8)
    ax.text(0.98, 0.02, f"{q['both_better']:.0f}%", ha="right", va="bottom", color="g", **kw)
    ax.text(0.02, 0.98, f"{q['both_worse']:.0f}%", ha="left", va="top", color="r", **kw)
    ax.text(0.98, 0.98, f"{q['ins_only']:.0f}%", ha="right", va="top", **kw)
    ax.text(0.02, 0.02, f"{q['del_only']:.0f}%", ha="left", va="bottom", **kw)
    ax.set_xlabel("Δ Ins (after − before)")
  axes[0][0].set_ylabel("Δ Del (after − before)")
  fig.suptitle(f"{results['dataset']} × {results['explainer']}: per-example change vs the CE "
               f"checkpoint (all seeds; η = {results['main_eta']:g})", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def _display(x: np.ndarray) -> np.ndarray:
  """Images `(N, H, W[, C])` scaled to [0, 1] per example (min–max)."""
  x = np.asarray(x, np.float64)
  axes = tuple(range(1, x.ndim))
  lo, hi = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
  return (x - lo) / np.where(hi > lo, hi - lo, 1.0)


def feature_names(dataset: str, d: int) -> list[str]:
  """The `d` feature names of a scikit-learn tabular set (`x0..` if unknown)."""
  from sklearn import datasets
  loader = getattr(datasets, f"load_{dataset}", None)
  names = list(loader().feature_names) if loader is not None else []
  return [str(n) for n in names] if len(names) == d else [f"x{i}" for i in range(d)]


def plot_examples(results: dict, artefacts: dict, stem: str) -> list[str]:
  """Explanations of the same test inputs under each method and their mean Ins/Del curves
  (Fig. 5).

  Explanations: one row per method (CE checkpoint first, then the models selected at the main η),
  labelled with the mean Ins/Del of the shown examples; images as heatmaps (signed LIME/SHAP
  weights on a diverging scale centred at 0, Grad-CAM on a sequential one, colorbar per row),
  tabular inputs as signed bar charts of the top features. Curves: mean ± s.e.m. over the whole
  test split (seed 0), with the scored range (`fraction`) marked.
  """
  from idexpo_jax.core.masking import grid_segments
  fig_data, chosen = artefacts["figure"], artefacts["chosen"][results["main_eta"]]
  entries = [("CE checkpoint", fig_data["pretrained"])] + [
      (LABELS.get(m, m), fig_data[(m, c["weight"])]) for m, c in chosen.items()]
  x = np.asarray(fig_data["x"])
  titles = [f"label {y}" for y in fig_data["label"]]
  tabular = x.ndim == 2
  cell = results["config"]["explainer"].get("cell")
  segments, maps = None, {}
  for name, e in entries:
    phi = np.asarray(e["phi"])
    if phi.ndim == 2 and not tabular:  # unit scores over grid cells of images
      segments = np.asarray(grid_segments(x.shape[1], x.shape[2], cell))
    elif phi.ndim == 4:  # pixel maps with a channel axis
      phi = phi[..., 0]
    maps[f"{name}\nIns {np.mean(e['ins_score']):.2f} Del {np.mean(e['del_score']):.2f}"] = phi
  path = f"{stem}_fig5_heatmaps.png"
  if tabular:
    paths = [plotting.plot_attribution_bars(
        maps, path, titles=titles, top_k=10,
        feature_names=feature_names(results["dataset"], x.shape[1]))]
  else:
    paths = [plotting.plot_heatmaps(_display(x), maps, path, segments=segments, titles=titles,
                                    signed=results["explainer"] != "gradcam")]
  fraction = results["config"]["eval"]["fraction"]
  for kind, what in (("ins", "inserted"), ("del", "deleted")):
    paths.append(plotting.plot_curves(
        entries[0][1]["fractions"], {name: e[f"{kind}_all"] for name, e in entries},
        f"{stem}_fig5_{kind}_curves.png", vline=fraction, xlabel=f"fraction of units {what}",
        title=f"{results['dataset']} × {results['explainer']}: "
              f"{'insertion' if kind == 'ins' else 'deletion'} (test, seed {results['seeds'][0]})"))
  return paths


def figure_arrays(results: dict, artefacts: dict) -> dict:
  """The arrays behind Figs. 4 and 5 as a flat `{name: array}` dict for `np.savez_compressed`
  (`load_artefacts` rebuilds what `write_all` needs)."""
  out = {"x": np.asarray(artefacts["figure"]["x"]),
         "label": np.asarray(artefacts["figure"]["label"])}
  keys = {"pretrained": artefacts["figure"]["pretrained"]}
  for m, c in artefacts["chosen"][results["main_eta"]].items():
    keys[f"{m}@{c['weight']!r}"] = artefacts["figure"][(m, c["weight"])]
    rec = artefacts["per_seed"][(m, c["weight"])]
    out[f"change/{m}@{c['weight']!r}/test_ins"] = np.stack(rec["test_ins"])
    out[f"change/{m}@{c['weight']!r}/test_del"] = np.stack(rec["test_del"])
  out["change/before/test_ins"] = np.stack(artefacts["before"]["test_ins"])
  out["change/before/test_del"] = np.stack(artefacts["before"]["test_del"])
  for k, e in keys.items():
    for field, v in e.items():
      out[f"figure/{k}/{field}"] = np.asarray(v)
  return out


def load_artefacts(results: dict, arrays) -> dict:
  """The inverse of `figure_arrays`: the `artefacts` that `write_all` reads."""
  fig = {"x": arrays["x"], "label": arrays["label"]}
  chosen = {results["main_eta"]: {}}
  per_seed = {}
  for name in arrays:
    parts = name.split("/")
    if parts[0] == "figure":
      key = parts[1]
      if key != "pretrained":
        m, w = key.split("@")
        key = (m, float(w))
        chosen[results["main_eta"]][m] = {"weight": float(w)}
      fig.setdefault(key, {})[parts[2]] = arrays[name]
    elif parts[0] == "change" and parts[1] != "before":
      m, w = parts[1].split("@")
      per_seed.setdefault((m, float(w)), {})[parts[2]] = list(arrays[name])
  before = {k: list(arrays[f"change/before/{k}"]) for k in ("test_ins", "test_del")}
  order = list(results["per_example_change"])  # the methods in the run's order
  chosen[results["main_eta"]] = {m: chosen[results["main_eta"]][m] for m in order
                                 if m in chosen[results["main_eta"]]}
  return {"figure": fig, "chosen": chosen, "per_seed": per_seed, "before": before}


def write_all(results: dict, artefacts: Optional[dict], stem: str) -> list[str]:
  """Writes every figure under `stem` and returns the paths; without `artefacts` (a `--replot`
  of a run that saved no arrays) only Figs. 2 and 3, which the JSON results hold."""
  paths = [
      plot_metric_vs_accuracy(results, "ins", "Ins (higher is better)",
                              f"{stem}_fig2_ins_vs_acc.png"),
      plot_metric_vs_accuracy(results, "del", "1 − Del (higher is better)",
                              f"{stem}_fig2_del_vs_acc.png", transform=lambda v: 1.0 - v),
      plot_metric_vs_accuracy(results, "sensitivity_n",
                              f"sensitivity-n (n = {results['sensitivity_n']['n']})",
                              f"{stem}_fig3_sensitivity_vs_acc.png"),
  ]
  if artefacts is not None:
    paths += [plot_change(results, artefacts, f"{stem}_fig4_change.png"),
              *plot_examples(results, artefacts, stem)]
  return paths


def markdown_table(results: dict, eta=None) -> str:
  """The test table (mean ± std over seeds) of the models selected at `η` (default: main η)."""
  eta = results["main_eta"] if eta is None else eta
  sel = results["selection"][str(float(eta))]
  cols = [("accuracy", "Acc"), ("ins", "Ins ↑"), ("del", "Del ↓"),
          ("ins_trapezoid", "Ins (trap) ↑"),
          ("del_trapezoid", "Del (trap) ↓"), ("sensitivity_n", "Sens-n ↑")]
  lines = [f"| method | λ | {' | '.join(c[1] for c in cols)} |",
           "|---|---|" + "---|" * len(cols)]
  for m, c in sel.items():
    t = c["test"]
    cells = [f"{t[k]['mean']:.3f} ± {t[k]['std']:.3f}" for k, _ in cols]
    flag = " (below floor)" if c["below_floor"] else ""
    lines.append(f"| {LABELS.get(m, m)}{flag} | {c['weight']:g} | {' | '.join(cells)} |")
  return "\n".join(lines)
