"""Writes `docs/benchmarks.md` from the results of `benchmarks.run`."""

from __future__ import annotations

from typing import Optional

from benchmarks.explainers import COMPETITORS

_LABELS = {
    "floor": "floor: B×N forward passes (jitted, batched)",
    "lime_package": "`lime` package (`lime_image`)",
    "shap_package": "`shap.KernelExplainer`",
    "captum_lime": "captum `Lime` (PyTorch copy)",
    "captum_kernel_shap": "captum `KernelShap` (PyTorch copy)",
}
_OURS = {"lime": "**idexpo_jax `lime`** (jit + vmap)",
         "kernel_shap": "**idexpo_jax `kernel_shap`** (jit + vmap)"}
GOALS = {"package": 100.0, "captum": 10.0, "explainer_floor": 1.3, "step_floor": 1.5}


def _s(t: Optional[float]) -> str:
  if t is None:
    return "–"
  if t >= 1:
    return f"{t:.2f} s"
  if t >= 1e-3:
    return f"{t * 1e3:.1f} ms"
  return f"{t * 1e6:.0f} µs"


def _x(r: Optional[float]) -> str:
  return "–" if r is None else f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def _mb(b: Optional[int]) -> str:
  return "–" if b is None else f"{b / 2 ** 20:.0f} MiB"


def _explainer_table(row: dict) -> list[str]:
  floor = row["floor"]["per_explanation_s"]
  lines = [f"### SmallCNN width {row['width']}, {row['n_segments']} grid segments, "
           f"{row['n_samples']} samples",
           "",
           "| explainer | s / explanation | images timed | package ÷ ours | ÷ floor |",
           "| --- | ---: | ---: | ---: | ---: |",
           f"| {_LABELS['floor']} | {_s(floor)} | {row['floor']['n_images']} | | 1.00× |"]
  for method, label in _OURS.items():
    ours = row["ours"].get(method)
    t = ours["per_explanation_s"] if ours else None
    if ours is None:
      lines.append(f"| {label} | not available | | | |")
    else:
      lines.append(f"| {label} | {_s(t)} | {ours['n_images']} | 1× | {_x(t / floor)} |")
    for pkg in COMPETITORS[method]:
      r = row["packages"].get(pkg)
      if r is None:
        continue
      if "per_explanation_s" not in r:
        lines.append(f"| {_LABELS[pkg]} | {r.get('error', 'failed')} | | | |")
        continue
      p = r["per_explanation_s"]
      lines.append(f"| {_LABELS[pkg]} | {_s(p)} | {r['n_images']} | "
                   f"{_x(p / t) if t else '–'} | {_x(p / floor)} |")
  compile_s = {m: o["compile_s"] for m, o in row["ours"].items() if o}
  if compile_s:
    lines += ["", "Compilation of our jitted explainers (first call minus a steady call): " +
              ", ".join(f"`{m}` {_s(c)}" for m, c in compile_s.items()) + "."]
  return lines + [""]


