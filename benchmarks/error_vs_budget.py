"""KernelSHAP error vs budget: RMSE to exact Shapley values, ours vs shap vs captum.

Usage: `python -m benchmarks.error_vs_budget [--quick]` (also `python -m benchmarks.run --sections
error_vs_budget`); saves the section `error_vs_budget` in `benchmarks/results.json` and
`docs/benchmarks.md` (`common.save_section`) and writes `docs/error_vs_budget.png`.

Two games with d = 16 units, where the exact Shapley values come from all `2^16` coalitions
(model values in float32 as every estimator sees them, the Shapley formula in float64):

* `tabular_mlp`: an `MLP` 16-50-30-2 trained (Adam, full batch) on the first 16 standardised
  features of breast cancer (the ten "mean" features and six "standard error" ones); one unit per
  feature, baseline = the training mean.
* `image_cells`: a `SmallCNN` (width 8) trained on 16×16 digits; 16 grid cells of 4×4 pixels,
  baseline = the training mean.

Every estimator explains the softmax probability of the predicted class of the same float32
model through the same game `v(z) = p_t(apply_unit_mask(x, z, baseline))`: ours through
`kernel_shap` itself; `shap.KernelExplainer(v, zeros((1, 16)))` on the all-ones row
(`nsamples = budget`, `l1_reg=False`); captum `KernelShap(v)` on the all-ones row with the
all-zeros baseline (`n_samples = budget`, `perturbations_per_eval = budget`). The budget counts
coalition evaluations; each method evaluates `v(1)` and `v(0)` besides (ours: `n_samples + 2`).
`control_variate="additive"`/`"pairwise"` add no model evaluation; their extra arithmetic (the
surrogate fit and its `2^16`-coalition enumeration) is reported in forward-pass equivalents from
XLA's flop counts. RMSE is over units, explained rows and seeds (`SIZES`: 8 × 8 on the tabular
case, 4 × 4 on the CNN). The leverage and i.i.d. samplers were measured in an earlier round
(git history of this file's section) and are not rerun.
"""

from __future__ import annotations

from typing import Optional

import math
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from idexpo_jax.explainers.kernel_shap import kernel_shap
from idexpo_jax.core.masking import apply_unit_mask, grid_segments
from idexpo_jax.models import MLP, SmallCNN, functional, predictor_fn

BUDGETS = (64, 128, 256, 512, 1024, 2048, 4096)
# Our estimators: name -> kernel_shap options. "ours" is the library default.
ESTIMATORS = {"ours": {}, "ours_pairwise_cv": dict(control_variate="pairwise"),
              "ours_kernel_cv": dict(control_variate="additive")}
N_UNITS = 16
# Explained rows × seeds per case: the tabular RMSEs are the closer call, so more of both there.
SIZES = {"tabular_mlp": (8, 8), "image_cells": (4, 4)}
# The packages' estimates do not depend on our code: cached here (float32), reused while the
# exact Shapley values of the case (model, rows) are unchanged.
CACHE = os.path.join(os.path.dirname(__file__), "error_vs_budget_packages.npz")
N_BOOT = 1000


