"""Tabular explainer throughput: an MLP on breast cancer, where per-sample overhead dominates.

The same comparison as `benchmarks.explainers`, on `idexpo_jax.models.MLP` (30 standardised
features, one unit per feature, baseline = training mean) instead of a CNN: the forward pass of
1000 masked rows costs microseconds, so what is left is each explainer's own work per sample.

* Ours: `lime(..., distance="euclidean")` (binary-space distance `sqrt(d − |z|)`, width
  `0.75·sqrt(d)`, ridge α = 1) and `kernel_shap`, jitted and vmapped over all rows at once.
* `lime` package, matched: `LimeBase.explain_instance_with_data` on the same construction as ours
  and as `lime_image` (Bernoulli(½) binary samples with row 0 all ones, masked rows =
  `where(z, x, baseline)` through our jitted model, euclidean distance of `z` to the all-ones row
  via `sklearn.metrics.pairwise_distances`, kernel `sqrt(exp(−D²/w²))` with `w = 0.75·sqrt(d)`,
  `feature_selection="none"`, its default `Ridge(alpha=1)`).
* `lime` package as users run it: `LimeTabularExplainer(train, discretize_continuous=False,
  feature_selection="none")` (its default kernel width `0.75·sqrt(d)`, but Gaussian samples in
  feature space, a different perturbation).
* `shap.KernelExplainer(predict_target, baseline[None])` on the raw row, `nsamples = N`,
  `l1_reg=False`: shap builds the masked rows itself and calls our jitted model once.
* captum `Lime` (ridge α = 1, the same binary euclidean kernel) and `KernelShap` on the PyTorch
  copy (`benchmarks.torch_mlp`), baseline row, one unit per feature.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import Problem, jitted_predict_proba
from benchmarks.explainers import _per_explanation, captum_per_explanation, floor_inputs
from idexpo_jax.data.sklearn_data import load_tabular_classification
from idexpo_jax.explainers.lime import default_kernel_width
from idexpo_jax.models import MLP, functional, predictor_fn

LIME_OPTIONS = {"distance": "euclidean"}


def make_tabular_problem(*, n_rows: int, hidden: Sequence[int] = (50, 30), seed: int = 0,
                         name: str = "breast_cancer") -> Problem:
  """An `MLP` at its random initialisation and `n_rows` test rows of `name`."""
  data = load_tabular_classification(name, seed=seed)
  if not 0 < n_rows <= len(data.test.x):
    raise ValueError(f"`n_rows` must be in [1, {len(data.test.x)}]; got {n_rows}.")
  model = MLP(data.train.x.shape[1], data.num_classes, hidden=tuple(hidden),
              rngs=nnx.Rngs(seed))
  graphdef, params, rest = functional(model)
  x = data.test.x[:n_rows]
  logits = predictor_fn(graphdef, params, rest)(jnp.asarray(x))
  targets = np.asarray(jnp.argmax(logits, axis=-1), dtype=np.int32)
  return Problem(graphdef, params, rest, x, data.test.y[:n_rows], targets,
                 np.asarray(data.mean, np.float32), x_train=data.train.x, hidden=tuple(hidden))


def lime_width(problem: Problem) -> float:
  """The kernel width of ours and of the matched packages: `lime_tabular`'s `0.75·sqrt(d)`."""
  return default_kernel_width(problem.x.shape[1], "euclidean")


def bench_lime_base(problem: Problem, *, n_samples: int, n_images: int) -> dict:
  """`lime.lime_base.LimeBase.explain_instance_with_data` on our construction (module doc)."""
  from lime.lime_base import LimeBase
  from sklearn.metrics import pairwise_distances
  d = problem.x.shape[1]
  width = lime_width(problem)
  base = LimeBase(lambda dist: np.sqrt(np.exp(-(dist ** 2) / width ** 2)), random_state=0)
  predict = jitted_predict_proba(problem)
  rng = np.random.RandomState(0)

  def explain_one(i):
    x, t = problem.x[i], int(problem.targets[i])
    z = rng.randint(0, 2, (n_samples, d))
    z[0] = 1
    proba = predict(np.where(z == 1, x, problem.baseline).astype(np.float32))
    dist = pairwise_distances(z, z[:1], metric="euclidean").ravel()
    return base.explain_instance_with_data(z, proba, dist, t, d, feature_selection="none")

  return _per_explanation(explain_one, n_images)


