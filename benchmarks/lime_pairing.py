"""LIME with i.i.d. vs antithetic masks: coefficient error vs budget against the population fit.

Usage: `python -m benchmarks.lime_pairing [--quick]`; saves the section `lime_pairing` in
`benchmarks/results.json` and `docs/benchmarks.md` (`common.save_section`).

With d = 16 units LIME's infinite-sample answer is computable: its samples are row 0 (all ones)
and `N − 1` rows whose entries are Bernoulli(½), so the expectation of its weighted normal
equations is the same weighted ridge fit on ALL `2^16` masks, each with weight
`(N − 1) · π(z) / 2^16`, plus the all-ones row with weight `π(1) = 1` and the same ridge
(α = 1). That population fit (scikit-learn's `Ridge` in float64 on the exact model values of all
masks) is the reference at budget N; the ridge keeps its weight, so the reference differs per
budget and the error is the sampling error alone. Antithetic (`paired=True`) rows `(z, 1 − z)`
are each still Bernoulli(½), so both samplers share that reference.

Cases: the two models of `benchmarks.error_vs_budget` (`tabular_mlp`: MLP 16-50-30-2 trained on
16 breast-cancer features, euclidean kernel of width `0.75·sqrt(16)`; `image_cells`: SmallCNN on
16×16 digits with 16 cells of 4×4 pixels, cosine kernel of width 0.25), softmax probability of the
predicted class, baseline = training mean. RMSE over units, explained rows and seeds.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax.explainers.lime import default_kernel_width, lime, lime_distances

BUDGETS = (64, 128, 256, 512, 1024, 2048, 4096)
DISTANCE = {"tabular_mlp": "euclidean", "image_cells": "cosine"}
N_UNITS = 16
RIDGE = 1.0


def _log(msg: str) -> None:
  print(f"[lime_pairing {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def all_masks(n_units: int) -> np.ndarray:
  codes = np.arange(2 ** n_units)
  return ((codes[:, None] >> np.arange(n_units)) & 1).astype(np.float64)


def kernel_weights(z: np.ndarray, distance: str) -> np.ndarray:
  """LIME's `π(z) = sqrt(exp(−D(z, 1)² / w²))` with the library's default width (float64)."""
  d = z.shape[1]
  width = default_kernel_width(d, distance)
  dist = np.asarray(lime_distances(jnp.asarray(z, jnp.float32), distance=distance), np.float64)
  return np.sqrt(np.exp(-dist ** 2 / width ** 2))


def population_fit(values: np.ndarray, distance: str, n_samples: int) -> np.ndarray:
  """LIME's coefficients in expectation at budget `n_samples` (module docstring), float64."""
  from sklearn.linear_model import Ridge
  z = all_masks(N_UNITS)
  w = kernel_weights(z, distance) * (n_samples - 1) / len(z)
  ones = np.ones((1, N_UNITS))
  w_ones = kernel_weights(ones, distance)
  design = np.concatenate([z, ones])
  target = np.concatenate([values, values[-1:]])  # code 2^16 − 1 is the all-ones mask
  return Ridge(alpha=RIDGE).fit(design, target, sample_weight=np.concatenate([w, w_ones])).coef_


def our_estimates(case: dict, n_samples: int, keys, *, paired: bool) -> np.ndarray:
  """`(rows, seeds, 16)` coefficients of our `lime`, jitted and vmapped over rows and seeds."""
  fn = case["logits_fn"]

  @jax.jit
  def explain(x, t, k):
    one = lambda k: lime(fn, x, t, k, segments=case["segments"], baseline=case["baseline"],
                         n_samples=n_samples, distance=DISTANCE[case["name"]], ridge=RIDGE,
                         paired=paired)
    return jax.vmap(one)(k)

  return np.stack([np.asarray(explain(jnp.asarray(case["x"][i]), int(case["targets"][i]), keys),
                              np.float64) for i in range(len(case["x"]))])


