"""ExpO on tabular regression: None vs ExpO-Fidelity, ExpO-1D-Fidelity and ExpO-Stability.

Plumb et al., "Regularizing Black-box Models for Improved Interpretability", NeurIPS 2020. Loss of
a batch: `MSE + λ · R(f, x[:16])` with `R` one of `idexpo_jax.regularisers.expo`'s regularisers and
`λ = c · (initial MSE / initial R)`. All values of `c` train at once: their parameters are stacked
and the summed loss of the members is one jitted step (`make_train_step`, driven by `loop.fit`);
Adam is element-wise, so each member trains exactly as it would alone. Early stopping keeps each
member's parameters of lowest validation MSE. `c` is chosen on the validation split; the test
split only reports MSE and ExpO's LIME metrics (`idexpo_jax.metrics.fidelity`).

  python -m experiments.expo.main --config=experiments/expo/configs/default.py

Writes `results/expo/metrics.json`, `results/expo/table.md`, `results/expo/expo.png` (test metrics)
and `results/expo/tradeoff.png` (validation MSE against LIME NF for every `c`).
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from flax import nnx
from ml_collections import config_flags
from tqdm.auto import tqdm

from experiments.common.compilation_cache import enable_compilation_cache
from experiments.common.config_check import validate_config
from experiments.common.expo import NAMES, member, regulariser, select_c
from idexpo_jax.data.sklearn_data import load_regression
from idexpo_jax.metrics.fidelity import expo_metrics_batch
from idexpo_jax.explainers.local_linear import local_linear
from idexpo_jax.training.loop import epoch_batch_fn, fit
from idexpo_jax.models import MLP, functional, predictor_fn
from idexpo_jax.training.train import init_train_state, make_train_step

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/expo/configs/default.py")

METRICS = ("mse", "pf", "nf", "stability")
ROWS = {"mse": "MSE", "pf": "LIME PF", "nf": "LIME NF", "stability": "LIME Stability"}


@functools.lru_cache(maxsize=None)
def _leaky_relu(slope: float):
  return functools.partial(jax.nn.leaky_relu, negative_slope=slope)


def build(cfg, dim: int, seed: int):
  """`(graphdef, params, rest)` of a fresh leaky-ReLU MLP with one output.

  Models of the same size share one (hashable) `graphdef`, so compiled functions are reused
  across seeds; `rest` is empty (no batch statistics).
  """
  module = MLP(dim, 1, hidden=tuple(cfg.model.hidden), rngs=nnx.Rngs(seed),
               activation=_leaky_relu(float(cfg.model.leaky_slope)))
  return functional(module)


def mse(f, x, y):
  return jnp.mean((f(x)[:, 0] - y) ** 2)


_CACHE = {}  # compiled functions per (kind, graphdef, options)


def train_step(cfg, graphdef, rest, method: str):
  """The jitted step of stacked members; the weights `λ` (one per member) are batch data."""
  key = ("step", method, graphdef)
  if key not in _CACHE:
    reg = regulariser(cfg, method)
    rb = cfg.train.reg_batch_size

    def one_member(params, lam, x, y, rng):
      f = predictor_fn(graphdef, params, rest)
      loss = mse(f, x, y)
      if reg is None:
        return loss, (loss, jnp.zeros_like(loss))
      r, _ = reg(f, x[:rb], rng)
      return loss + lam * r, (loss, r)

    def loss_fn(params, batch, rng):
      x, y, lam = batch
      loss, (m, r) = jax.vmap(one_member, in_axes=(0, 0, None, None, None))(params, lam, x, y, rng)
      return loss.sum(), {"mse": m.mean(), "reg": r.mean()}

    _CACHE[key] = make_train_step(loss_fn, optax.adam(cfg.train.lr))
  return _CACHE[key]


def stacked_mse(graphdef, rest):
  key = ("val_mse", graphdef)
  if key not in _CACHE:
    _CACHE[key] = jax.jit(jax.vmap(lambda p, x, y: mse(predictor_fn(graphdef, p, rest), x, y),
                                   in_axes=(0, None, None)))
  return _CACHE[key]


@jax.jit
def _keep_improved(best, new, improved):
  return jax.tree.map(
      lambda b, n: jnp.where(improved.reshape(-1, *([1] * (n.ndim - 1))), n, b), best, new)


def train(cfg, ds, graphdef, params, rest, method: str, lams: np.ndarray, *, seed: int):
  """Trains one member per `λ` from the same initialisation with early stopping.

  Returns:
    `(best_params, best_val_mse, steps)`: stacked parameters of lowest validation MSE.
  """
  t = cfg.train
  members = len(lams)
  stacked = jax.tree.map(lambda p: jnp.broadcast_to(p, (members, *p.shape)), params)
  best = jax.tree.map(jnp.copy, stacked)
  tx = optax.adam(t.lr)
  state = init_train_state(stacked, tx)
  step = train_step(cfg, graphdef, rest, method)
  base = epoch_batch_fn(ds.train, min(t.batch_size, len(ds.train.y)), seed=seed)
  lam = jnp.asarray(lams, jnp.float32)

  def batch_fn(i):
    b = base(i)
    return b.x, b.y, lam

  val_mse = stacked_mse(graphdef, rest)
  best_val = np.full(members, np.inf)
  bad = np.zeros(members, int)
  key = jax.random.key(seed)
  while int(state.step) < t.max_steps:
    stop = min(int(state.step) + t.eval_every, t.max_steps)
    state, _ = fit(step, state, batch_fn, num_steps=stop, key=key, progress=False)
    v = np.asarray(val_mse(state.params, ds.val.x, ds.val.y))
    improved = v < best_val
    best = _keep_improved(best, state.params, jnp.asarray(improved))
    best_val = np.where(improved, v, best_val)
    bad = np.where(improved, 0, bad + 1)
    if np.all(bad >= t.patience):
      break
  return best, best_val, int(state.step)


def metrics_fn(cfg, graphdef, rest, *, n_samples: int, stability: bool):
  """`run(params, xb, key) -> {pf, nf[, stability]}` per example, LIME explaining `f`."""
  key = ("metrics", graphdef, n_samples, stability)
  if key not in _CACHE:
    e = cfg.eval

    @jax.jit
    def run(params, xb, rng):
      f = predictor_fn(graphdef, params, rest)
      explainer = lambda x, k: local_linear(f, x, k, n_samples=n_samples,  # noqa: E731
                                            sigma=e.lime_sigma, ridge=e.lime_ridge)
      return expo_metrics_batch(f, explainer, xb, rng, n_neighbors=e.neighbors, sigma=e.sigma,
                                stability=stability)

    _CACHE[key] = run
  return _CACHE[key]


def explanation_metrics(cfg, graphdef, rest, params, x: np.ndarray, key, *, n_samples: int,
                        stability: bool = True) -> dict:
  """Means of ExpO's metrics over the rows of `x`, in fixed-size chunks (one compilation)."""
  run = metrics_fn(cfg, graphdef, rest, n_samples=n_samples, stability=stability)
  chunk = cfg.eval.chunk
  n = len(x)
  out = []
  for i in range(0, n, chunk):
    xb = x[i:i + chunk]
    pad = chunk - len(xb)
    if pad:
      xb = np.concatenate([xb, np.repeat(xb[-1:], pad, axis=0)])
    res = jax.device_get(run(params, jnp.asarray(xb), jax.random.fold_in(key, i)))
    out.append({k: v[:chunk - pad] for k, v in res.items()})
  return {k: float(np.mean(np.concatenate([o[k] for o in out]))) for k in out[0]}


