"""Shared pieces of the benchmarks: the problem (model, images, targets), timers, machine info.

Every timed call blocks until its result is ready; a time is the median of repeats after a
warm-up call (which includes compilation), because the machine may be shared and noisy.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from idexpo_jax.data.sklearn_data import load_digits_images
from idexpo_jax.core.masking import grid_segments
from idexpo_jax.models import SmallCNN, functional, predictor_fn
from idexpo_jax.core.predictor import target_prob


class Problem(NamedTuple):
  """The model and inputs every explainer is timed on.

  Attributes:
    graphdef, params, rest: the split `SmallCNN` (`models.functional`).
    x: images `(B, H, W, C)` float32 (test split of the digits, upsampled).
    y: their labels `(B,)`.
    targets: the predicted classes at the clean inputs `(B,)` (the explained class).
    baseline: the removed-unit value (training mean), broadcastable to an image.
    width: the CNN width.
  """

  graphdef: Any
  params: Any
  rest: Any
  x: np.ndarray
  y: np.ndarray
  targets: np.ndarray
  baseline: np.ndarray
  width: int

  def logits(self, params, xb):
    """Logits of the JAX model, a pure function of `params` (jit it)."""
    return predictor_fn(self.graphdef, params, self.rest)(xb)

  def segments(self, n_segments: int) -> np.ndarray:
    """Grid segmentation with `n_segments` square cells (a perfect square)."""
    side = int(round(np.sqrt(n_segments)))
    height = self.x.shape[1]
    if side * side != n_segments or height % side:
      raise ValueError(f"`n_segments` must be a square whose root divides {height}; got "
                       f"{n_segments}.")
    return grid_segments(height, self.x.shape[2], height // side)


def make_problem(*, n_images: int, size: int = 16, width: int = 32, seed: int = 0) -> Problem:
  """A `SmallCNN` at its random initialisation and `n_images` digits images of `size`×`size`.

  The speed of an explainer does not depend on the weights, so the model is not trained; the
  explained class is the model's prediction, as in evaluation (SPEC §1).
  """
  data = load_digits_images(size=size, seed=seed)
  if n_images > len(data.test.x):
    raise ValueError(f"`n_images` must be <= {len(data.test.x)}; got {n_images}.")
  model = SmallCNN(data.train.x.shape[-1], data.num_classes, width=width, rngs=nnx.Rngs(seed))
  graphdef, params, rest = functional(model)
  x = data.test.x[:n_images]
  logits = predictor_fn(graphdef, params, rest)(jnp.asarray(x))
  targets = np.asarray(jnp.argmax(logits, axis=-1), dtype=np.int32)
  return Problem(graphdef, params, rest, x, data.test.y[:n_images], targets,
                 np.asarray(data.mean, np.float32), width)


def jitted_predict_proba(problem: Problem) -> Callable[[np.ndarray], np.ndarray]:
  """`images (n, H, W, C) -> softmax probabilities (n, K)` as NumPy: what the packages call."""
  fn = jax.jit(lambda p, xb: jax.nn.softmax(problem.logits(p, xb), axis=-1))
  return lambda xb: np.asarray(fn(problem.params, jnp.asarray(xb, jnp.float32)))


def jitted_masked_prob(problem: Problem, segments: np.ndarray):
  """`(x, z (n, d), target) -> p_target` of the masked images, as NumPy (for shap)."""
  from idexpo_jax.core.masking import apply_unit_mask

  def fn(params, x, z, target):
    xs = apply_unit_mask(x, z, problem.baseline, segments=segments)
    return target_prob(lambda xb: problem.logits(params, xb), xs, target)

  jitted = jax.jit(fn)
  return lambda x, z, target: np.asarray(
      jitted(problem.params, jnp.asarray(x), jnp.asarray(z, jnp.float32), target))


def block(tree):
  """Waits for every array of a pytree (JAX or NumPy)."""
  return jax.block_until_ready(tree)


def time_call(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1,
              warmup_fn: Optional[Callable[[], Any]] = None) -> dict:
  """Median wall time of `fn()` (which must block) over `repeats` calls after `warmup` calls.

  Args:
    fn: the timed call; it must block until its results are ready.
    repeats: timed calls.
    warmup: untimed calls before them (the first one compiles).
    warmup_fn: a cheaper call that compiles the same executables (e.g. one group of a loop over
      equal groups), used instead of `fn` for the warm-up calls.

  Returns:
    `{"median_s", "min_s", "times_s", "first_s"}`; `first_s` is the first warm-up call
    (compilation included) or None without warm-up.
  """
  first = None
  for i in range(warmup):
    t0 = time.perf_counter()
    (warmup_fn or fn)()
    if i == 0:
      first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
          "first_s": first}


def time_interleaved(runs: dict, *, repeats: int = 3) -> dict:
  """Times several blocking calls round-robin, so that they share the same machine load.

  Each call gets one untimed warm-up; then every round times each call once. Besides wall time
  it records this process's CPU time (all its threads) per call: on a machine shared with other
  jobs the wall time grows with their load, the CPU time much less (it counts the work done).

  Returns:
    `name -> {"median_s", "min_s", "times_s", "cpu_median_s", "cpu_times_s"}`.
  """
  for fn in runs.values():
    fn()
  times = {name: [] for name in runs}
  cpu = {name: [] for name in runs}
  for _ in range(repeats):
    for name, fn in runs.items():
      c0, t0 = time.process_time(), time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
      cpu[name].append(time.process_time() - c0)
  return {name: {"median_s": statistics.median(t), "min_s": min(t), "times_s": t,
                 "cpu_median_s": statistics.median(cpu[name]), "cpu_times_s": cpu[name]}
          for name, t in times.items()}


def cpu_model() -> str:
  """The CPU model name from /proc/cpuinfo (or `platform.processor()`)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _version(name: str) -> str:
  try:
    from importlib.metadata import version
    return version(name)
  except Exception:  # pylint: disable=broad-except
    return "not installed"