def _log(msg: str) -> None:
  print(f"[error_vs_budget {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _train(model, x, y, *, steps: int, lr: float, batch: int, seed: int):
  """Adam on the cross-entropy; returns `(graphdef, params, rest)`."""
  graphdef, params, rest = functional(model)
  opt = optax.adam(lr)
  state = opt.init(params)

  @jax.jit
  def step(params, state, xb, yb):
    def loss(p):
      logits = predictor_fn(graphdef, p, rest)(xb)
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    g = jax.grad(loss)(params)
    upd, state = opt.update(g, state, params)
    return optax.apply_updates(params, upd), state

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    idx = rng.choice(len(x), size=min(batch, len(x)), replace=False)
    params, state = step(params, state, jnp.asarray(x[idx]), jnp.asarray(y[idx]))
  return graphdef, params, rest


def make_case(name: str, *, n_rows: int, seed: int = 0) -> dict:
  """The model, rows, targets, baseline and segments of one case (module docstring)."""
  if name == "tabular_mlp":
    from idexpo_jax.data.sklearn_data import load_tabular_classification
    data = load_tabular_classification("breast_cancer", seed=seed)
    xtr, xte = data.train.x[:, :N_UNITS], data.test.x[:, :N_UNITS]
    model = MLP(N_UNITS, data.num_classes, hidden=(50, 30), rngs=nnx.Rngs(seed))
    parts = _train(model, xtr, data.train.y, steps=300, lr=1e-2, batch=len(xtr), seed=seed)
    baseline, segments = np.asarray(data.mean[:N_UNITS], np.float32), None
  elif name == "image_cells":
    from idexpo_jax.data.sklearn_data import load_digits_images
    data = load_digits_images(size=16, seed=seed)
    xtr, xte = data.train.x, data.test.x
    model = SmallCNN(1, data.num_classes, width=8, rngs=nnx.Rngs(seed))
    parts = _train(model, xtr, data.train.y, steps=300, lr=3e-3, batch=128, seed=seed)
    baseline, segments = np.asarray(data.mean, np.float32), grid_segments(16, 16, 4)
  else:
    raise ValueError(f"unknown case {name!r}")
  logits_fn = predictor_fn(*parts)
  acc = float(np.mean(np.argmax(logits_fn(jnp.asarray(xte)), -1) == data.test.y))
  x = xte[:n_rows]
  targets = np.asarray(jnp.argmax(logits_fn(jnp.asarray(x)), -1), np.int32)
  return dict(name=name, logits_fn=logits_fn, x=x, targets=targets, baseline=baseline,
              segments=segments, test_accuracy=acc)


def game(case: dict, i: int):
  """`v(Z)`: NumPy `(n, 16)` 0/1 -> `(n,)` float64 probabilities of the target (jitted, padded)."""
  x, t = jnp.asarray(case["x"][i]), int(case["targets"][i])

  @jax.jit
  def values(z):
    xs = apply_unit_mask(x, z, case["baseline"], segments=case["segments"])
    return jax.nn.softmax(case["logits_fn"](xs), axis=-1)[:, t]

  def v(z):
    z = np.asarray(z, np.float32)
    n = len(z)
    size = 1 << max(n - 1, 1).bit_length()  # pad to a power of two: few compilations
    zp = np.concatenate([z, np.zeros((size - n, z.shape[1]), np.float32)])
    return np.asarray(values(jnp.asarray(zp)), np.float64)[:n]
  return v


def exact_shapley(v) -> np.ndarray:
  """Shapley values of `v` over all `2^16` coalitions (subset formula in float64)."""
  d = N_UNITS
  codes = np.arange(2 ** d)
  z = ((codes[:, None] >> np.arange(d)) & 1).astype(np.float32)
  vals = np.concatenate([v(z[s:s + 8192]) for s in range(0, len(z), 8192)])
  k = z.sum(1).astype(int)
  fact = np.array([math.factorial(j) for j in range(d + 1)], np.float64)
  wt = fact[:d] * fact[d - 1::-1] / fact[d]
  phi = np.zeros(d)
  for i in range(d):
    without = z[:, i] == 0
    phi[i] = np.sum(wt[k[without]] * (vals[codes[without] | (1 << i)] - vals[codes[without]]))
  return phi


def ours(case: dict, budget: int, keys, options: dict) -> np.ndarray:
  """`kernel_shap` on every row and key: `(rows, seeds, 16)`."""
  def one(x, t, k):
    return kernel_shap(case["logits_fn"], x, t, k, segments=case["segments"],
                       baseline=case["baseline"], n_samples=budget, **options)
  fn = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, None, 0)), in_axes=(0, 0, None)))
  return np.asarray(fn(jnp.asarray(case["x"]), jnp.asarray(case["targets"]), keys))


def cv_cost(case: dict, budget: int, options: dict) -> float:
  """Extra flops of `options` over `control_variate=False`, in forward passes of one input."""
  x, t, k = jnp.asarray(case["x"][0]), int(case["targets"][0]), jax.random.key(0)

  def flops(fn, *args):
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))

  def ks(opts):
    return lambda x: kernel_shap(case["logits_fn"], x, t, k, segments=case["segments"],
                                 baseline=case["baseline"], n_samples=budget, **opts)
  forward = flops(lambda xb: case["logits_fn"](xb), x[None])
  return (flops(ks(options), x) - flops(ks({**options, "control_variate": False}), x)) / forward


