"""Floors that include the alternative: our jitted ID-ExpO step beside the same step in PyTorch.

Timed side by side (round-robin, same load) in one process on the same cores:

* `ours`: `make_train_step` on `CE + λ·idexpo_penalty(grad_cam) + λ₂·mean(φ²)` (second order),
  SmallCNN, batch B, SGD-Nesterov (`benchmarks.train_steps`).
* `torch_step`: the plain, vectorised PyTorch step of `benchmarks.torch_idexpo` on a copy of the
  same weights (same loss, same gradients: tests/test_benchmarks.py).
* the bare forward+backward (CE, `jax.grad` / `loss.backward()`) of the B·(2M+2) images the step
  evaluates, in JAX and in PyTorch: the ratio of the two floors is the frameworks' convolution
  kernels (XLA CPU vs PyTorch's oneDNN/ATen), with no ID-ExpO code involved.

Compile time (`lower(...).compile()`) is reported apart from the steady state; PyTorch's first call
(eager, no compilation) is reported for comparison.
"""

from __future__ import annotations

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import (Problem, block, fmt_s, fmt_x, md_table, time_interleaved,
                               timed_compile)
from benchmarks.train_steps import FRACTION, LAM, LAM2, N_STEPS, idexpo_loss
from idexpo_jax.explainers.grad_cam import grad_cam
from idexpo_jax.metrics.soft_curves import soft_step_counts
from idexpo_jax.training.train import init_train_state, make_train_step


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def prepare_ours(problem: Problem, batch_size: int, *, chunk_size=None):
  """`(run, compile)` of our jitted Grad-CAM ID-ExpO step; `run()` blocks; `compile` holds the
  wall and CPU seconds of lower and compile (`common.timed_compile`)."""
  xb = jnp.asarray(problem.x[:batch_size])
  yb = jnp.asarray(problem.y[:batch_size])
  optimizer = optax.sgd(1e-4, momentum=0.9, nesterov=True)
  loss = idexpo_loss(problem, grad_cam, segments=None, chunk_size=chunk_size)
  step = make_train_step(loss, optimizer)
  state = init_train_state(jax.tree.map(jnp.copy, problem.params), optimizer)
  key = jax.random.key(0)
  compiled, compile_s = timed_compile(step, state, (xb, yb), key)
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], (xb, yb), key)
    return block(metrics)

  return run, compile_s


def floor_images(problem: Problem, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """The B·(2M+2) images of the step's floor (the batch repeated), NHWC, and their labels."""
  units = problem.x.shape[1] * problem.x.shape[2]
  _, m = soft_step_counts(units, N_STEPS, FRACTION)
  reps = 2 * m + 2
  return (np.concatenate([problem.x[:batch_size]] * reps),
          np.concatenate([problem.y[:batch_size]] * reps))


def prepare_jax_floor(problem: Problem, xs: np.ndarray, ys: np.ndarray):
  """`(run, compile)` of one jitted `jax.grad` of the CE over `xs` (as `prepare_ours`)."""
  grad = jax.jit(jax.grad(lambda p, xb, yb: _ce(problem.logits(p, xb), yb)))
  xs, ys = jnp.asarray(xs), jnp.asarray(ys)
  compiled, compile_s = timed_compile(grad, problem.params, xs, ys)
  return (lambda: block(compiled(problem.params, xs, ys))), compile_s


def prepare_torch(problem: Problem, batch_size: int, xs: np.ndarray, ys: np.ndarray, *,
                  device: str = "cpu"):
  """`{"torch_step": run, "torch_floor": run}` on `device`, and the first-call seconds of each.

  Each run synchronises the device (CUDA kernels are asynchronous) before it returns.
  """
  import torch

  from benchmarks.torch_cnn import torch_small_cnn
  from benchmarks.torch_idexpo import forward_backward, make_torch_step

  def tensor(a, dtype=np.float32, nchw=False):
    a = np.asarray(a, dtype)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2) if nchw else a)).to(device)

  def synced(fn):
    def run():
      out = fn()
      if device != "cpu":
        torch.cuda.synchronize()
      return out
    return run

  x, y = tensor(problem.x[:batch_size], nchw=True), tensor(problem.y[:batch_size], np.int64)
  base = tensor(problem.baseline[None], nchw=True)[0]
  model = torch_small_cnn(problem.params).to(device).train()  # no dropout/BN: train() == eval()
  step = make_torch_step(model, lr=1e-4, n_steps=N_STEPS, fraction=FRACTION, lam=LAM, lam2=LAM2)
  floor_model = torch_small_cnn(problem.params).to(device)
  fx, fy = tensor(xs, nchw=True), tensor(ys, np.int64)
  runs = {"torch_step": synced(lambda: step(x, y, base)),
          "torch_floor": synced(lambda: forward_backward(floor_model, fx, fy))}
  first = {}
  for name, run in runs.items():
    t0 = time.perf_counter()
    run()
    first[name] = time.perf_counter() - t0
  return runs, first, {"torch_threads": torch.get_num_threads(), "torch_device": device,
                       "mkldnn": bool(torch.backends.mkldnn.is_available())}


