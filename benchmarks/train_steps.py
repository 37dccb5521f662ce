"""Cost of the ID-ExpO train step vs. the forward+backward of the images it contains.

The step is `make_train_step` on `CE + λ · idexpo_penalty + λ₂ · mean(φ²)` with
Grad-CAM (units: pixels), LIME or KernelSHAP (units: grid segments). Per example it evaluates
the clean image (CE), the `M` soft-insertion and `M` soft-deletion images and the clean image
again for the deletion ratio, i.e. `2M + 2` images, plus the `N` samples of LIME / KernelSHAP
(whose values stay in the graph). Two floors are timed with one jitted `jax.grad` of a CE over
a batch of that many images: the curve floor `B·(2M+2)` and the full floor `B·(N+2M+2)`.
The plain CE step on the `B` images is timed too. Compilation (lower + compile) is timed apart
from the steady-state step; memory comes from the device's `memory_stats()` when it has them,
else from the compiled executable's `memory_analysis()` (XLA's buffer assignment).
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import Problem, block, fmt_s, fmt_x, md_table, time_call
from benchmarks.explainers import our_explainer
from idexpo_jax.explainers.grad_cam import grad_cam
from idexpo_jax.regularisers.idexpo import IdExpo
from idexpo_jax.core.masking import num_units
from idexpo_jax.models import predictor_fn
from idexpo_jax.metrics.soft_curves import soft_step_counts
from idexpo_jax.training.train import init_train_state, make_train_step

N_STEPS, FRACTION, LAM, LAM2 = 64, 0.5, 0.01, 1e-4


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def ce_loss(problem: Problem):
  """Plain cross-entropy `loss_fn(params, batch, key)`."""

  def loss_fn(params, batch, key):
    del key
    xb, yb = batch
    return _ce(problem.logits(params, xb), yb), {}

  return loss_fn


def idexpo_loss(problem: Problem, explainer: Callable, *, segments: Optional[np.ndarray],
                chunk_size: Optional[int] = None):
  """`CE + λ · mean(cIns + cDel) + λ₂ · mean(φ²)` with the reference λ, λ₂, steps and fraction.

  `chunk_size`: soft images per model call inside the penalty (`idexpo_penalty`'s option).
  """

  def loss_fn(params, batch, key):
    xb, yb = batch
    predictor = predictor_fn(problem.graphdef, params, problem.rest)
    ce = _ce(predictor(xb), yb)
    penalty, aux = IdExpo(explainer, baseline=problem.baseline, segments=segments, n_steps=N_STEPS, fraction=FRACTION, chunk_size=chunk_size)(predictor, xb, yb, key)
    return ce + LAM * penalty + LAM2 * aux["attribution_sq"], {"ce": ce, **aux}

  return loss_fn


def memory_bytes(compiled) -> dict:
  """Peak memory of a compiled step: device stats if any, else XLA's buffer assignment."""
  stats = jax.devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    return {"source": "device.memory_stats", "peak_bytes": int(stats["peak_bytes_in_use"])}
  try:
    ma = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    ma = None
  if ma is None:
    return {"source": "unavailable", "peak_bytes": None}
  total = (ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes
           - ma.alias_size_in_bytes)
  return {"source": "compiled.memory_analysis", "peak_bytes": int(total),
          "temp_bytes": int(ma.temp_size_in_bytes)}


def _time_step(problem: Problem, loss_fn, batch, *, repeats: int) -> dict:
  """Compile time, steady-state step time and memory of `make_train_step(loss_fn, sgd)`."""
  optimizer = optax.sgd(1e-4, momentum=0.9, nesterov=True)
  step = make_train_step(loss_fn, optimizer)
  state = init_train_state(jax.tree.map(jnp.copy, problem.params), optimizer)
  key = jax.random.key(0)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - t0
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], batch, key)
    return block(metrics)

  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*donated buffers.*")
    timing = time_call(run, repeats=repeats)
  return {"step_s": timing["median_s"], "times_s": timing["times_s"], "compile_s": compile_s,
          "memory": memory_bytes(compiled)}