def run(*, n_rows: int = 8, seeds: int = 8, budgets=BUDGETS) -> dict:
  from benchmarks.error_vs_budget import game, make_case
  out = {}
  for name in DISTANCE:
    t0 = time.time()
    _log(f"{name}: train, model values of all 2^16 masks for {n_rows} rows")
    case = make_case(name, n_rows=n_rows)
    z = all_masks(N_UNITS)
    values = [np.concatenate([game(case, i)(z[s:s + 8192]) for s in range(0, len(z), 8192)])
              for i in range(n_rows)]
    keys = jax.random.split(jax.random.key(2), seeds)
    res = {"iid": {}, "paired": {}, "reference_rms": {}}
    for b in budgets:
      ref = np.stack([population_fit(v, DISTANCE[name], b) for v in values])
      res["reference_rms"][str(b)] = float(np.sqrt(np.mean(ref ** 2)))
      for label, paired in (("iid", False), ("paired", True)):
        est = our_estimates(case, b, keys, paired=paired)
        res[label][str(b)] = float(np.sqrt(np.mean((est - ref[:, None, :]) ** 2)))
      _log(f"{name}: budget {b}: iid {res['iid'][str(b)]:.3e}, paired "
           f"{res['paired'][str(b)]:.3e}")
    res["settings"] = dict(rows=n_rows, seeds=seeds, d=N_UNITS, distance=DISTANCE[name],
                           ridge=RIDGE, test_accuracy=case["test_accuracy"],
                           wall_s=time.time() - t0)
    out[name] = res
  return out


def paired_wins(section: dict) -> bool:
  """True when antithetic masks have the lower error at every budget of every case."""
  cases = [c for c in section.values() if isinstance(c, dict) and "iid" in c]
  return bool(cases) and all(c["paired"][b] < c["iid"][b] for c in cases for b in c["iid"])


def markdown_section(section: dict) -> list[str]:
  """Per case the RMSE of i.i.d. and antithetic masks by budget, then the verdict."""
  lines = []
  for name, case in section.items():
    if not isinstance(case, dict) or "iid" not in case:
      continue
    s = case["settings"]
    lines += [f"### {name} ({s['distance']} kernel, test accuracy {s['test_accuracy']:.3f}, "
              f"{s['rows']} rows × {s['seeds']} seeds)", "",
              "| budget N | RMS of the reference φ | i.i.d. RMSE | antithetic RMSE | i.i.d. ÷ "
              "antithetic |", "| ---: | ---: | ---: | ---: | ---: |"]
    for b in case["iid"]:
      lines.append(f"| {b} | {case['reference_rms'][b]:.3e} | {case['iid'][b]:.3e} | "
                   f"{case['paired'][b]:.3e} | {case['iid'][b] / case['paired'][b]:.2f} |")
    lines.append("")
  ratios = {(n, b): c["iid"][b] / c["paired"][b] for n, c in section.items()
            if isinstance(c, dict) and "iid" in c for b in c["iid"]}
  losses = [f"{n} at N = {b} ({r:.2f}×)" for (n, b), r in ratios.items() if r < 1]
  verdict = (f"i.i.d. ÷ antithetic error ranges {min(ratios.values()):.2f}–"
             f"{max(ratios.values()):.2f}×; ")
  verdict += ("antithetic masks have the lower error at every budget in both cases, so "
              "`paired=True` is the default" if section.get("default_paired") else
              "antithetic masks do not win at every budget in both cases (they lose at "
              + ", ".join(losses) + "), so `paired=True` is an option and the default stays "
              "i.i.d. (`paired=False`, as the `lime` package)")
  lines += [f"Verdict: {verdict}.", ""]
  return lines


def main(argv=None) -> dict:
  from benchmarks.common import budget_benchmark_main

  def record_default(section, args):
    section["default_paired"] = _default_paired()
    return []

  return budget_benchmark_main(argv, description=__doc__.splitlines()[0], name="lime_pairing",
                               run=run, markdown=markdown_section, rows=8, seeds=8,
                               finish=record_default)


def _default_paired() -> bool:
  import inspect
  return bool(inspect.signature(lime).parameters["paired"].default)


if __name__ == "__main__":
  main()
