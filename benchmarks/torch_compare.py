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

from benchmarks.common import Problem, block, time_interleaved
from benchmarks.train_steps import FRACTION, LAM, LAM2, N_STEPS, idexpo_loss
from idexpo_jax.grad_cam import grad_cam
from idexpo_jax.soft_curves import soft_step_counts
from idexpo_jax.train import init_train_state, make_train_step


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def prepare_ours(problem: Problem, batch_size: int, *, chunk_size=None):
  """`(run, compile_s)` of our jitted Grad-CAM ID-ExpO step; `run()` blocks."""
  xb = jnp.asarray(problem.x[:batch_size])
  yb = jnp.asarray(problem.y[:batch_size])
  optimizer = optax.sgd(1e-4, momentum=0.9, nesterov=True)
  loss = idexpo_loss(problem, grad_cam, segments=None, chunk_size=chunk_size)
  step = make_train_step(loss, optimizer)
  state = init_train_state(jax.tree.map(jnp.copy, problem.params), optimizer)
  key = jax.random.key(0)
  t0 = time.perf_counter()
  compiled = step.lower(state, (xb, yb), key).compile()
  compile_s = time.perf_counter() - t0
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
  """`(run, compile_s)` of one jitted `jax.grad` of the CE over `xs`."""
  grad = jax.jit(jax.grad(lambda p, xb, yb: _ce(problem.logits(p, xb), yb)))
  xs, ys = jnp.asarray(xs), jnp.asarray(ys)
  t0 = time.perf_counter()
  compiled = grad.lower(problem.params, xs, ys).compile()
  compile_s = time.perf_counter() - t0
  return (lambda: block(compiled(problem.params, xs, ys))), compile_s


def prepare_torch(problem: Problem, batch_size: int, xs: np.ndarray, ys: np.ndarray):
  """`{"torch_step": run, "torch_floor": run}` and the first-call seconds of each."""
  import torch

  from benchmarks.torch_cnn import torch_small_cnn
  from benchmarks.torch_idexpo import forward_backward, make_torch_step

  def nchw(a):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32).transpose(0, 3, 1, 2)))

  x, y = nchw(problem.x[:batch_size]), torch.from_numpy(problem.y[:batch_size].astype(np.int64))
  base = torch.from_numpy(np.ascontiguousarray(problem.baseline.transpose(2, 0, 1)))
  model = torch_small_cnn(problem.params).train()  # no dropout/BN: train() == eval() here
  step = make_torch_step(model, lr=1e-4, n_steps=N_STEPS, fraction=FRACTION, lam=LAM, lam2=LAM2)
  floor_model = torch_small_cnn(problem.params)
  fx, fy = nchw(xs), torch.from_numpy(ys.astype(np.int64))
  runs = {"torch_step": lambda: step(x, y, base),
          "torch_floor": lambda: forward_backward(floor_model, fx, fy)}
  first = {}
  for name, run in runs.items():
    t0 = time.perf_counter()
    run()
    first[name] = time.perf_counter() - t0
  return runs, first, {"torch_threads": torch.get_num_threads(),
                       "mkldnn": bool(torch.backends.mkldnn.is_available())}


def bench_pytorch(problem: Problem, *, batch_size: int = 32, repeats: int = 3) -> dict:
  """Our jitted Grad-CAM ID-ExpO step and the JAX floor beside the PyTorch step and floor."""
  xs, ys = floor_images(problem, batch_size)
  ours, ours_compile = prepare_ours(problem, batch_size)
  jax_floor, floor_compile = prepare_jax_floor(problem, xs, ys)
  runs = {"ours": ours, "jax_floor": jax_floor}
  out = {"batch_size": batch_size, "width": problem.width, "n_steps": N_STEPS,
         "fraction": FRACTION, "floor_images": len(xs),
         "image_shape": list(problem.x.shape[1:]), "second_order": True,
         "compile_s": {"ours": ours_compile, "jax_floor": floor_compile}}
  try:
    torch_runs, first, info = prepare_torch(problem, batch_size, xs, ys)
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
  out["ratios"] = {"ours_over_jax_floor": med["ours"] / med["jax_floor"]}
  if "torch_step" in med:
    out["ratios"].update(
        ours_over_torch_step=med["ours"] / med["torch_step"],
        jax_floor_over_torch_floor=med["jax_floor"] / med["torch_floor"],
        torch_step_over_torch_floor=med["torch_step"] / med["torch_floor"])
  return out
