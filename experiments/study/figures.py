"""Figures and tables of the study (the ID-ExpO paper's Figures 2–5), from `run_study` outputs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {"ce": "CE", "idexpo": "ID-ExpO", "expo_fidelity": "ExpO-Fidelity",
          "expo_stability": "ExpO-Stability", "gradient": "Gradient penalty"}
MARKERS = {"ce": "o", "idexpo": "*", "expo_fidelity": "s", "expo_stability": "^", "gradient": "D"}


def _selected(results: dict, metric: str):
  """`{method: (acc means, metric means)}` over η of the selected configurations (test)."""
  out = {}
  for eta, sel in results["selection"].items():
    for m, c in sel.items():
      acc, val = out.setdefault(m, ([], []))
      acc.append(c["test"]["accuracy"]["mean"])
      val.append(c["test"][metric]["mean"])
  return out


def plot_metric_vs_accuracy(results: dict, panels, path: str) -> str:
  """Metrics against test accuracy of each method's η-selected models (Figures 2 and 3).

  Args:
    results: `run_study` results.
    panels: `[(metric, transform, label)]`, e.g. `("del", lambda v: 1 − v, "1 − Del")`.
    path: output PNG.
  """
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
  for ax, (metric, fn, label) in zip(axes[0], panels):
    for m, (acc, val) in _selected(results, metric).items():
      order = np.argsort(acc)
      ax.plot(np.asarray(acc)[order], fn(np.asarray(val))[order], marker=MARKERS.get(m, "o"),
              ls="-" if m != "ce" else "", ms=9 if m == "idexpo" else 6, label=LABELS.get(m, m))
    ax.set_xlabel("test accuracy")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=8)
  fig.suptitle(f"{results['dataset']} × {results['explainer']}: models selected on validation "
               f"for η ∈ {{{', '.join(results['selection'])}}}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def plot_change(results: dict, artefacts: dict, path: str) -> str:
  """Per-example change of Ins and Del from the CE checkpoint (Figure 4), selected at main η."""
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


def _show(ax, img):
  img = np.asarray(img)
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  if img.ndim == 1:
    img = img[None, :]
  if img.ndim == 3:
    img = (img - img.min()) / (np.ptp(img) + 1e-8)
  ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")


def _unit_map(phi: np.ndarray, x_shape, cell: int) -> np.ndarray:
  """An attribution over units as an image-shaped map (tabular: one row)."""
  if len(x_shape) != 3:
    return phi.reshape(1, -1)
  if phi.ndim == 2:
    return phi
  h, w = x_shape[:2]
  side = -(-w // cell)
  grid = phi.reshape(-1, side)
  return np.repeat(np.repeat(grid, cell, 0), cell, 1)[:h, :w]


def plot_examples(results: dict, artefacts: dict, path_maps: str, path_curves: str):
  """Heatmaps and insertion/deletion curves of the same test inputs per method (Figure 5)."""
  fig_data, chosen = artefacts["figure"], artefacts["chosen"][results["main_eta"]]
  entries = [("CE checkpoint", fig_data["pretrained"])] + [
      (f"{LABELS.get(m, m)}", fig_data[(m, c["weight"])]) for m, c in chosen.items()]
  x = fig_data["x"]
  cell = results["config"]["explainer"].get("cell", 1)
  n = len(x)
  fig, axes = plt.subplots(n, len(entries) + 1, figsize=(1.9 * (len(entries) + 1), 1.9 * n),
                           squeeze=False)
  for i in range(n):
    _show(axes[i][0], x[i])
    axes[i][0].set_title(f"label {fig_data['label'][i]}", fontsize=7)
    for j, (name, e) in enumerate(entries, start=1):
      axes[i][j].imshow(_unit_map(e["phi"][i], x.shape[1:], cell), cmap="jet",
                        interpolation="nearest")
      axes[i][j].set_title(f"{name}\nIns {e['ins_score'][i]:.2f} Del {e['del_score'][i]:.2f}",
                           fontsize=6)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  fig.savefig(path_maps, dpi=120)
  plt.close(fig)
  fig, axes = plt.subplots(n, 2, figsize=(7.5, 2.2 * n), squeeze=False)
  for i in range(n):
    for name, e in entries:
      axes[i][0].plot(e["fractions"], e["ins"][i], label=name)
      axes[i][1].plot(e["fractions"], e["del"][i], label=name)
    axes[i][0].set_ylabel(f"example {i}\np(target)", fontsize=8)
  axes[0][0].set_title("insertion", fontsize=9)
  axes[0][1].set_title("deletion", fontsize=9)
  axes[-1][0].set_xlabel("fraction of units inserted")
  axes[-1][1].set_xlabel("fraction of units deleted")
  axes[0][1].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path_curves, dpi=120)
  plt.close(fig)
  return path_maps, path_curves


def write_all(results: dict, artefacts: dict, stem: str) -> list[str]:
  """Writes every figure under `stem` and returns the paths."""
  paths = [
      plot_metric_vs_accuracy(results, [("ins", lambda v: v, "Ins (higher is better)"),
                                        ("del", lambda v: 1.0 - v, "1 − Del (higher is better)")],
                              f"{stem}_fig2_ins_del_vs_acc.png"),
      plot_metric_vs_accuracy(results, [("sensitivity_n", lambda v: v,
                                         f"sensitivity-n (n = {results['sensitivity_n']['n']})")],
                              f"{stem}_fig3_sensitivity_vs_acc.png"),
      plot_change(results, artefacts, f"{stem}_fig4_change.png"),
      *plot_examples(results, artefacts, f"{stem}_fig5_heatmaps.png", f"{stem}_fig5_curves.png"),
  ]
  return paths


def markdown_table(results: dict, eta=None) -> str:
  """The test table (mean ± std over seeds) of the models selected at `η` (default: main η)."""
  eta = results["main_eta"] if eta is None else eta
  sel = results["selection"][str(float(eta))]
  cols = [("accuracy", "Acc"), ("ins", "Ins ↑"), ("del", "Del ↓"), ("ins_trapezoid", "Ins (trap) ↑"),
          ("del_trapezoid", "Del (trap) ↓"), ("sensitivity_n", "Sens-n ↑")]
  lines = [f"| method | λ | {' | '.join(c[1] for c in cols)} |",
           "|---|---|" + "---|" * len(cols)]
  for m, c in sel.items():
    t = c["test"]
    cells = [f"{t[k]['mean']:.3f} ± {t[k]['std']:.3f}" for k, _ in cols]
    flag = " (below floor)" if c["below_floor"] else ""
    lines.append(f"| {LABELS.get(m, m)}{flag} | {c['weight']:g} | {' | '.join(cells)} |")
  return "\n".join(lines)
