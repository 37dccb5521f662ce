"""Explainer throughput: idexpo_jax's jitted, vmapped LIME and KernelSHAP vs. lime, shap, captum.

All explain the softmax probability of the predicted class of the same `SmallCNN` (captum: its
PyTorch copy with the same weights) on the same images, with the same grid segments, baseline and
number of samples. The packages get their fastest documented path: one batched model call per
explanation (`batch_size` / `perturbations_per_eval` = `n_samples`), the jitted JAX model as
their predict function (lime, shap), and settings matching ours (lime: ridge α = 1, cosine kernel
of width 0.25, no feature selection; shap: one background row = the baseline, no L1 step;
captum: ridge α = 1 and the same kernel on the binary vectors for `Lime`).

The floor is the forward pass of the `B × N` masked images an explainer must evaluate, batched
and jitted exactly like our explainers (groups of `batch` images × `N` samples per call).
"""

from __future__ import annotations

import functools
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import (Problem, block, fmt_s, fmt_x, jitted_masked_prob,
                               jitted_predict_proba, md_table, time_call, timed_compile)
from idexpo_jax.core.masking import apply_unit_mask

METHODS = ("lime", "kernel_shap")
COMPETITORS = {"lime": ("lime_package", "captum_lime"),
               "kernel_shap": ("shap_package", "captum_kernel_shap")}
DEFAULT_VARIANTS = {"lime": ("lime_package_default", "captum_lime_default"),
                    "kernel_shap": ("captum_kernel_shap_default",)}
LABELS = {
    "floor": "floor: B×N forward passes (jitted, batched)",
    "torch_floor": "floor of the PyTorch copy (N forward passes per explanation, batched)",
    "lime": "**idexpo_jax `lime`** (jit + vmap)",
    "kernel_shap": "**idexpo_jax `kernel_shap`** (jit + vmap)",
    "lime_package": "`lime` package (`lime_image`)",
    "shap_package": "`shap.KernelExplainer`",
    "captum_lime": "captum `Lime` (PyTorch copy)",
    "captum_kernel_shap": "captum `KernelShap` (PyTorch copy)",
    "lime_package_default": "`lime` package, its default `batch_size=10`",
    "captum_lime_default": "captum `Lime`, its default `perturbations_per_eval=1`",
    "captum_kernel_shap_default": "captum `KernelShap`, its default `perturbations_per_eval=1`",
}
GOALS = {"floor": 1.3, "package": 100.0, "captum": 10.0}  # ours ≤ 1.3× floor, ≥ 100× / 10× faster


def explainer_table(row: dict, *, labels: Optional[dict] = None, variants: Optional[dict] = None,
                    floor_goal: float = GOALS["floor"], tag: str = "") -> list[str]:
  """The Markdown table of one configuration (`benchmarks.run`), then its goal rows."""
  labels, variants = {**LABELS, **(labels or {})}, variants or {}
  floor = row["floor"]["per_explanation_s"]
  rows = [[labels["floor"], fmt_s(floor), row["floor"]["n_images"], "", "1.00×"]]
  goals = []
  if "per_explanation_s" in row["packages"].get("torch_floor", {}):
    tf = row["packages"]["torch_floor"]
    rows.append([labels["torch_floor"], fmt_s(tf["per_explanation_s"]), tf["n_images"], "",
                 fmt_x(tf["per_explanation_s"] / floor)])
  for method in METHODS:
    ours = row["ours"].get(method)
    t = ours["per_explanation_s"] if ours else None
    rows.append([labels[method], fmt_s(t), ours["n_images"] if ours else "", "1×",
                 fmt_x(t / floor) if t else "–"])
    if t:
      goals.append([f"`{method}` ≤ {floor_goal}× floor{tag}", fmt_x(t / floor),
                    "yes" if t / floor <= floor_goal else "no"])
    for pkg in COMPETITORS[method] + tuple(variants.get(method, ())) + DEFAULT_VARIANTS[method]:
      r = row["packages"].get(pkg)
      if r is None:
        continue
      p = r.get("per_explanation_s")
      rows.append([labels[pkg], fmt_s(p) if p else r.get("error", "failed"),
                   r.get("n_images", ""), fmt_x(p / t) if p and t else "–",
                   fmt_x(p / floor) if p else "–"])
      if p and t and pkg in COMPETITORS[method] and floor_goal == GOALS["floor"]:
        goal = GOALS["captum" if pkg.startswith("captum") else "package"]
        goals.append([f"`{method}` ≥ {goal:.0f}× {labels[pkg]}{tag}", fmt_x(p / t),
                      "yes" if p / t >= goal else "no"])
  lines = md_table(["explainer", "s / explanation", "images timed", "package ÷ ours",
                    "÷ floor"], rows)
  compile_s = {m: o["compile_s"] for m, o in row["ours"].items() if o and "compile_s" in o}
  if compile_s:
    lines += ["", "Compilation of our jitted explainers (lower + compile): "
              + ", ".join(f"`{m}` {fmt_s(c)}" for m, c in compile_s.items()) + "."]
  return lines + [""] + md_table(["goal", "measured", "met"], goals) + [""]