def shap_estimates(case: dict, budget: int, seeds: int) -> np.ndarray:
  import shap
  out = np.zeros((len(case["x"]), seeds, N_UNITS))
  for i in range(len(case["x"])):
    explainer = shap.KernelExplainer(game(case, i), np.zeros((1, N_UNITS)))
    for s in range(seeds):
      np.random.seed(s)
      out[i, s] = explainer.shap_values(np.ones((1, N_UNITS)), nsamples=budget, l1_reg=False,
                                        silent=True)[0]
  return out


def captum_estimates(case: dict, budget: int, seeds: int) -> np.ndarray:
  import torch
  from captum.attr import KernelShap
  out = np.zeros((len(case["x"]), seeds, N_UNITS))
  for i in range(len(case["x"])):
    v = game(case, i)
    explainer = KernelShap(lambda z: torch.from_numpy(v(z.numpy())))
    for s in range(seeds):
      torch.manual_seed(s)
      out[i, s] = explainer.attribute(torch.ones((1, N_UNITS), dtype=torch.float64),
                                      baselines=torch.zeros((1, N_UNITS), dtype=torch.float64),
                                      n_samples=budget, perturbations_per_eval=budget
                                      ).numpy()[0]
  return out


PACKAGES = {"shap": shap_estimates, "captum": captum_estimates}


def package_estimates(name: str, case: dict, ref: np.ndarray, budgets, seeds: int) -> dict:
  """`{package: {budget: (rows, seeds, 16)}}`, from `CACHE` where it holds them for this case.

  The cache is keyed by case, package and budget, and valid while its exact Shapley values of
  the case's rows equal `ref` (same model, same rows); it may hold more rows and seeds (the
  estimates of row `i`, seed `s` do not depend on how many are run). Missing entries are
  computed and written back. A package that is not installed gives `{"error": ...}`.
  """
  cache = dict(np.load(CACHE)) if os.path.exists(CACHE) else {}
  rows = len(ref)
  old = cache.get(f"{name}/ref")
  if old is None or len(old) < rows or not np.allclose(old[:rows], ref, rtol=0, atol=1e-6):
    cache = {k: v for k, v in cache.items() if not k.startswith(f"{name}/")}
    cache[f"{name}/ref"] = ref
  out, changed = {}, False
  for pkg, fn in PACKAGES.items():
    out[pkg] = {}
    for b in budgets:
      key = f"{name}/{pkg}/{b}"
      hit = cache.get(key)
      if hit is not None and hit.shape[0] >= rows and hit.shape[1] >= seeds:
        out[pkg][b] = hit[:rows, :seeds].astype(np.float64)
        continue
      _log(f"{name}: {pkg} at budget {b} ({rows} rows × {seeds} seeds; not cached)")
      try:
        est = fn(case, b, seeds)
      except ImportError as e:
        out[pkg] = {"error": f"not installed: {e}"}
        break
      cache[key], changed = est.astype(np.float32), True
      out[pkg][b] = cache[key].astype(np.float64)
  if changed:
    np.savez_compressed(CACHE, **cache)
  return out


def rmse(est: np.ndarray, ref: np.ndarray) -> float:
  return float(np.sqrt(np.mean((est - ref[:, None, :]) ** 2)))


