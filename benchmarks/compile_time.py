"""Compile time of the ID-ExpO step: cold vs warm persistent cache, and the ResNet-18 cold compile.

`python -m benchmarks.compile_time` runs every measurement in a fresh process (a compile in the
same process would reuse XLA's in-memory caches):

* Persistent cache (`experiments.common.compilation_cache`, which every experiment driver turns
  on): the SmallCNN Grad-CAM ID-ExpO step of `benchmarks.torch_compare` (B = 32, width 32,
  second order) compiled in a process with an empty cache directory (cold), then again in a new
  process with the directory the first one filled (warm). Reported: trace + lower seconds (not
  cached: JAX retraces in every process) and `compile()` seconds (served from disk when warm).
* ResNet-18 (CIFAR, stride-2 stem, Grad-CAM on the second stage as in `benchmarks.gpu`), small
  input (32×32×3, B = 8), cold, each `RESNET_CONFIGS` entry in a fresh process, round-robin
  (`--rounds`, median): the ID-ExpO step as the image experiments run it (CE taken from the
  penalty's clean row, `idexpo_penalty`'s `clean_ce`; `ce_from_penalty` in the configs) beside
  the formulation before it (CE of its own forward pass, `*_separate_ce`), for Grad-CAM (second
  and first order) and for LIME (the CIFAR config: 64 grid cells, 1000 samples in chunks of
  250); the plain CE step and the forward+backward floor of the B·(2M+2) images, so the step's
  compile can be read against the model's own; the step at other batch and image sizes (compile
  time does not depend on them); with `optax.flatten` and under XLA's compile-time options.
* `--steady`: the steady-state step time of each formulation pair, compiled in one process and
  run interleaved (`--repeats` calls each, median wall and CPU seconds per step).

Results merge into `benchmarks/results.json` under `"compile"` and render in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed_compile(jitted, *args) -> tuple[object, dict]:
  """Wall and CPU seconds (this process, all threads) of `lower` and of `compile`."""
  c0, t0 = time.process_time(), time.perf_counter()
  lowered = jitted.lower(*args)
  c1, t1 = time.process_time(), time.perf_counter()
  compiled = lowered.compile()
  c2, t2 = time.process_time(), time.perf_counter()
  return compiled, {"lower_s": t1 - t0, "compile_s": t2 - t1, "total_s": t2 - t0,
                    "lower_cpu_s": c1 - c0, "compile_cpu_s": c2 - c1, "total_cpu_s": c2 - c0}


def smallcnn_step_compile(cache_dir: str) -> dict:
  """Trace/lower and compile seconds of the SmallCNN Grad-CAM ID-ExpO step, cache at `cache_dir`."""
  from experiments.common.compilation_cache import enable_compilation_cache
  enable_compilation_cache(cache_dir)
  import jax
  import jax.numpy as jnp
  import optax

  from benchmarks.common import make_problem
  from benchmarks.train_steps import idexpo_loss
  from idexpo_jax.explainers.grad_cam import grad_cam
  from idexpo_jax.training.train import init_train_state, make_train_step
  problem = make_problem(n_images=32, width=32)
  optimizer = optax.sgd(1e-4, momentum=0.9, nesterov=True)
  step = make_train_step(idexpo_loss(problem, grad_cam, segments=None), optimizer)
  state = init_train_state(jax.tree.map(jnp.copy, problem.params), optimizer)
  batch = (jnp.asarray(problem.x), jnp.asarray(problem.y))
  _, t = timed_compile(step, state, batch, jax.random.key(0))
  return t


LIME = {"cell": 4, "n_samples": 1000, "chunk_size": 250}  # experiments/image/configs/cifar10.py


def resnet_step(*, batch: int, width: int, size: int, n_steps: int, kind: str,
                lime_options: dict | None = None):
  """`(jitted, args)` of a CIFAR ResNet-18 step.

  `kind`: "idexpo" (Grad-CAM, second order), "idexpo_first_order", "idexpo_lime" (LIME with
  `lime_options`, default `LIME`), each with the CE taken from `idexpo_penalty`'s `clean_ce`;
  the suffix "_separate_ce" computes the CE from a forward pass of its own instead (the
  formulation before `clean_ce`; the same loss up to float32 rounding); "ce" (plain CE step) or
  "floor" (jax.grad of the CE over the B·(2M+2) images of the ID-ExpO step). A suffix
  "_flat_opt" wraps the optimizer in `optax.flatten` (one update over the concatenated
  parameters instead of one per array; the same arithmetic per element); "_unchunked" (LIME)
  evaluates the samples in one model call (`chunk_size=None`).
  """
  flat_opt = kind.endswith("_flat_opt")
  kind = kind.removesuffix("_flat_opt")
  if kind.endswith("_unchunked"):  # LIME's samples in one model call instead of `lax.map` chunks
    kind, lime_options = kind.removesuffix("_unchunked"), {**(lime_options or {}),
                                                            "chunk_size": None}
  separate_ce = kind.endswith("_separate_ce")
  kind = kind.removesuffix("_separate_ce")
  import functools

  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  import idexpo_jax as ij
  from idexpo_jax import models
  from idexpo_jax.metrics.soft_curves import soft_step_counts

  model = models.ResNet18(3, 10, width=width, stem_stride=2, rngs=nnx.Rngs(0))
  model.eval()  # fine-tuning: frozen BatchNorm statistics
  graphdef, params, rest = models.functional(model)
  x = jax.random.normal(jax.random.key(0), (batch, size, size, 3), jnp.float32)
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)

  def ce(p, xb, yb):
    logits = models.predictor_fn(graphdef, p, rest)(xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  if kind == "floor":
    _, m = soft_step_counts(size * size, n_steps, 0.5)
    xs, ys = jnp.tile(x, (2 * m + 2, 1, 1, 1)), jnp.tile(y, 2 * m + 2)
    return jax.jit(jax.grad(ce)), (params, xs, ys)
  segments = None
  if kind == "idexpo_lime":
    o = {**LIME, **(lime_options or {})}
    segments = jnp.asarray(ij.grid_segments(size, size, o["cell"]))
    explainer = functools.partial(ij.explainers.lime.lime, segments=segments, baseline=0.0,
                                  n_samples=o["n_samples"], chunk_size=o["chunk_size"])
  else:
    explainer = functools.partial(ij.explainers.grad_cam.grad_cam, second_order=kind != "idexpo_first_order")

  def loss(p, b, k):
    if kind == "ce":
      return ce(p, *b), {}
    pred = models.predictor_fn(graphdef, p, rest)
    pen, aux = ij.IdExpo(explainer, baseline=0.0, segments=segments, n_steps=n_steps, fraction=0.5)(pred, b[0], b[1], k)
    ce_value = ce(p, *b) if separate_ce else aux["clean_ce"]
    return ce_value + 0.01 * pen + 1e-4 * aux["attribution_sq"], aux

  opt = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(1e-4, momentum=0.9, nesterov=True))
  if flat_opt:
    opt = optax.flatten(opt)
  step = ij.make_train_step(loss, opt)
  state = ij.init_train_state(jax.tree.map(jnp.copy, params), opt)
  return step, (state, (x, y), jax.random.key(2))


def resnet_compile(kind: str, batch: int, width: int, size: int, n_steps: int) -> dict:
  jitted, args = resnet_step(batch=batch, width=width, size=size, n_steps=n_steps, kind=kind)
  _, t = timed_compile(jitted, *args)
  return t


def steady_pair(kinds: list[str], *, batch: int, width: int, size: int, n_steps: int,
                repeats: int, lime_options: dict | None = None) -> dict:
  """Steady-state seconds per step of `kinds`, compiled in this process, called interleaved."""
  import jax
  runs = {}
  for kind in kinds:
    jitted, (state, b, key) = resnet_step(batch=batch, width=width, size=size, n_steps=n_steps,
                                          kind=kind, lime_options=lime_options)
    compiled, _ = timed_compile(jitted, state, b, key)
    state, metrics = compiled(state, b, key)  # warm-up; also the first step's loss
    runs[kind] = {"compiled": compiled, "state": state, "batch": b, "key": key,
                  "first_loss": float(metrics["loss"]), "wall": [], "cpu": []}
  for _ in range(repeats):
    for r in runs.values():
      c0, t0 = time.process_time(), time.perf_counter()
      r["state"], metrics = r["compiled"](r["state"], r["batch"], r["key"])
      jax.block_until_ready(metrics)
      r["wall"].append(time.perf_counter() - t0)
      r["cpu"].append(time.process_time() - c0)
  return {kind: {"step_s": statistics.median(r["wall"]), "step_cpu_s": statistics.median(r["cpu"]),
                 "first_loss": r["first_loss"], "wall": r["wall"], "cpu": r["cpu"]}
          for kind, r in runs.items()}


def _child(args: list[str], env: dict | None = None) -> dict:
  cmd = [sys.executable, "-m", "benchmarks.compile_time", "--child", *args]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        env=dict(os.environ, **(env or {})))
  if proc.returncode:
    return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _log(msg: str) -> None:
  print(f"[compile {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cache_cold_warm() -> dict:
  with tempfile.TemporaryDirectory() as d:
    cold = _child(["cache", d])
    _log(f"SmallCNN step, cold cache: {cold}")
    warm = _child(["cache", d])
    _log(f"SmallCNN step, warm cache: {warm}")
  return {"step": "SmallCNN width 32, B = 32, Grad-CAM ID-ExpO (second order)",
          "cold": cold, "warm": warm}


# (label, kind, XLA_FLAGS, overrides of batch/width/size) compiled round-robin by default: the
# step before and after `clean_ce` for Grad-CAM and LIME, its parts, other shapes, a flattened
# optimizer and XLA's compile-time options.
RESNET_CONFIGS = (
    ("idexpo_separate_ce", "idexpo_separate_ce", "", {}),
    ("idexpo", "idexpo", "", {}),
    ("idexpo_lime_separate_ce", "idexpo_lime_separate_ce", "", {}),
    ("idexpo_lime", "idexpo_lime", "", {}),
    ("idexpo_lime_unchunked", "idexpo_lime_unchunked", "", {}),
    ("idexpo_first_order_separate_ce", "idexpo_first_order_separate_ce", "", {}),
    ("idexpo_first_order", "idexpo_first_order", "", {}),
    ("ce", "ce", "", {}),
    ("floor", "floor", "", {}),
    ("idexpo_b2", "idexpo", "", {"batch": 2}),
    ("idexpo_b32", "idexpo", "", {"batch": 32}),
    ("idexpo_size64", "idexpo", "", {"size": 64}),
    ("idexpo_flat_opt", "idexpo_flat_opt", "", {}),
    ("idexpo_fast_compile", "idexpo", "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_COMPILE", {}),
    ("idexpo_no_expensive_llvm", "idexpo", "--xla_llvm_disable_expensive_passes=true", {}),
)

# Formulation pairs timed by `--steady`: (label, kinds, overrides). One Grad-CAM step at the
# default shape takes ~70 CPU s here; a LIME pair ({"batch": 2, "lime": {"n_samples": 128,
# "chunk_size": 64}}) did not fit the session on this shared machine.
STEADY_PAIRS = (
    ("gradcam", ("idexpo_separate_ce", "idexpo"), {}),
)


def resnet_cold(configs, *, batch: int, width: int, size: int, n_steps: int,
                rounds: int = 1) -> dict:
  """Cold compiles (fresh process, no persistent cache) of `(label, kind, flags, overrides)`."""
  load_start = list(os.getloadavg())
  runs = {c[0]: [] for c in configs}
  for _ in range(rounds):  # round-robin, so that every config sees the same load
    for label, kind, flags, over in configs:
      shape = {"batch": batch, "width": width, "size": size, "n_steps": n_steps, **over}
      r = _child(["resnet", kind, *(str(shape[k]) for k in ("batch", "width", "size",
                                                             "n_steps"))],
                 env={"XLA_FLAGS": flags})
      _log(f"ResNet-18 {label}: {r}")
      runs[label].append(r)
  rows = {}
  for label, kind, flags, over in configs:
    ok = [r for r in runs[label] if "error" not in r]
    row = {"kind": kind, "xla_flags": flags, "rounds": rounds,
           **{"batch": batch, "width": width, "size": size, "n_steps": n_steps, **over},
           "load_average_start": load_start, "load_average_end": list(os.getloadavg())}
    if ok:
      row.update({k: statistics.median(r[k] for r in ok) for k in ok[0]}, runs=ok)
    else:
      row.update(runs[label][0])
    rows[label] = row
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--n-steps", type=int, default=64)
  p.add_argument("--configs", default=",".join(c[0] for c in RESNET_CONFIGS),
                 help="labels of RESNET_CONFIGS to compile (their rows replace the saved ones)")
  p.add_argument("--rounds", type=int, default=1, help="ResNet-18 compiles per kind (median)")
  p.add_argument("--only", choices=("all", "cache", "resnet", "steady"), default="all")
  p.add_argument("--repeats", type=int, default=5, help="steady-state calls per kind")
  p.add_argument("--out", default="benchmarks/results.json")
  p.add_argument("--doc", default="docs/benchmarks.md")
  a = p.parse_args(argv)
  if a.child:
    what, *rest = a.child
    if what == "cache":
      r = smallcnn_step_compile(rest[0])
    elif what == "steady":
      label, repeats, batch, width, size, n_steps = rest[0], *map(int, rest[1:])
      _, kinds, over = next(c for c in STEADY_PAIRS if c[0] == label)
      shape = {"batch": batch, "width": width, "size": size, "n_steps": n_steps,
               **{k: v for k, v in over.items() if k != "lime"}}
      r = steady_pair(list(kinds), repeats=repeats, lime_options=over.get("lime"), **shape)
      r = {"shape": shape, "lime": over.get("lime"), "kinds": r}
    else:
      kind, batch, width, size, n_steps = rest
      r = resnet_compile(kind, int(batch), int(width), int(size), int(n_steps))
    print(json.dumps(r))
    return r
  from benchmarks.common import machine_info
  from benchmarks.report import save_section, saved_section
  section = saved_section(a.out, "compile")
  section["machine"] = machine_info()
  if a.only in ("all", "cache"):
    section["cache"] = cache_cold_warm()
  if a.only in ("all", "resnet"):
    wanted = a.configs.split(",")
    old = section.get("resnet18", {})
    rows = old.get("rows", {}) if old.get("version") == 2 else {}
    rows.update(resnet_cold([c for c in RESNET_CONFIGS if c[0] in wanted], batch=a.batch,
                            width=a.width, size=a.size, n_steps=a.n_steps, rounds=a.rounds))
    order = [c[0] for c in RESNET_CONFIGS]
    section["resnet18"] = {"version": 2, "batch": a.batch, "width": a.width, "size": a.size,
                           "n_steps": a.n_steps, "lime": LIME,
                           "rows": dict(sorted(rows.items(), key=lambda kv: order.index(kv[0])
                                               if kv[0] in order else len(order)))}
  if a.only in ("all", "steady"):
    steady = section.get("steady", {})
    for label, _, _ in STEADY_PAIRS:
      load = list(os.getloadavg())
      r = _child(["steady", label, *map(str, (a.repeats, a.batch, a.width, a.size, a.n_steps))])
      _log(f"steady {label}: {r}")
      steady[label] = {**r, "repeats": a.repeats, "load_average_start": load,
                       "load_average_end": list(os.getloadavg())}
    section["steady"] = steady
  save_section(a.out, a.doc, "compile", section)
  return section


if __name__ == "__main__":
  main()
