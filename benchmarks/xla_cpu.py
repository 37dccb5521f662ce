"""What could close the CPU gap to PyTorch: XLA CPU flags, chunk sizes, layout, bfloat16.

`python -m benchmarks.xla_cpu` times, on the Grad-CAM ID-ExpO problem of `benchmarks.torch_compare`
(SmallCNN width 32, B = 32, 16×16×1, M = 32 soft steps):

* the bare forward+backward of the B·(2M+2) images (the floor) and our jitted step under several
  `XLA_FLAGS` (each in a fresh process, since XLA reads its flags once); the baseline (no flags)
  runs first and last, and every variant is reported as a ratio to the mean of the two;
* in one process (round-robin, same load): the floor in NHWC (ours) vs NCHW (`lax.conv` with
  NCHW/OIHW dimension numbers, the layout PyTorch uses), in float32 vs bfloat16, and our step with
  all soft images in one model call vs `chunk_size` soft images per call (`jax.lax.map`).

Results merge into `benchmarks/results.json` under `"xla_cpu"` and render in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

FLAG_VARIANTS = {
    "baseline": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_custom_call": "--xla_cpu_experimental_onednn_custom_call=true",
    "fast_math": "--xla_cpu_enable_fast_math=true",
    "no_xnnpack": "--xla_cpu_use_xnnpack=false",
    "xnn_graph_fusion": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "vector_width_512": "--xla_cpu_prefer_vector_width=512",
    "fast_compile": "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_COMPILE",
    "no_expensive_llvm": "--xla_llvm_disable_expensive_passes=true",
}


def _problem(width: int, batch: int):
  from benchmarks.common import make_problem
  return make_problem(n_images=batch, width=width)


def measure_child(width: int, batch: int, repeats: int, with_step: bool) -> dict:
  """Floor (and step) times under this process's XLA_FLAGS: compile and steady state."""
  from benchmarks.common import time_interleaved
  from benchmarks.torch_compare import floor_images, prepare_jax_floor, prepare_ours
  problem = _problem(width, batch)
  xs, ys = floor_images(problem, batch)
  runs, compile_s = {}, {}
  runs["floor"], compile_s["floor"] = prepare_jax_floor(problem, xs, ys)
  if with_step:
    runs["step"], compile_s["step"] = prepare_ours(problem, batch)
  t = time_interleaved(runs, repeats=repeats)
  return {"compile": compile_s, "wall": {k: v["median_s"] for k, v in t.items()},
          "cpu": {k: v["cpu_median_s"] for k, v in t.items()}, "timings": t}


def flag_sweep(args) -> dict:
  """Each flag variant in a fresh process; baseline first and last."""
  chosen = [k for k in FLAG_VARIANTS if k != "baseline" and k in args.variants]
  order = ["baseline"] + chosen + ["baseline"]
  out = {"variants": {}, "baseline_runs": []}
  for name in order:
    env = dict(os.environ, XLA_FLAGS=FLAG_VARIANTS[name])
    cmd = [sys.executable, "-m", "benchmarks.xla_cpu", "--child", "--width", str(args.width),
           "--batch", str(args.batch), "--repeats", str(args.repeats)]
    if not args.with_step:
      cmd.append("--no-step")
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
      out["variants"][name] = {"flags": FLAG_VARIANTS[name],
                               "error": proc.stderr.strip().splitlines()[-1][:300]}
      print(f"[xla_cpu] {name}: failed: {out['variants'][name]['error']}", file=sys.stderr)
      continue
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["flags"] = FLAG_VARIANTS[name]
    print(f"[xla_cpu] {name}: wall {r['wall']}, cpu {r['cpu']} ({time.time() - t0:.0f} s)",
          file=sys.stderr, flush=True)
    if name == "baseline":
      out["baseline_runs"].append(r)
    else:
      out["variants"][name] = r
  runs = out["baseline_runs"]
  out["baseline"] = {
      m: {k: sum(r[m][k] for r in runs) / len(runs) for k in runs[0][m]} for m in ("wall", "cpu")}
  out["baseline"]["compile_cpu"] = {k: sum(r["compile"][k]["total_cpu_s"] for r in runs)
                                    / len(runs) for k in runs[0]["compile"]}
  for r in out["variants"].values():
    if "error" not in r:
      r["ratio_to_baseline"] = {m: {k: r[m][k] / out["baseline"][m][k] for k in r[m]}
                                for m in ("wall", "cpu")}
      r["ratio_to_baseline"]["compile_cpu"] = {
          k: r["compile"][k]["total_cpu_s"] / out["baseline"]["compile_cpu"][k]
          for k in r["compile"]}
  return out