def markdown(section: dict) -> list[str]:
  """The image-explainer tables of `benchmarks.run`, one per configuration."""
  lines = []
  for row in section["rows"]:
    lines += [f"### SmallCNN width {row['width']}, {row['n_segments']} grid segments, "
              f"{row['n_samples']} samples", ""]
    lines += explainer_table(row, tag=f" (width {row['width']}, {row['n_segments']} segments)")
  a = section.get("args", {})
  return lines + [f"{a.get('images', '?')} images, {a.get('batch', '?')} per jitted call; the "
                  f"packages on {a.get('package_images', '?')} each; {section.get('wall_s', 0):.0f}"
                  " s wall for the whole run."]


def our_explainer(method: str):
  """Our `lime` or `kernel_shap` function, or None when its module has not landed."""
  try:
    if method == "lime":
      from idexpo_jax.explainers.lime import lime
      return lime
    from idexpo_jax.explainers.kernel_shap import kernel_shap
    return kernel_shap
  except ImportError:
    return None


def _groups(n: int, batch: int):
  return [slice(i, min(i + batch, n)) for i in range(0, n, batch)]


def prepare_ours(problem: Problem, method: str, *, n_segments: int, n_samples: int, batch: int,
                 chunk_size: Optional[int] = None, seed: int = 0,
                 options: Optional[dict] = None):
  """`(run, info)` for our jitted `jax.vmap`-ped explainer over all images, or None.

  Images are explained `batch` at a time (one call per group of the ahead-of-time compiled
  executable) so that memory stays bounded; `run()` explains all images and blocks; `info` has
  `compile_s`, `n_images` and XLA's `flops_per_explanation`. `options` are further keyword
  arguments of the explainer (e.g. `distance="euclidean"` for tabular LIME).
  """
  explain = our_explainer(method)
  if explain is None:
    return None
  segments = problem.segments(n_segments)

  @jax.jit
  def explain_batch(params, xb, tb, keys):
    logits_fn = lambda z: problem.logits(params, z)
    one = functools.partial(explain, logits_fn, segments=segments, baseline=problem.baseline,
                            n_samples=n_samples, chunk_size=chunk_size, **(options or {}))
    return jax.vmap(one)(xb, tb, keys)

  x, t = jnp.asarray(problem.x), jnp.asarray(problem.targets)
  keys = jax.random.split(jax.random.key(seed), len(problem.x))
  groups = _groups(len(problem.x), batch)
  g0 = groups[0]
  compiled, seconds = timed_compile(explain_batch, problem.params, x[g0], t[g0], keys[g0])
  compile_s = seconds["total_s"]

  def run():
    return block([compiled(problem.params, x[g], t[g], keys[g]) for g in groups])

  n = len(problem.x)
  return run, {"n_images": n, "compile_s": compile_s,
               "flops_per_explanation": _flops(compiled) * len(groups) / n}


def prepare_floor(problem: Problem, *, n_segments: int, n_samples: int, batch: int):
  """`(run, info)` for the forward passes alone: `N` masked images per explanation."""
  inputs = floor_inputs(problem, n_segments=n_segments, n_samples=n_samples, batch=batch)
  forward, _ = timed_compile(jax.jit(problem.logits), problem.params, inputs[0])

  def run():
    return block([forward(problem.params, xs) for xs in inputs])

  n = len(problem.x)
  return run, {"n_images": n, "n_forward": n * n_samples,
               "flops_per_explanation": _flops(forward) * len(inputs) / n}