def bench_pytorch(problem: Problem, *, batch_size: int = 32, repeats: int = 3,
                  torch_device: str = "cpu") -> dict:
  """Our jitted Grad-CAM ID-ExpO step and the JAX floor beside the PyTorch step and floor.

  JAX runs on its default device; PyTorch on `torch_device` ("cuda" beside a JAX GPU).
  """
  xs, ys = floor_images(problem, batch_size)
  ours, ours_compile = prepare_ours(problem, batch_size)
  jax_floor, floor_compile = prepare_jax_floor(problem, xs, ys)
  runs = {"ours": ours, "jax_floor": jax_floor}
  out = {"batch_size": batch_size, "width": problem.width, "n_steps": N_STEPS,
         "fraction": FRACTION, "floor_images": len(xs),
         "image_shape": list(problem.x.shape[1:]), "second_order": True,
         "compile": {"ours": ours_compile, "jax_floor": floor_compile}}
  try:
    torch_runs, first, info = prepare_torch(problem, batch_size, xs, ys, device=torch_device)
  except ImportError as e:
    out["torch"] = {"error": f"not installed: {e}"}
    torch_runs, first, info = {}, {}, {}
  runs.update(torch_runs)
  out["torch_first_call_s"] = first
  out.update(info)
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*donated buffers.*")
    timings = time_interleaved(runs, repeats=repeats)
  out["timings"] = timings
  med = {k: v["median_s"] for k, v in timings.items()}
  out["ratios"] = _ratios(med)
  out["cpu_ratios"] = _ratios({k: v["cpu_median_s"] for k, v in timings.items()})
  return out


def _ratios(med: dict) -> dict:
  out = {"ours_over_jax_floor": med["ours"] / med["jax_floor"]}
  if "torch_step" in med:
    out.update(ours_over_torch_step=med["ours"] / med["torch_step"],
               jax_floor_over_torch_floor=med["jax_floor"] / med["torch_floor"],
               torch_step_over_torch_floor=med["torch_step"] / med["torch_floor"])
  return out


def markdown(pt: dict) -> list[str]:
  """Our step and the JAX floor beside the PyTorch step and floor: wall, CPU and their ratios."""
  t, n = pt["timings"], pt["floor_images"]
  first = {**pt.get("torch_first_call_s", {}),
           **{k: c["total_s"] for k, c in pt["compile"].items()}}
  labels = {"ours": "**idexpo_jax step** (jit)", "torch_step": "plain PyTorch step (eager)",
            "jax_floor": f"JAX floor: `jax.grad` of CE over {n} images",
            "torch_floor": f"PyTorch floor: `backward()` of CE over {n} images"}
  rows = []
  for key, label in labels.items():
    if key not in t:
      continue
    ratio = lambda k, base: fmt_x(t[key][k] / t[base][k]) if base in t else "–"
    rows.append([label, fmt_s(t[key]["median_s"]), fmt_s(t[key]["cpu_median_s"]),
                 fmt_s(first.get(key)), ratio("median_s", "jax_floor"),
                 ratio("median_s", "torch_step"), ratio("cpu_median_s", "torch_step")])
  return md_table(["", "s / step (wall)", "CPU s / step", "compile (ours) / first call (PyTorch)",
                   "÷ JAX floor", "÷ PyTorch step", "÷ PyTorch step, CPU time"], rows) + [
      "", f"B = {pt['batch_size']}, SmallCNN width {pt['width']}, n_steps = {pt['n_steps']}, "
      f"fraction = {pt['fraction']}; median of {len(t['ours']['times_s'])} round-robin repeats; "
      f"PyTorch {pt.get('torch_threads', '?')} threads.", ""]