def machine_info() -> dict:
  """CPU, cores, JAX device and package versions, for the report."""
  dev = jax.devices()[0]
  return {
      "cpu": cpu_model(),
      "cores": os.cpu_count(),
      "platform": platform.platform(),
      "python": platform.python_version(),
      "jax_device": f"{dev.platform}: {dev.device_kind}",
      "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
      "versions": {n: _version(n) for n in ("jax", "jaxlib", "flax", "numpy", "torch", "lime",
                                            "shap", "captum", "scikit-learn")},
  }


def budget_benchmark_main(argv, *, description: str, name: str, run: Callable[..., dict],
                          rows: Optional[int], seeds: Optional[int], png: bool = False,
                          finish: Optional[Callable[[dict, Any], list]] = None) -> dict:
  """The command line shared by the error-vs-budget benchmarks.

  Parses `--rows`, `--seeds`, `--quick` (2 rows, 2 seeds, budgets 64 and 256), `--out`, `--doc`
  (and `--png`, default `docs/<name>.png`, with `png=True`), runs `run(n_rows=, seeds=[, budgets=])`, adds the
  machine, lets `finish(section, args)` add to it (returning the extra files written), and
  merges the section `name` into `--out` and `--doc` (`report.save_section`).
  """
  import argparse
  from benchmarks.report import save_section
  p = argparse.ArgumentParser(description=description)
  p.add_argument("--rows", type=int, default=rows, help="default: the benchmark's own")
  p.add_argument("--seeds", type=int, default=seeds)
  p.add_argument("--quick", action="store_true", help="2 rows, 2 seeds, budgets 64 and 256")
  p.add_argument("--out", default="benchmarks/results.json")
  p.add_argument("--doc", default="docs/benchmarks.md")
  if png:
    p.add_argument("--png", default=f"docs/{name}.png")
  args = p.parse_args(argv)
  if args.quick:
    section = run(n_rows=2, seeds=2, budgets=(64, 256))
  else:
    section = run(n_rows=args.rows, seeds=args.seeds)
  section["machine"] = machine_info()
  written = finish(section, args) if finish is not None else []
  save_section(args.out, args.doc, name, section)
  print(f"[{name} {time.strftime('%H:%M:%S')}] wrote " + ", ".join([args.out, args.doc, *written]),
        file=sys.stderr, flush=True)
  return section