def _nchw_logits(params, x_nchw):
  """SmallCNN's forward written with NCHW activations and OIHW kernels (same weights)."""
  import jax
  from jax import lax
  dn = ("NCHW", "OIHW", "NCHW")

  def conv(a, p):
    k = p["kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
    return lax.conv_general_dilated(a, k, (1, 1), "SAME", dimension_numbers=dn) + \
        p["bias"][None, :, None, None]

  a = jax.nn.relu(conv(x_nchw, params["conv1"]))
  a = jax.nn.relu(conv(a, params["conv2"]))
  n, c, h, w = a.shape
  a = a.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
  a = jax.nn.relu(conv(a, params["conv3"]))
  return a.mean(axis=(2, 3)) @ params["out"]["kernel"] + params["out"]["bias"]


def in_process(args) -> dict:
  """Layout, dtype and chunk-size variants, timed round-robin in this process."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from flax import nnx

  from benchmarks.common import block, time_interleaved
  from benchmarks.compile_time import timed_compile
  from benchmarks.torch_compare import floor_images, prepare_jax_floor, prepare_ours
  problem = _problem(args.width, args.batch)
  xs, ys = floor_images(problem, args.batch)
  pure = nnx.to_pure_dict(problem.params)
  runs, compile_s = {}, {}
  runs["floor_nhwc_f32"], compile_s["floor_nhwc_f32"] = prepare_jax_floor(problem, xs, ys)

  def ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y).mean()

  x_nchw = jnp.asarray(np.ascontiguousarray(xs.transpose(0, 3, 1, 2)))
  yj = jnp.asarray(ys)
  variants = {
      "floor_nchw_f32": (lambda p, x, y: ce(_nchw_logits(p, x), y), pure, x_nchw),
      "floor_nhwc_bf16": (lambda p, x, y: ce(problem.logits(p, x), y),
                          jax.tree.map(lambda a: a.astype(jnp.bfloat16), problem.params),
                          jnp.asarray(xs, jnp.bfloat16)),
  }
  for name, (fn, p, x) in variants.items():
    compiled, compile_s[name] = timed_compile(jax.jit(jax.grad(fn)), p, x, yj)
    runs[name] = (lambda c=compiled, p=p, x=x: block(c(p, x, yj)))
  runs["step_one_call"], compile_s["step_one_call"] = prepare_ours(problem, args.batch)
  for chunk in args.chunks:
    name = f"step_chunk_{chunk}"
    runs[name], compile_s[name] = prepare_ours(problem, args.batch, chunk_size=chunk)
  t = time_interleaved(runs, repeats=args.repeats)
  out = {"timings": t, "compile": compile_s}
  for m, key in (("wall", "median_s"), ("cpu", "cpu_median_s")):
    med = {k: v[key] for k, v in t.items()}
    ratios = {k: med[k] / med["floor_nhwc_f32"] for k in med if k.startswith("floor")}
    ratios.update({k: med[k] / med["step_one_call"] for k in med if k.startswith("step")})
    out[m] = med
    out[f"{m}_ratio_to_default"] = ratios
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--width", type=int, default=32)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--chunks", type=lambda s: [int(v) for v in s.split(",")], default=[1, 13, 33],
                 help="soft images per model call (per example; lax.map over chunks)")
  p.add_argument("--no-step", dest="with_step", action="store_false",
                 help="flag sweep: time only the floor")
  p.add_argument("--variants", type=lambda s: s.split(","), default=list(FLAG_VARIANTS),
                 help="names of FLAG_VARIANTS to sweep (comma-separated)")
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--only", choices=("all", "flags", "in_process"), default="all")
  p.add_argument("--out", default="benchmarks/results.json")
  p.add_argument("--doc", default="docs/benchmarks.md")
  a = p.parse_args(argv)
  if a.child:
    print(json.dumps(measure_child(a.width, a.batch, a.repeats, a.with_step)))
    return None
  from benchmarks.common import machine_info
  from benchmarks.report import save_section, saved_section
  section = saved_section(a.out, "xla_cpu")
  section.update(machine=machine_info(), width=a.width, batch=a.batch, repeats=a.repeats)
  if a.only in ("all", "flags"):
    section["flags"] = flag_sweep(a)
  if a.only in ("all", "in_process"):
    section["in_process"] = in_process(a)
  save_section(a.out, a.doc, "xla_cpu", section)
  return section


if __name__ == "__main__":
  main()