def _train_table(ts: dict) -> list[str]:
  b = ts["batch_size"]
  lines = ["| step | step time | compile | peak memory | floor images | floor (f+b) | "
           "step ÷ floor | curve floor B·(2M+2) | step ÷ curve floor |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  ce = ts["ce"]
  lines.append(f"| plain CE | {_s(ce['step_s'])} | {_s(ce['compile_s'])} | "
               f"{_mb(ce['memory']['peak_bytes'])} | {b} | {_s(ce['floor']['median_s'])} | "
               f"{_x(ce['step_over_floor'])} | | |")
  names = {"grad_cam": "ID-ExpO + Grad-CAM", "lime": "ID-ExpO + LIME",
           "kernel_shap": "ID-ExpO + KernelSHAP"}
  for key, name in names.items():
    r = ts.get(key)
    if r is None:
      continue
    cf = r["curve_floor"]["median_s"]
    unit = "pixels" if key == "grad_cam" else "segments"
    lines.append(
        f"| {name} ({r['units']} {unit}, M = {r['soft_steps']}, N = "
        f"{r['samples_per_example']}) | {_s(r['step_s'])} | {_s(r['compile_s'])} | "
        f"{_mb(r['memory']['peak_bytes'])} | {r['floor']['n_images']} | "
        f"{_s(r['floor']['median_s'])} | {_x(r['step_over_floor'])} | {_s(cf)} | "
        f"{_x(r['step_s'] / cf)} |")
  return lines + [""]


def goal_rows(results: dict) -> list[tuple[str, str, bool]]:
  """`(goal, measured, met)` for every goal the results can speak to."""
  rows = []
  for row in results["explainers"]:
    tag = f"width {row['width']}, {row['n_segments']} seg"
    ratios = row["ratios"]
    for method in _OURS:
      if f"{method}_over_floor" not in ratios:
        continue
      v = ratios[f"{method}_over_floor"]
      rows.append((f"`{method}` ≤ 1.3× floor ({tag})", _x(v), v <= GOALS["explainer_floor"]))
      for pkg in COMPETITORS[method]:
        k = f"{pkg}_over_ours"
        if k in ratios:
          goal = GOALS["captum"] if pkg.startswith("captum") else GOALS["package"]
          rows.append((f"`{method}` ≥ {goal:.0f}× {_LABELS[pkg]} ({tag})", _x(ratios[k]),
                       ratios[k] >= goal))
  ts = results.get("train_step", {})
  for key in ("grad_cam", "lime", "kernel_shap"):
    if key in ts:
      v = ts[key]["step_over_floor"]
      rows.append((f"ID-ExpO {key} step ≤ 1.5× its forward+backward floor", _x(v),
                   v <= GOALS["step_floor"]))
  return rows


def write_markdown(results: dict, path: str, analysis: Optional[list[str]] = None) -> None:
  """Renders the tables (and the optional analysis paragraphs) to `path`."""
  m = results["machine"]
  a = results["args"]
  v = m["versions"]
  lines = [
      "# Benchmarks",
      "",
      "Written by `make bench` (`python -m benchmarks.run`); raw numbers in "
      "`benchmarks/results.json`. All ratios come from timings taken side by side in one run "
      "on one machine. Times are medians of repeats after a warm-up call.",
      "",
      "## Machine",
      "",
      f"- CPU: {m['cpu']}, {m['cores']} cores visible ({m['platform']}).",
      f"- JAX device: {m['jax_device']}. **No GPU was lent to this benchmark session**: every "
      "number below is CPU-only (PyTorch runs on the same cores).",
      f"- Load average at start {', '.join(f'{x:.1f}' for x in m['load_average'])}; at end "
      f"{', '.join(f'{x:.1f}' for x in m.get('load_average_end', []))}. The machine was shared "
      "with other jobs, so absolute times are noisy; the ratios are the result.",
      f"- Versions: jax {v['jax']}, flax {v['flax']}, torch {v['torch']}, captum {v['captum']}, "
      f"lime {v['lime']}, shap {v['shap']}, numpy {v['numpy']}, scikit-learn "
      f"{v['scikit-learn']}.",
      f"- Run: {results['wall_s']:.0f} s wall.",
      "",
      "## Explainer throughput",
      "",
      f"Digits test images ({a['images']}, 16×16×1, nearest-upsampled), `SmallCNN` at its random "
      "initialisation (speed does not depend on the weights), the explained class is the "
      "prediction, baseline = training mean, grid segments, the same number of samples for "
      "everyone. Ours: one `jax.jit(jax.vmap(explainer))` call per group of "
      f"{a['batch']} images. The packages get their fastest documented path: one batched model "
      "call per explanation (`batch_size` / `perturbations_per_eval` = N), lime and shap call the "
      "same jitted JAX model, captum a PyTorch copy with the same weights; lime/captum-Lime use "
      "ridge α = 1 with the cosine kernel of width 0.25 on the binary vectors and no feature "
      "selection, shap one background row (the baseline) and `l1_reg=False`. Packages are "
      f"timed on {a['package_images']} images each (median per explanation). The floor is the "
      "forward pass of the B×N masked images an explainer cannot avoid, batched like ours.",
      "",
  ]
  for row in results["explainers"]:
    lines += _explainer_table(row)
  ts = results.get("train_step")
  if ts:
    lines += [
        "## Train-step cost",
        "",
        f"`make_train_step` on `CE + λ·idexpo_penalty + λ₂·mean(φ²)` (λ = 0.01, λ₂ = 1e-4, "
        f"n_steps = {ts['n_steps']}, fraction = {ts['fraction']}, SGD with Nesterov momentum), "
        f"batch B = {ts['batch_size']}, SmallCNN width {a['width']}, 16×16 digits. Per example "
        "the step evaluates 2M + 2 images (clean for CE, M soft insertions, M soft deletions, "
        "clean for the deletion ratio) plus the N samples of LIME / KernelSHAP (N + 2 for "
        "KernelSHAP: v(1) and v(0)), all differentiated. The floor is one jitted `jax.grad` of a "
        "CE over that many images (B·(N + 2M + 2)); the curve floor counts only B·(2M + 2). "
        "Grad-CAM scores pixels and adds its own backward pass through the head (second order "
        "kept). Compilation (lower + compile) is timed separately. Peak memory: "
        f"{_memory_source(ts)}.",
        "",
    ]
    lines += _train_table(ts)
  lines += ["## Goals", "", "| goal | measured | met |", "| --- | ---: | :---: |"]
  lines += [f"| {g} | {v_} | {'yes' if ok else 'no'} |" for g, v_, ok in goal_rows(results)]
  lines.append("")
  if analysis:
    lines += ["## What dominates, and what would close the gaps", ""] + analysis
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def _memory_source(ts: dict) -> str:
  src = ts["ce"]["memory"]["source"]
  if src == "compiled.memory_analysis":
    return ("the CPU device reports no memory statistics, so this is XLA's buffer assignment "
            "of the compiled step (arguments + outputs + temporaries − aliased)")
  if src == "device.memory_stats":
    return "the device's peak bytes in use"
  return "not measurable here"