def _time_forward_backward(problem: Problem, n_images: int, *, repeats: int) -> dict:
  """Median time of one jitted `jax.grad` of the CE over `n_images` images."""
  reps = -(-n_images // len(problem.x))
  xs = jnp.asarray(np.concatenate([problem.x] * reps)[:n_images])
  ys = jnp.asarray(np.concatenate([problem.y] * reps)[:n_images])
  grad = jax.jit(jax.grad(lambda p, xb, yb: _ce(problem.logits(p, xb), yb)))
  timing = time_call(lambda: block(grad(problem.params, xs, ys)), repeats=repeats)
  return {"n_images": n_images, "median_s": timing["median_s"], "times_s": timing["times_s"]}


def explainers_for_training(problem: Problem, *, n_segments: int, n_samples: int) -> dict:
  """`name -> (explainer, segments, samples per example)` for the ID-ExpO step."""
  segments = problem.segments(n_segments)
  out = {"grad_cam": (grad_cam, None, 0)}
  for name in ("lime", "kernel_shap"):
    fn = our_explainer(name)
    if fn is None:
      continue
    extra = n_samples + (2 if name == "kernel_shap" else 0)  # KernelSHAP also evaluates v(1), v(0)
    out[name] = (functools.partial(_bound, fn, segments=segments, baseline=problem.baseline,
                                   n_samples=n_samples), segments, extra)
  return out


def _bound(explain, predictor, x, target, key, **kwargs):
  return explain(predictor, x, target, key, **kwargs)


def bench_train_steps(problem: Problem, *, batch_size: int, n_segments: int, n_samples: int,
                      repeats: int) -> dict:
  """Times the CE step, the ID-ExpO steps and their forward+backward floors."""
  xb = jnp.asarray(problem.x[:batch_size])
  yb = jnp.asarray(problem.y[:batch_size])
  batch = (xb, yb)
  results = {"batch_size": batch_size, "n_steps": N_STEPS, "fraction": FRACTION,
             "ce": _time_step(problem, ce_loss(problem), batch, repeats=repeats)}
  results["ce"]["floor"] = _time_forward_backward(problem, batch_size, repeats=repeats)
  results["ce"]["step_over_floor"] = results["ce"]["step_s"] / results["ce"]["floor"]["median_s"]
  for name, (explainer, segments, extra) in explainers_for_training(
      problem, n_segments=n_segments, n_samples=n_samples).items():
    units = num_units(problem.x.shape[1:], segments)
    _, m = soft_step_counts(units, N_STEPS, FRACTION)
    r = _time_step(problem, idexpo_loss(problem, explainer, segments=segments), batch,
                   repeats=repeats)
    r.update(units=units, soft_steps=m, samples_per_example=extra)
    r["curve_floor"] = _time_forward_backward(problem, batch_size * (2 * m + 2), repeats=repeats)
    r["floor"] = (r["curve_floor"] if not extra else
                  _time_forward_backward(problem, batch_size * (extra + 2 * m + 2),
                                         repeats=repeats))
    r["step_over_floor"] = r["step_s"] / r["floor"]["median_s"]
    results[name] = r
  return results


STEP_GOAL = 1.5  # ID-ExpO step ≤ 1.5× the forward+backward of its images


def markdown(ts: dict) -> list[str]:
  """The train-step table: each step beside its forward+backward floors, and the goal rows."""
  mib = lambda r: "–" if r["memory"]["peak_bytes"] is None else (
      f"{r['memory']['peak_bytes'] / 2 ** 20:.0f} MiB")
  ce = ts["ce"]
  rows = [["plain CE", fmt_s(ce["step_s"]), fmt_s(ce["compile_s"]), mib(ce), ts["batch_size"],
           fmt_s(ce["floor"]["median_s"]), fmt_x(ce["step_over_floor"]), "", ""]]
  goals = []
  names = {"grad_cam": ("ID-ExpO + Grad-CAM", "pixels"), "lime": ("ID-ExpO + LIME", "segments"),
           "kernel_shap": ("ID-ExpO + KernelSHAP", "segments")}
  for key, (name, unit) in names.items():
    if key not in ts:
      continue
    r = ts[key]
    cf = r["curve_floor"]["median_s"]
    rows.append([f"{name} ({r['units']} {unit}, M = {r['soft_steps']}, N = "
                 f"{r['samples_per_example']})", fmt_s(r["step_s"]), fmt_s(r["compile_s"]),
                 mib(r), r["floor"]["n_images"], fmt_s(r["floor"]["median_s"]),
                 fmt_x(r["step_over_floor"]), fmt_s(cf), fmt_x(r["step_s"] / cf)])
    met = "yes" if r["step_over_floor"] <= STEP_GOAL else "no"
    goals.append([f"{name} step ≤ {STEP_GOAL}× its forward+backward floor",
                  fmt_x(r["step_over_floor"]), met])
  return (md_table(["step", "step time", "compile", "peak memory", "floor images", "floor (f+b)",
                    "step ÷ floor", "curve floor B·(2M+2)", "step ÷ curve floor"], rows)
          + [""] + md_table(["goal", "measured", "met"], goals)
          + ["", f"B = {ts['batch_size']}, n_steps = {ts['n_steps']}, fraction = "
             f"{ts['fraction']}; peak memory from `{ce['memory']['source']}`.", ""])