def per_explanation(timing: dict, info: dict) -> dict:
  """Adds the seconds per explanation of a timed `run` (all images) to its `info`."""
  n = info["n_images"]
  return {**info, "per_explanation_s": timing["median_s"] / n, "total_s": timing["median_s"],
          "times_s": timing["times_s"]}


def bench_ours(problem: Problem, method: str, *, repeats: int, **kwargs) -> Optional[dict]:
  """Seconds per explanation of our explainer (see `prepare_ours` for the options)."""
  prepared = prepare_ours(problem, method, **kwargs)
  if prepared is None:
    return None
  run, info = prepared
  return per_explanation(time_call(run, repeats=repeats), info)


def bench_floor(problem: Problem, *, repeats: int, **kwargs) -> dict:
  """Seconds per explanation of the floor (see `prepare_floor` for the options)."""
  run, info = prepare_floor(problem, **kwargs)
  return per_explanation(time_call(run, repeats=repeats), info)


def _flops(compiled) -> float:
  """XLA's flop count of a compiled executable (NaN when the backend gives none)."""
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))
  except Exception:  # pylint: disable=broad-except
    return float("nan")


def floor_inputs(problem: Problem, *, n_segments: int, n_samples: int, batch: int,
                 seed: int = 0):
  """The `B × N` masked images (Bernoulli(½) unit masks), grouped as our explainers batch them."""
  segments = problem.segments(n_segments)
  key = jax.random.key(seed)
  z = jax.random.bernoulli(key, 0.5, (len(problem.x), n_samples, n_segments)).astype(jnp.float32)
  xs = jax.vmap(lambda x, zi: apply_unit_mask(x, zi, problem.baseline, segments=segments))(
      jnp.asarray(problem.x), z)
  return [xs[g].reshape(-1, *problem.x.shape[1:]) for g in _groups(len(problem.x), batch)]


def _per_explanation(explain_one, n_images: int) -> dict:
  """Times `explain_one(i)` for each image after one warm-up call; median per explanation."""
  explain_one(0)
  times = []
  for i in range(n_images):
    t0 = time.perf_counter()
    explain_one(i)
    times.append(time.perf_counter() - t0)
  return {"per_explanation_s": float(np.median(times)), "n_images": n_images, "times_s": times}


def bench_lime_package(problem: Problem, *, n_segments: int, n_samples: int, n_images: int,
                       batch_size: Optional[int] = None) -> dict:
  """`lime.lime_image.LimeImageExplainer` with the grid segments and our jitted predict.

  `batch_size` is the images per predict call: `n_samples` by default (one call); the package's
  own default is 10.
  """
  from lime import lime_image
  segments = problem.segments(n_segments)
  predict = jitted_predict_proba(problem)
  explainer = lime_image.LimeImageExplainer(kernel_width=0.25, feature_selection="none",
                                            random_state=0)
  hide = float(np.asarray(problem.baseline).reshape(-1)[0])

  def explain_one(i):
    exp = explainer.explain_instance(
        problem.x[i].astype(np.float64), predict, labels=(int(problem.targets[i]),),
        hide_color=hide, top_labels=None, num_features=n_segments, num_samples=n_samples,
        batch_size=batch_size or n_samples, segmentation_fn=lambda _: segments, random_seed=i)
    return exp.local_exp

  return _per_explanation(explain_one, n_images)


def bench_shap_package(problem: Problem, *, n_segments: int, n_samples: int,
                       n_images: int) -> dict:
  """`shap.KernelExplainer` over the segments: coalitions mask our jitted model's input."""
  import shap
  segments = problem.segments(n_segments)
  masked_prob = jitted_masked_prob(problem, segments)

  def explain_one(i):
    x, t = problem.x[i], int(problem.targets[i])
    explainer = shap.KernelExplainer(lambda z: masked_prob(x, z, t), np.zeros((1, n_segments)))
    return explainer.shap_values(np.ones((1, n_segments)), nsamples=n_samples, l1_reg=False,
                                 silent=True)

  return _per_explanation(explain_one, n_images)