def run_seed(cfg, name: str, seed: int, bar) -> dict:
  """All methods on one data set and seed: selection on validation, metrics on test."""
  ds = load_regression(name, seed=seed, n_samples=cfg.n_samples)
  dim = ds.train.x.shape[1]
  graphdef, params, rest = build(cfg, dim, seed)
  f0 = predictor_fn(graphdef, params, rest)
  n0 = min(128, len(ds.train.y))
  init_loss = float(mse(f0, ds.train.x, ds.train.y))
  key_eval = jax.random.key(10_000 + seed)
  k_val, k_test = jax.random.split(key_eval)
  val_x = ds.val.x[:cfg.select.max_points]
  out = {"dataset": name, "seed": seed, "init_mse": init_loss, "methods": {}}
  none_val = None
  for method in cfg.methods:
    reg = regulariser(cfg, method)
    if reg is None:
      grid = np.asarray([0.0])
      lams = np.zeros(1)
      init_reg = None
    else:
      grid = np.asarray(cfg.reg.c_grid, float)
      init_reg = float(reg(f0, jnp.asarray(ds.train.x[:n0]), jax.random.key(seed))[0])
      lams = grid * init_loss / init_reg
    bar.set_postfix_str(f"{name} seed {seed} {method}: training {len(lams)} members")
    best, val_mse, steps = train(cfg, ds, graphdef, params, rest, method, lams, seed=seed)
    if method == "none":
      none_val = float(val_mse[0])
    target = cfg.select.metric.get(method, "nf")
    bar.set_postfix_str(f"{name} seed {seed} {method}: selecting c on validation")
    val = [explanation_metrics(cfg, graphdef, rest, member(best, i), val_x, k_val,
                               n_samples=cfg.eval.lime_samples, stability=target == "stability")
           for i in range(len(lams))]
    idx = 0 if reg is None else select_c(cfg, val_mse, np.asarray([v[target] for v in val]),
                                         none_val)
    chosen = member(best, idx)
    bar.set_postfix_str(f"{name} seed {seed} {method}: test metrics")
    test = explanation_metrics(cfg, graphdef, rest, chosen, ds.test.x, k_test,
                               n_samples=cfg.eval.lime_samples)
    test["mse"] = float(mse(predictor_fn(graphdef, chosen, rest), ds.test.x, ds.test.y))
    out["methods"][method] = {
        "test": test, "c": float(grid[idx]), "lam": float(lams[idx]), "init_reg": init_reg,
        "steps": steps, "selection": {"c": grid.tolist(), "val_mse": val_mse.tolist(),
                                      f"val_{target}": [v[target] for v in val]}}
    bar.update(1)
  return out