def bench_lime_tabular(problem: Problem, *, n_samples: int, n_images: int) -> dict:
  """`lime.lime_tabular.LimeTabularExplainer` as users run it (Gaussian samples, module doc)."""
  from lime.lime_tabular import LimeTabularExplainer
  d = problem.x.shape[1]
  predict = jitted_predict_proba(problem)
  explainer = LimeTabularExplainer(problem.x_train, mode="classification",
                                   discretize_continuous=False, feature_selection="none",
                                   random_state=0)

  def explain_one(i):
    return explainer.explain_instance(problem.x[i], predict, labels=(int(problem.targets[i]),),
                                      top_labels=None, num_features=d, num_samples=n_samples)

  return _per_explanation(explain_one, n_images)


def bench_shap_tabular(problem: Problem, *, n_samples: int, n_images: int) -> dict:
  """`shap.KernelExplainer` with the baseline as its one background row, on the raw row."""
  import shap
  predict = jitted_predict_proba(problem)

  def explain_one(i):
    t = int(problem.targets[i])
    explainer = shap.KernelExplainer(lambda xs: predict(xs)[:, t], problem.baseline[None])
    return explainer.shap_values(problem.x[i:i + 1], nsamples=n_samples, l1_reg=False,
                                 silent=True)

  return _per_explanation(explain_one, n_images)


def _binary_euclidean_kernel(width: float):
  """Our tabular LIME kernel for captum: `sqrt(exp(−D²/w²))`, `D² = d − |z|` (binary space)."""
  import torch

  def similarity(original, perturbed, interpretable, **kwargs):
    del original, perturbed, kwargs
    z = interpretable.float().reshape(-1)
    return torch.sqrt(torch.exp(-(z.numel() - z.sum()) / width ** 2))

  return similarity


def bench_captum_tabular(problem: Problem, method: str, *, n_samples: int, n_images: int,
                         perturbations_per_eval=None) -> dict:
  """captum's `Lime` / `KernelShap` on the PyTorch copy of the MLP (one unit per feature)."""
  import torch

  from benchmarks.torch_mlp import torch_mlp
  return captum_per_explanation(
      torch_mlp(problem.params), method, torch.from_numpy(problem.x), problem.targets,
      baselines=torch.from_numpy(problem.baseline[None]), feature_mask=None,
      similarity_func=_binary_euclidean_kernel(lime_width(problem)), n_samples=n_samples,
      n_images=n_images, perturbations_per_eval=perturbations_per_eval)


def bench_torch_floor_tabular(problem: Problem, *, n_samples: int, n_images: int) -> dict:
  """Seconds per explanation of the `N` forward passes of the PyTorch copy (captum's floor)."""
  import torch

  from benchmarks.torch_mlp import torch_mlp
  model = torch_mlp(problem.params)
  inputs = floor_inputs(problem, n_segments=problem.x.shape[1], n_samples=n_samples, batch=1)
  inputs = [torch.from_numpy(np.array(xs)) for xs in inputs[:n_images]]

  def explain_one(i):
    with torch.no_grad():
      return model(inputs[i])

  return _per_explanation(explain_one, n_images)


