"""Shared pieces of the benchmarks: the problem (model, inputs, targets), timers, machine info and
the writer of the results (`save_section`).

Every timed call blocks until its result is ready; a time is the median of repeats after a
warm-up call (which includes compilation), because the machine may be shared and noisy.

Results: each benchmark stores its section (a JSON object) under its name in
`benchmarks/results.json` and writes its Markdown tables between the markers
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->` of `docs/benchmarks.md`; the text around the
markers is written by hand and left alone.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import sys
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from idexpo_jax.core.masking import grid_segments
from idexpo_jax.models import SmallCNN, functional, predictor_fn
from idexpo_jax.core.predictor import target_prob


class Problem(NamedTuple):
  """The model and inputs every explainer is timed on: a `SmallCNN` on images or an `MLP` on rows.

  Attributes:
    graphdef, params, rest: the split model (`models.functional`).
    x: inputs, images `(B, H, W, C)` or rows `(B, D)`, float32.
    y: their labels `(B,)`.
    targets: the predicted classes at the clean inputs `(B,)` (the explained class).
    baseline: the removed-unit value (training mean), broadcastable to an input.
    width: the CNN width (images).
    x_train: the training rows (rows; for `LimeTabularExplainer`'s statistics).
    hidden: the MLP's hidden sizes (rows).
  """

  graphdef: Any
  params: Any
  rest: Any
  x: np.ndarray
  y: np.ndarray
  targets: np.ndarray
  baseline: np.ndarray
  width: int = 0
  x_train: Optional[np.ndarray] = None
  hidden: tuple = ()

  def logits(self, params, xb):
    """Logits of the JAX model, a pure function of `params` (jit it)."""
    return predictor_fn(self.graphdef, params, self.rest)(xb)

  def segments(self, n_segments: int) -> Optional[np.ndarray]:
    """Images: a grid of `n_segments` square cells (a perfect square). Rows: None (one unit per
    feature; `n_segments` must equal the number of features)."""
    if self.x.ndim == 2:
      if n_segments != self.x.shape[1]:
        raise ValueError(f"`n_segments` must equal the {self.x.shape[1]} features; got "
                         f"{n_segments}.")
      return None
    side = int(round(np.sqrt(n_segments)))
    height = self.x.shape[1]
    if side * side != n_segments or height % side:
      raise ValueError(f"`n_segments` must be a square whose root divides {height}; got "
                       f"{n_segments}.")
    return grid_segments(height, self.x.shape[2], height // side)


def make_problem(*, n_images: int, size: int = 16, width: int = 32, seed: int = 0) -> Problem:
  """A `SmallCNN` at its random initialisation and `n_images` digits images of `size`×`size`.

  The speed of an explainer does not depend on the weights, so the model is not trained; the
  explained class is the model's prediction, as in evaluation.
  """
  from idexpo_jax.data.sklearn_data import load_digits_images  # scikit-learn: the `bench` extra
  data = load_digits_images(size=size, seed=seed)
  if n_images > len(data.test.x):
    raise ValueError(f"`n_images` must be <= {len(data.test.x)}; got {n_images}.")
  model = SmallCNN(data.train.x.shape[-1], data.num_classes, width=width, rngs=nnx.Rngs(seed))
  graphdef, params, rest = functional(model)
  x = data.test.x[:n_images]
  logits = predictor_fn(graphdef, params, rest)(jnp.asarray(x))
  targets = np.asarray(jnp.argmax(logits, axis=-1), dtype=np.int32)
  return Problem(graphdef, params, rest, x, data.test.y[:n_images], targets,
                 np.asarray(data.mean, np.float32), width=width)


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


def timed_compile(jitted, *args) -> tuple[Any, dict]:
  """`(compiled, seconds)`: wall and CPU seconds (this process, all threads) of `lower` and of
  `compile`, keys `lower_s`, `compile_s`, `total_s` and the same with `_cpu_s`."""
  c0, t0 = time.process_time(), time.perf_counter()
  lowered = jitted.lower(*args)
  c1, t1 = time.process_time(), time.perf_counter()
  compiled = lowered.compile()
  c2, t2 = time.process_time(), time.perf_counter()
  return compiled, {"lower_s": t1 - t0, "compile_s": t2 - t1, "total_s": t2 - t0,
                    "lower_cpu_s": c1 - c0, "compile_cpu_s": c2 - c1, "total_cpu_s": c2 - c0}


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


RESULTS, DOC = "benchmarks/results.json", "docs/benchmarks.md"


def fmt_s(t: Optional[float]) -> str:
  """Seconds as `1.23 s`, `45.6 ms` or `789 µs` (`–` for None)."""
  if t is None:
    return "–"
  return f"{t:.2f} s" if t >= 1 else f"{t * 1e3:.1f} ms" if t >= 1e-3 else f"{t * 1e6:.0f} µs"


def fmt_x(r: Optional[float]) -> str:
  """A ratio as `1.23×`, or `123×` from 10 on (`–` for None)."""
  return "–" if r is None else f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
  """A Markdown table: the first column left-aligned, the others right-aligned."""
  line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"
  return [line(header), line(["---"] + ["---:"] * (len(header) - 1)), *map(line, rows)]


def machine_line(m: dict) -> str:
  """One sentence on where a section was measured: CPU, device, versions, load average."""
  v = m.get("versions", {})
  load = lambda k: ", ".join(f"{x:.1f}" for x in m.get(k) or []) or "?"
  return (f"Measured on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
          f"{m.get('jax_device', '?')}, jax {v.get('jax', '?')}, torch {v.get('torch', '?')}; "
          f"load average {load('load_average')} at start, {load('load_average_end')} at end.")


def saved_section(name: str, out: str = RESULTS) -> dict:
  """The `name` section of the results at `out` (empty if there is none)."""
  if not os.path.exists(out):
    return {}
  with open(out) as f:
    return json.load(f).get(name, {})


def save_section(name: str, section: dict, markdown: Sequence[str], *, out: str = RESULTS,
                 doc: str = DOC) -> None:
  """Stores `section` under `name` in the JSON at `out` and `markdown` in the doc at `doc`.

  The other sections of `out` stay. In `doc` the lines between `<!-- bench:name -->` and
  `<!-- /bench:name -->` are replaced by `markdown` and a line on the machine (from
  `section["machine"]`); without the markers, a `## name` section holding them is appended.
  Either file is created if missing.
  """
  if not re.fullmatch(r"[A-Za-z0-9_]+", name):
    raise ValueError(f"`name` must be letters, digits and underscores; got {name!r}.")
  results = {}
  if os.path.exists(out):
    with open(out) as f:
      results = json.load(f)
  results[name] = section
  for path in (out, doc):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(out, "w") as f:
    json.dump(results, f, indent=1)
  text = ""
  if os.path.exists(doc):
    with open(doc) as f:
      text = f.read()
  start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
  body = "\n".join([start, *markdown, *([machine_line(section["machine"]), ""]
                                        if "machine" in section else []), end])
  pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
  if pattern.search(text):
    text = pattern.sub(lambda _: body, text, count=1)
  else:
    text = text.rstrip("\n") + ("\n\n" if text else "") + f"## {name}\n\n{body}\n"
  with open(doc, "w") as f:
    f.write(text)


def check_quick_paths(parser, args) -> None:
  """Stops a `--quick` run (tiny sizes) that would save over the measured results."""
  if args.quick and not getattr(args, "no_save", False) and {args.out, args.doc} & {RESULTS, DOC}:
    parser.error(f"--quick measures tiny sizes: give --out and --doc other than {RESULTS} and "
                 f"{DOC} (or --no-save).")


def budget_benchmark_main(argv, *, description: str, name: str, run: Callable[..., dict],
                          markdown: Callable[[dict], list], rows: Optional[int],
                          seeds: Optional[int], png: bool = False,
                          finish: Optional[Callable[[dict, Any], list]] = None) -> dict:
  """The command line shared by the error-vs-budget benchmarks.

  Parses `--rows`, `--seeds`, `--quick` (2 rows, 2 seeds, budgets 64 and 256), `--out`, `--doc`
  (and `--png`, default `docs/<name>.png`, with `png=True`), runs `run(n_rows=, seeds=[,
  budgets=])`, adds the machine, lets `finish(section, args)` add to it (returning the extra files
  written), and saves the section `name` with its `markdown(section)` (`save_section`).
  """
  import argparse
  p = argparse.ArgumentParser(description=description)
  p.add_argument("--rows", type=int, default=rows, help="default: the benchmark's own")
  p.add_argument("--seeds", type=int, default=seeds)
  p.add_argument("--quick", action="store_true", help="2 rows, 2 seeds, budgets 64 and 256")
  p.add_argument("--out", default=RESULTS)
  p.add_argument("--doc", default=DOC)
  if png:
    p.add_argument("--png", default=f"docs/{name}.png")
  args = p.parse_args(argv)
  check_quick_paths(p, args)
  if args.quick:
    section = run(n_rows=2, seeds=2, budgets=(64, 256))
  else:
    section = run(n_rows=args.rows, seeds=args.seeds)
  section["machine"] = machine_info()
  written = finish(section, args) if finish is not None else []
  section["machine"]["load_average_end"] = list(os.getloadavg())
  save_section(name, section, markdown(section), out=args.out, doc=args.doc)
  print(f"[{name} {time.strftime('%H:%M:%S')}] wrote " + ", ".join([args.out, args.doc, *written]),
        file=sys.stderr, flush=True)
  return section