def summarise(cfg, runs):
  """Means and standard deviations over seeds per data set and method."""
  results = {}
  for name in cfg.datasets:
    results[name] = {}
    for method in cfg.methods:
      rows = [r["methods"][method] for r in runs if r["dataset"] == name]
      entry = {m: {"mean": float(np.mean([r["test"][m] for r in rows])),
                   "std": float(np.std([r["test"][m] for r in rows]))} for m in METRICS}
      entry["c"] = [r["c"] for r in rows]
      results[name][method] = entry
    if "none" in cfg.methods and "expo_fidelity" in cfg.methods:
      results[name]["nf_ratio_none_over_fidelity"] = (
          results[name]["none"]["nf"]["mean"] / results[name]["expo_fidelity"]["nf"]["mean"])
  return results


def table(cfg, results) -> str:
  """A Markdown table in the style of the ExpO paper's Table 1 (mean ± std over seeds)."""
  head = "| Dataset | Metric | " + " | ".join(NAMES[m] for m in cfg.methods) + " |"
  lines = [head, "|" + "---|" * (len(cfg.methods) + 2)]
  for name in cfg.datasets:
    for i, m in enumerate(METRICS):
      cells = [f"{results[name][meth][m]['mean']:.3g} ± {results[name][meth][m]['std']:.2g}"
               for meth in cfg.methods]
      lines.append(f"| {name if i == 0 else ''} | {ROWS[m]} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(cfg, results, path: str):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  width = 0.8 / len(cfg.methods)
  xs = np.arange(len(cfg.datasets))
  for ax, m in zip(axes, ("mse", "nf", "stability")):
    for j, meth in enumerate(cfg.methods):
      mean = [results[d][meth][m]["mean"] for d in cfg.datasets]
      std = [results[d][meth][m]["std"] for d in cfg.datasets]
      ax.bar(xs + j * width, mean, width, yerr=std, label=NAMES[meth], capsize=2)
    ax.set_xticks(xs + 0.4 - width / 2, cfg.datasets)
    ax.set_title(f"test {ROWS[m]}" + (" (log)" if m != "mse" else ""))
    if m != "mse":
      ax.set_yscale("log")
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_tradeoff(cfg, runs, path: str):
  """Validation MSE against the validation selection metric for every c (all seeds)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(cfg.datasets), figsize=(4.3 * len(cfg.datasets), 3.6),
                           squeeze=False)
  for ax, name in zip(axes[0], cfg.datasets):
    for j, method in enumerate(m for m in cfg.methods if m != "none"):
      target = cfg.select.metric.get(method, "nf")
      if target != "nf":
        continue
      for k, r in enumerate(x for x in runs if x["dataset"] == name):
        sel = r["methods"][method]["selection"]
        ax.plot(sel["val_nf"], sel["val_mse"], "o-", color=f"C{j + 1}", ms=3, alpha=0.7,
                label=NAMES[method] if k == 0 else None)
        if "none" in r["methods"]:
          none = r["methods"]["none"]["selection"]
          ax.plot(none["val_nf"], none["val_mse"], "k*", ms=9,
                  label="None" if k == 0 and j == 0 else None)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("validation LIME NF")
    ax.set_ylabel("validation MSE")
    ax.set_title(f"{name}: c ∈ {{{', '.join(f'{c:g}' for c in cfg.reg.c_grid)}}}", fontsize=8)
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(_):
  enable_compilation_cache()  # a second run loads its compiled steps from disk
  cfg = _CONFIG.value
  validate_config(cfg)
  start = time.time()
  os.makedirs(cfg.out_dir, exist_ok=True)
  runs = []
  total = len(cfg.datasets) * len(cfg.seeds) * len(cfg.methods)
  with tqdm(total=total, desc="expo", disable=not cfg.progress, dynamic_ncols=True) as bar:
    for name in cfg.datasets:
      for seed in cfg.seeds:
        runs.append(run_seed(cfg, name, seed, bar))
  results = summarise(cfg, runs)
  text = table(cfg, results)
  print(text)
  for name in cfg.datasets:
    if "nf_ratio_none_over_fidelity" in results[name]:
      print(f"{name}: LIME NF None / ExpO-Fidelity = "
            f"{results[name]['nf_ratio_none_over_fidelity']:.2f}x")
  runtime = time.time() - start
  print(f"runtime {runtime:.0f} s")
  with open(os.path.join(cfg.out_dir, "metrics.json"), "w") as fh:
    json.dump({"results": results, "runs": runs, "runtime_s": runtime,
               "config": cfg.to_dict()}, fh, indent=1)
  with open(os.path.join(cfg.out_dir, "table.md"), "w") as fh:
    fh.write(text + "\n")
  plot(cfg, results, os.path.join(cfg.out_dir, "expo.png"))
  plot_tradeoff(cfg, runs, os.path.join(cfg.out_dir, "tradeoff.png"))


if __name__ == "__main__":
  app.run(main)