def _binary_cosine_kernel(width: float):
  """LIME's kernel on the binary vectors: `sqrt(exp(−D²/w²))`, `D` = cosine distance to 1."""
  import torch

  def similarity(original, perturbed, interpretable, **kwargs):
    del original, perturbed, kwargs
    z = interpretable.float().reshape(-1)
    cos = z.sum() / (torch.sqrt(z.sum()).clamp_min(1e-12) * z.numel() ** 0.5)
    return torch.sqrt(torch.exp(-((1.0 - cos) ** 2) / width ** 2))

  return similarity


def bench_captum(problem: Problem, method: str, *, n_segments: int, n_samples: int,
                 n_images: int, perturbations_per_eval: Optional[int] = None) -> dict:
  """captum's `Lime` / `KernelShap` on the PyTorch copy of the model (softmax output).

  `perturbations_per_eval` is the samples per forward call: `n_samples` by default (one call);
  captum's own default is 1.
  """
  import torch

  from benchmarks.torch_cnn import torch_small_cnn
  mask = torch.from_numpy(problem.segments(n_segments).astype(np.int64))[None, None]
  images = torch.from_numpy(np.ascontiguousarray(problem.x.transpose(0, 3, 1, 2)))
  hide = float(np.asarray(problem.baseline).reshape(-1)[0])
  return captum_per_explanation(torch_small_cnn(problem.params), method, images, problem.targets,
                                baselines=hide, feature_mask=mask,
                                similarity_func=_binary_cosine_kernel(0.25), n_samples=n_samples,
                                n_images=n_images,
                                perturbations_per_eval=perturbations_per_eval)


def captum_per_explanation(logits_model, method: str, inputs, targets, *, baselines,
                           feature_mask, similarity_func, n_samples: int, n_images: int,
                           perturbations_per_eval: Optional[int] = None) -> dict:
  """Times captum's `Lime` (ridge α = 1, `similarity_func`) or `KernelShap` on `inputs[i:i+1]`.

  Args:
    logits_model: a PyTorch module returning logits; captum explains its softmax.
    method: "lime" or "kernel_shap".
    inputs: a tensor with the examples on axis 0 (in the layout of `logits_model`).
    targets: the explained class per example.
    baselines, feature_mask: captum's arguments (`feature_mask=None`: one unit per feature).
    similarity_func: `Lime`'s kernel (unused by `KernelShap`).
    n_samples, n_images: samples per explanation, examples timed.
    perturbations_per_eval: samples per forward call (`n_samples` by default, captum's is 1).
  """
  import torch
  from captum._utils.models.linear_model import SkLearnRidge
  from captum.attr import KernelShap, Lime
  model = torch.nn.Sequential(logits_model, torch.nn.Softmax(dim=-1)).eval()
  if method == "lime":
    explainer = Lime(model, interpretable_model=SkLearnRidge(alpha=1.0),
                     similarity_func=similarity_func)
  else:
    explainer = KernelShap(model)

  def explain_one(i):
    torch.manual_seed(i)
    with torch.no_grad():
      return explainer.attribute(inputs[i:i + 1], baselines=baselines, target=int(targets[i]),
                                 feature_mask=feature_mask, n_samples=n_samples,
                                 perturbations_per_eval=perturbations_per_eval or n_samples,
                                 show_progress=False)

  return _per_explanation(explain_one, n_images)


def bench_torch_floor(problem: Problem, *, n_segments: int, n_samples: int,
                      n_images: int) -> dict:
  """Seconds per explanation of the `N` forward passes of the PyTorch copy (captum's floor)."""
  import torch

  from benchmarks.torch_cnn import torch_small_cnn
  model = torch_small_cnn(problem.params)
  inputs = floor_inputs(problem, n_segments=n_segments, n_samples=n_samples, batch=1)
  inputs = [torch.from_numpy(np.asarray(xs).transpose(0, 3, 1, 2).copy()) for xs in inputs]

  def explain_one(i):
    with torch.no_grad():
      return model(inputs[i])

  return _per_explanation(explain_one, n_images)