def prepare_parts(problem: Problem, *, n_samples: int) -> dict:
  """`name -> (run, info)` for parts of our explainers, jitted and vmapped over all rows.

  * `lime_sampling`: LIME's Bernoulli(½) masks alone (`random_binary_masks`, as `lime` draws them);
  * `lime_samples`: LIME without its fit (sampling, masking, the model, the kernel weights), so
    `lime − lime_samples` is what the fit adds in the fused program;
  * `masked_model`: masking + model + softmax probability on given masks (`evaluate_masked`),
    the floor's work plus the masking and the output selection;
  * `lime_solve`: the weighted ridge fit alone on given `(z, f, π)` (`weighted_least_squares`,
    Cholesky as `lime` solves it);
  * `kernel_shap_sampling`: KernelSHAP's coalitions and weights alone (`stratified_coalitions`,
    the default "kernel" sampler);
  * `kernel_shap_solve`: the constrained fit alone on given coalitions
    (`constrained_least_squares`, Cholesky as `kernel_shap` solves it).
  """
  import functools

  import jax

  from benchmarks.common import timed_compile
  from idexpo_jax.explainers.kernel_shap import stratified_coalitions
  from idexpo_jax.explainers.lime import lime_samples, random_binary_masks
  from idexpo_jax.core.lstsq import constrained_least_squares, weighted_least_squares
  from idexpo_jax.core.masking import evaluate_masked
  d = problem.x.shape[1]
  x, t = jnp.asarray(problem.x), jnp.asarray(problem.targets)
  keys = jax.random.split(jax.random.key(0), len(problem.x))

  @jax.jit
  def samples(params, xb, tb, kb):
    one = functools.partial(lime_samples, lambda z: problem.logits(params, z),
                            baseline=problem.baseline, n_samples=n_samples, **LIME_OPTIONS)
    return jax.vmap(one)(xb, tb, kb)

  @jax.jit
  def masked_model(params, xb, tb, zb):
    one = lambda xi, ti, zi: evaluate_masked(lambda z: problem.logits(params, z), xi, zi, ti,
                                             baseline=problem.baseline, output="prob")
    return jax.vmap(one)(xb, tb, zb)

  lime_solve = jax.jit(jax.vmap(lambda z, f, w: weighted_least_squares(
      z, f, w, ridge=1.0, method="cholesky")[0]))
  ks_solve = jax.jit(jax.vmap(lambda z, f, w: constrained_least_squares(
      z, f, w, total=f[0] - f[1], offset=f[1], method="cholesky")))
  bits = jax.jit(jax.vmap(lambda k: random_binary_masks(k, n_samples - 1, d)))
  coalitions = jax.jit(jax.vmap(lambda k: stratified_coalitions(k, d, n_samples)))
  s = samples(problem.params, x, t, keys)
  zk, wk = coalitions(keys)
  fk = masked_model(problem.params, x, t, zk)
  calls = {"lime_sampling": (bits, keys),
           "lime_samples": (samples, problem.params, x, t, keys),
           "masked_model": (masked_model, problem.params, x, t, s.z),
           "lime_solve": (lime_solve, s.z, s.f, s.weights),
           "kernel_shap_sampling": (coalitions, keys),
           "kernel_shap_solve": (ks_solve, zk, fk, wk)}
  info = {"n_images": len(problem.x)}
  out = {}
  for name, (fn, *args) in calls.items():
    compiled, _ = timed_compile(fn, *args)
    out[name] = (functools.partial(lambda c, a: jax.block_until_ready(c(*a)), compiled, args),
                 info)
  return out


LABELS = {"floor": "floor: B×N forward passes (jitted, one batch of all rows)",
          "lime_package": "`lime` package (`LimeBase.explain_instance_with_data`, matched)",
          "lime_tabular": "`lime` package (`LimeTabularExplainer`, as users run it)",
          "shap_package": "`shap.KernelExplainer` (baseline row)"}
PARTS = {"masked_model": "masking + model + softmax probability on given masks",
         "lime_sampling": "LIME's bit-packed Bernoulli(½) masks",
         "lime_samples": "LIME without its fit (masks, masking, model, kernel weights)",
         "lime_solve": "LIME's weighted ridge fit alone",
         "kernel_shap_sampling": "KernelSHAP's stratified coalitions",
         "kernel_shap_solve": "KernelSHAP's constrained fit alone"}
FLOOR_GOAL = 1.5  # the tabular MLP is cheap next to an explainer's own per-sample work


def markdown(row: dict) -> list[str]:
  """The tabular table (`benchmarks.run`), its goal rows, the timed parts and CPU-time ratios."""
  from benchmarks.common import fmt_x, md_table
  from benchmarks.explainers import METHODS, explainer_table
  lines = [f"### {row['model']} (ReLU), breast cancer, {row['n_features']} features, "
           f"{row['n_samples']} samples", ""]
  lines += explainer_table(row, labels=LABELS, variants={"lime": ("lime_tabular",)},
                           floor_goal=FLOOR_GOAL, tag=" (tabular MLP)")
  floor = row["floor"]["per_explanation_s"]
  parts = [[PARTS.get(k, k), fmt_x(v["per_explanation_s"] / floor)]
           for k, v in row.get("parts", {}).items()]
  cpu = [[f"`{m}` ÷ floor, CPU time", fmt_x(row["ratios"][f"{m}_over_floor_cpu"])]
         for m in METHODS if f"{m}_over_floor_cpu" in row["ratios"]]
  return lines + md_table(["part of ours (jitted and vmapped alone)", "÷ floor"], parts + cpu) + [
      "", f"{row['n_images']} test rows in one call; kernel width {row['kernel_width']:.2f}; "
      f"{row.get('wall_s', 0):.0f} s wall.", ""]