def cell_mse(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
  """Mean squared error over units per explained row and seed, `(rows, seeds)`."""
  return np.mean((est - ref[:, None, :]) ** 2, axis=-1)


def bootstrap_draws(rows: int, seeds: int, *, n_boot: int = N_BOOT, seed: int = 0):
  """Two-way bootstrap: rows and seeds resampled independently, `n_boot` times (shared by all
  estimators, so that ratios are paired on the same resampled rows)."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, rows, (n_boot, rows)), rng.integers(0, seeds, (n_boot, seeds))


def boot_rmse(mse: np.ndarray, draws) -> np.ndarray:
  """RMSE of each bootstrap resample of the `(rows, seeds)` cell errors, `(n_boot,)`."""
  ri, si = draws
  return np.sqrt(mse[ri[:, :, None], si[:, None, :]].mean((1, 2)))


def run(*, n_rows: Optional[int] = None, seeds: Optional[int] = None, budgets=BUDGETS,
        packages: bool = True) -> dict:
  """`{case: {"ours": {budget: rmse}, "shap": ..., "captum": ..., ...}}` plus settings."""
  warnings.filterwarnings("ignore")
  out = {}
  rows_arg, seeds_arg = n_rows, seeds
  for name in ("tabular_mlp", "image_cells"):
    n_rows, seeds = rows_arg or SIZES[name][0], seeds_arg or SIZES[name][1]
    t0 = time.time()
    _log(f"{name}: train, exact Shapley values of {n_rows} rows")
    case = make_case(name, n_rows=n_rows)
    ref = np.stack([exact_shapley(game(case, i)) for i in range(n_rows)])
    keys = jax.random.split(jax.random.key(1), seeds)
    draws = bootstrap_draws(n_rows, seeds)
    estimates = {m: {} for m in ESTIMATORS}
    for b in budgets:
      _log(f"{name}: budget {b}")
      for m, opts in ESTIMATORS.items():
        estimates[m][b] = ours(case, b, keys, opts)
    if packages:
      estimates.update(package_estimates(name, case, ref, budgets, seeds))
    res = {}
    boot = {}
    for m, per_budget in estimates.items():
      if "error" in per_budget:
        res[m] = per_budget
        continue
      res[m] = {str(b): rmse(e, ref) for b, e in per_budget.items()}
      boot[m] = {b: boot_rmse(cell_mse(e, ref), draws) for b, e in per_budget.items()}
    # 5–95 % bootstrap interval of each RMSE, and of its ratio to shap's (paired resamples).
    res["interval_90"] = {m: {str(b): np.percentile(v, [5, 95]).tolist() for b, v in bm.items()}
                          for m, bm in boot.items()}
    if "shap" in boot:
      res["ratio_to_shap"] = {
          m: {str(b): [res[m][str(b)] / res["shap"][str(b)],
                       *np.percentile(v / boot["shap"][b], [5, 95]).tolist()]
              for b, v in bm.items()} for m, bm in boot.items() if m.startswith("ours")}
    res["cv_extra_forward_equivalents"] = {
        m: {str(b): cv_cost(case, b, ESTIMATORS[m]) for b in budgets}
        for m in ESTIMATORS if "control_variate" in ESTIMATORS[m]}
    res["settings"] = dict(rows=n_rows, seeds=seeds, d=N_UNITS, test_accuracy=case["test_accuracy"],
                           rms_shapley=float(np.sqrt(np.mean(ref ** 2))),
                           estimators={m: o for m, o in ESTIMATORS.items()},
                           bootstrap=f"{N_BOOT} two-way resamples of rows and seeds",
                           wall_s=time.time() - t0)
    out[name] = res
  return out


# ---- report -------------------------------------------------------------------------------

_LABELS = {"ours": "ours (default)", "ours_pairwise_cv": "ours, pairwise CV",
           "ours_kernel_cv": "ours, additive CV", "ours_leverage": "ours, leverage",
           "ours_iid": "ours, i.i.d. (before)", "shap": "shap.KernelExplainer",
           "captum": "captum KernelShap"}


def _curves(case: dict) -> dict:
  return {m: {int(b): v for b, v in case[m].items()}
          for m in _LABELS if m in case and "error" not in case[m]}


def first_budget_reaching(curve: dict, target: float):
  """The smallest budget whose RMSE is at most `target` (None if none)."""
  hits = [b for b in sorted(curve) if curve[b] <= target]
  return hits[0] if hits else None


def goal_rows(section: dict) -> list[tuple[str, str, bool]]:
  rows = []
  for name, case in section.items():
    if not isinstance(case, dict) or "ours" not in case:
      continue
    c = _curves(case)
    if "shap" not in c:
      continue
    ratios = case.get("ratio_to_shap", {})
    for m in ("ours", "ours_pairwise_cv", "ours_kernel_cv"):
      if m not in c:
        continue
      worst = max(c["shap"], key=lambda b: c[m][b] / c["shap"][b])
      ratio = c[m][worst] / c["shap"][worst]
      ci = ratios.get(m, {}).get(str(worst))
      ci = f" (90% CI {ci[1]:.2f}–{ci[2]:.2f})" if ci else ""
      rows.append((f"{_LABELS[m]} RMSE ≤ shap's at every budget ({name})",
                   f"max ratio {ratio:.2f} at {worst}{ci}", ratio <= 1.0))
      need = first_budget_reaching(c[m], c["shap"].get(1024, float("nan")))
      rows.append((f"{_LABELS[m]} reaches shap's RMSE at 1024 with ≤ 512 evaluations ({name})",
                   f"{need if need else '> 4096'}", bool(need and need <= 512)))
  return rows


def plot(section: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  cases = [n for n, c in section.items() if isinstance(c, dict) and "ours" in c]
  fig, axes = plt.subplots(1, len(cases), figsize=(5.5 * len(cases), 4.2), squeeze=False)
  for ax, name in zip(axes[0], cases):
    for m, curve in _curves(section[name]).items():
      b = sorted(curve)
      ax.plot(b, [curve[k] for k in b], marker="o", ms=3, label=_LABELS[m],
              ls="--" if m in ("shap", "captum") else "-")
    ax.set(xscale="log", yscale="log", xlabel="coalition budget (model evaluations)",
           ylabel="RMSE to exact Shapley values", title=name)
    ax.set_xticks(BUDGETS, [str(b) for b in BUDGETS])
    ax.grid(True, which="both", alpha=0.3)
  axes[0][0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _cell(case: dict, m: str, b: int) -> str:
  v = case[m].get(str(b))
  if v is None:
    return ""
  lo, hi = case.get("interval_90", {}).get(m, {}).get(str(b), (v, v))
  return f"{v:.2e} ±{50 * (hi - lo) / v:.0f}%"


def markdown_section(section: dict, png: str = "error_vs_budget.png") -> list[str]:
  """The figure, per case the RMSE table and the ratios to shap's, then the goal rows."""
  lines = [f"![error vs budget]({png})", ""]
  for name, case in section.items():
    if not isinstance(case, dict) or "ours" not in case:
      continue
    c = _curves(case)
    s = case["settings"]
    costs = case.get("cv_extra_forward_equivalents", {})
    costs = {k: v for k, v in costs.items() if isinstance(v, dict)}
    lines += [f"### {name} (test accuracy {s['test_accuracy']:.3f}, RMS Shapley value "
              f"{s['rms_shapley']:.3g}, {s['rows']} rows × {s['seeds']} seeds)", "",
              "| budget | " + " | ".join(_LABELS[k] for k in c)
              + "".join(f" | {_LABELS[k]}: extra fwd equiv." for k in costs) + " |",
              "| ---: | " + " | ".join("---:" for _ in list(c) + list(costs)) + " |"]
    for b in BUDGETS:
      if b not in c["ours"]:
        continue
      lines.append(f"| {b} | " + " | ".join(_cell(case, k, b) for k in c)
                   + "".join(f" | {costs[k][str(b)]:.0f}" for k in costs) + " |")
    ratios = case.get("ratio_to_shap", {})
    if ratios:
      lines += ["", "RMSE ratio to shap's at equal budget (5–95 % paired bootstrap interval):", "",
                "| budget | " + " | ".join(_LABELS[k] for k in ratios) + " |",
                "| ---: | " + " | ".join("---:" for _ in ratios) + " |"]
      for b in BUDGETS:
        if str(b) in ratios.get("ours", {}):
          lines.append(f"| {b} | " + " | ".join(
              f"{r[str(b)][0]:.2f} ({r[str(b)][1]:.2f}–{r[str(b)][2]:.2f})"
              for r in ratios.values()) + " |")
    lines.append("")
  from benchmarks.common import md_table
  return lines + md_table(["goal", "measured", "met"], [
      [g, m, "yes" if ok else "no"] for g, m, ok in goal_rows(section)]) + [""]


def main(argv=None) -> dict:
  from benchmarks.common import budget_benchmark_main

  def draw(section, args):
    plot(section, args.png)
    return [args.png]

  return budget_benchmark_main(argv, description=__doc__.splitlines()[0], name="error_vs_budget",
                               run=run, markdown=markdown_section, rows=None, seeds=None,
                               png=True,
                               finish=draw)


if __name__ == "__main__":
  main()
