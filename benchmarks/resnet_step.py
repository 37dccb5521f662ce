"""The paper's image step on CPU: ResNet-18 ID-ExpO with Grad-CAM, ours beside PyTorch.

The setting of `experiments/image/configs/cifar10.py`: CIFAR ResNet-18 (`idexpo_jax.models.
ResNet18`, width 64, stride-2 stem, Grad-CAM on the second residual stage: 8×8×128 maps on 32×32×3
inputs, nearest upsampling), eval-mode BatchNorm (fine-tuning), soft curves over pixels with
n_steps 64, fraction 0.5, τ 1, deletion "ratio", `CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)` with
λ = 0.01, λ₂ = 1e-4, CE from the clean images of the penalty, SGD lr 1e-4, Nesterov momentum 0.9,
weight decay 5e-4. Random 32×32×3 images and labels (the cost does not depend on the data) and
the model at its random initialisation.

Timed side by side, round-robin in one process (`common.time_interleaved`, wall and CPU time):

* `ours`: `make_train_step` of that loss, second-order Grad-CAM (jit);
* `torch_loop`: PyTorch, the CAMs one example at a time with first-order Grad-CAM, as the
  ID-ExpO authors compute them (`benchmarks.torch_resnet`);
* `torch_vectorised`: PyTorch, one batched second-order Grad-CAM (the algorithm of ours).

All three start from the same weights (copied); their losses at those weights are compared as a
correctness check. Compile time (`lower` + `compile`) and PyTorch's first call are reported apart.
Peak memory: the peak resident set (`VmHWM`; `ru_maxrss` of a forked child would report
the parent's) of a fresh subprocess per variant that
builds it and runs its steps (ours: one after compiling; PyTorch: two) (`--rss VARIANT`), beside the RSS before its first step.

`--profile` also times the parts of our step (the Grad-CAM explanation; the forward pass of the
soft images; the loss's forward; its forward and backward) and the step with XLA's convolution
(`lax`) in every layer instead of `idexpo_jax.conv`.

`python -m benchmarks.resnet_step [--batches 8,32] [--repeats 3] [--profile] [--quick]` saves the
section `resnet_step` in `benchmarks/results.json` and `docs/benchmarks.md` (`common.save_section`;
`make bench` runs it through `benchmarks.run`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from benchmarks.common import (block, check_quick_paths, fmt_s, fmt_x, machine_info, md_table,
                               save_section, saved_section, time_interleaved, timed_compile)
from idexpo_jax.explainers.grad_cam import grad_cam, grad_cam_batch
from idexpo_jax.regularisers.idexpo import IdExpo
from idexpo_jax.models import ResNet18, functional, predictor_fn
from idexpo_jax.metrics.soft_curves import soft_step_counts
from idexpo_jax.training.train import init_train_state, make_train_step

N_STEPS, FRACTION, TEMPERATURE, LAM, LAM2 = 64, 0.5, 1.0, 0.01, 1e-4
LR, MOMENTUM, WEIGHT_DECAY = 1e-4, 0.9, 5e-4
VARIANTS = ("ours", "torch_loop", "torch_vectorised")


def _log(msg: str) -> None:
  print(f"[resnet_step {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_model(*, width: int = 64, conv: str = "fast", seed: int = 0) -> ResNet18:
  """The paper's ResNet-18 in eval mode; `conv="lax"` swaps every convolution to XLA's."""
  model = ResNet18(3, 10, width=width, stem_stride=2, rngs=nnx.Rngs(seed))
  if conv == "lax":
    for _, m in nnx.iter_modules(model):
      if isinstance(m, nnx.Conv):
        m.conv_general_dilated = lax.conv_general_dilated
  model.eval()
  return model


def make_batch(batch_size: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch_size, 32, 32, 3)).astype(np.float32)
  y = rng.integers(0, 10, size=batch_size).astype(np.int32)
  return x, y, np.zeros((3,), np.float32)


def ours_loss(graphdef, rest, baseline, *, second_order: bool = True):
  """`loss_fn(params, batch, key)` of the configured ID-ExpO Grad-CAM step."""
  explainer = functools.partial(grad_cam, upsample="nearest", second_order=second_order)

  def loss_fn(params, batch, key):
    xb, yb = batch
    predictor = predictor_fn(graphdef, params, rest)
    penalty, aux = IdExpo(explainer, baseline=baseline, n_steps=N_STEPS, fraction=FRACTION, temperature=TEMPERATURE, deletion="ratio")(predictor, xb, yb, key)
    return aux["clean_ce"] + LAM * penalty + LAM2 * aux["attribution_sq"], aux

  return loss_fn


def optimizer():
  return optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),
                     optax.sgd(LR, momentum=MOMENTUM, nesterov=True))


def prepare_ours(model, x, y, baseline, *, conv_label: str = "fast"):
  """`(run, compile_s, loss0)`: our jitted step, its compile time and the loss at the start."""
  del conv_label
  graphdef, params, rest = functional(model)
  loss_fn = ours_loss(graphdef, rest, jnp.asarray(baseline))
  step = make_train_step(loss_fn, optimizer())
  state = init_train_state(jax.tree.map(jnp.copy, params), optimizer())
  batch, key = (jnp.asarray(x), jnp.asarray(y)), jax.random.key(0)
  compiled, compile_s = timed_compile(step, state, batch, key)
  loss0 = float(jax.jit(loss_fn)(params, batch, key)[0])
  holder = [state]

  def run():
    with warnings.catch_warnings():
      warnings.filterwarnings("ignore", message=".*donated buffers.*")
      holder[0], metrics = compiled(holder[0], batch, key)
    return block(metrics)

  return run, compile_s, loss0


def prepare_torch(model, x, y, baseline, variant: str):
  """`(run, first_call_s, loss0)` of a PyTorch step on a copy of `model`'s weights."""
  import torch

  from benchmarks.torch_resnet import make_resnet_step, torch_resnet18
  tm = torch_resnet18(model)
  xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  yt = torch.from_numpy(y.astype(np.int64))
  bt = torch.from_numpy(baseline.copy())[:, None, None]
  kw = dict(n_steps=N_STEPS, fraction=FRACTION, lam=LAM, lam2=LAM2)
  from benchmarks.torch_idexpo import idexpo_gradcam_loss
  from benchmarks.torch_resnet import idexpo_gradcam_loss_loop
  if variant == "torch_loop":
    loss0 = float(idexpo_gradcam_loss_loop(tm, xt, yt, bt, **kw))
  else:
    loss0 = float(idexpo_gradcam_loss(tm, xt, yt, bt, ce_from_clean_row=True, **kw))
  step = make_resnet_step(tm, variant.split("_", 1)[1], lr=LR, weight_decay=WEIGHT_DECAY, **kw)
  run = lambda: step(xt, yt, bt)
  t0 = time.perf_counter()
  run()
  return run, time.perf_counter() - t0, loss0


def _prepare(variant, model, x, y, baseline, *, width: int = 64):
  if variant == "ours":
    run, compile_s, loss0 = prepare_ours(model, x, y, baseline)
    return run, {"compile": compile_s}, loss0
  if variant == "ours_lax_conv":
    run, compile_s, loss0 = prepare_ours(make_model(width=width, conv="lax"), x, y, baseline)
    return run, {"compile": compile_s}, loss0
  run, first, loss0 = prepare_torch(model, x, y, baseline, variant)
  return run, {"first_call_s": first}, loss0


def _peak_rss_kib() -> int:
  """This process's peak resident set (KiB): `VmHWM`, which, unlike `ru_maxrss`, does not carry
  over the parent's peak from before `exec`; `ru_maxrss` where /proc is missing."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1])
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_worker(variant: str, batch_size: int, width: int = 64) -> dict:
  """Builds one variant in this (fresh) process, runs its steps, returns its peak RSS."""
  model = make_model(width=width)
  x, y, baseline = make_batch(batch_size)
  kib = _peak_rss_kib
  before = kib()
  # PyTorch's first call is a step
  run, _, _ = _prepare(variant, model, x, y, baseline, width=width)
  run()
  return {"variant": variant, "batch_size": batch_size, "rss_before_mib": before / 1024,
          "peak_rss_mib": kib() / 1024}


def measure_rss(variant: str, batch_size: int, width: int = 64) -> dict:
  cmd = [sys.executable, "-m", "benchmarks.resnet_step", "--rss", variant, "--batches",
         str(batch_size), "--width", str(width)]
  out = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if out.returncode:
    return {"error": out.stderr[-2000:]}
  return json.loads(out.stdout.strip().splitlines()[-1])


def profile_parts(model, x, y, baseline, *, repeats: int) -> dict:
  """Times the parts of our step: explanation, soft-image forward, loss forward, forward+backward."""
  graphdef, params, rest = functional(model)
  xb, yb = jnp.asarray(x), jnp.asarray(y)
  key = jax.random.key(0)
  loss_fn = ours_loss(graphdef, rest, jnp.asarray(baseline))
  b = xb.shape[0]
  _, m = soft_step_counts(32 * 32, N_STEPS, FRACTION)
  soft = jnp.repeat(xb, 2 * m + 1, axis=0)

  def cam(p):
    return grad_cam_batch(predictor_fn(graphdef, p, rest), xb, yb, upsample="nearest")

  def soft_forward(p):
    return predictor_fn(graphdef, p, rest)(soft)

  fns = {
      "explanation (Grad-CAM of B images)": jax.jit(cam),
      f"forward of the B·(2M+1) = {b * (2 * m + 1)} soft images": jax.jit(soft_forward),
      "loss forward (all of it)": jax.jit(lambda p: loss_fn(p, (xb, yb), key)[0]),
      "loss forward + backward": jax.jit(jax.grad(lambda p: loss_fn(p, (xb, yb), key)[0])),
      "backward of the soft-image forward (f+b of a CE)": jax.jit(jax.grad(
          lambda p: optax.softmax_cross_entropy_with_integer_labels(
              soft_forward(p), jnp.repeat(yb, 2 * m + 1)).mean())),
  }
  runs = {k: (lambda f=f: block(f(params))) for k, f in fns.items()}
  t = time_interleaved(runs, repeats=repeats)
  return {k: {"wall_s": v["median_s"], "cpu_s": v["cpu_median_s"]} for k, v in t.items()}


def bench_batch(batch_size: int, *, repeats: int, variants=VARIANTS, rss: bool = True,
                profile: bool = False, width: int = 64) -> dict:
  model = make_model(width=width)
  x, y, baseline = make_batch(batch_size)
  _, m = soft_step_counts(32 * 32, N_STEPS, FRACTION)
  row = {"batch_size": batch_size, "soft_steps": m, "images_per_step": batch_size * (2 * m + 1),
         "first": {}, "loss0": {}}
  runs = {}
  for v in variants:
    _log(f"B={batch_size}: prepare {v}")
    try:
      runs[v], row["first"][v], row["loss0"][v] = _prepare(v, model, x, y, baseline, width=width)
    except ImportError as e:
      row["first"][v] = {"error": f"not installed: {e}"}
  _log(f"B={batch_size}: timing {list(runs)} round-robin, {repeats} repeats")
  t = time_interleaved(runs, repeats=repeats)
  row["timings"] = {k: {"wall_s": v["median_s"], "cpu_s": v["cpu_median_s"],
                        "times_s": v["times_s"], "cpu_times_s": v["cpu_times_s"]}
                    for k, v in t.items()}
  row["ratios"] = {}
  for base in ("torch_loop", "torch_vectorised", "ours_lax_conv"):
    if base in t and "ours" in t:
      row["ratios"][f"ours_over_{base}"] = t["ours"]["median_s"] / t[base]["median_s"]
      row["ratios"][f"ours_over_{base}_cpu"] = t["ours"]["cpu_median_s"] / t[base]["cpu_median_s"]
  if profile:
    _log(f"B={batch_size}: profile of our step's parts")
    row["profile"] = profile_parts(model, x, y, baseline, repeats=repeats)
  if rss:
    row["rss"] = {}
    for v in [v for v in runs if v != "ours_lax_conv"]:
      _log(f"B={batch_size}: peak RSS of {v} (subprocess)")
      row["rss"][v] = measure_rss(v, batch_size, width)
  return row


NAMES = {"ours": "**idexpo_jax step** (jit, second-order Grad-CAM)",
         "ours_lax_conv": "idexpo_jax step with XLA's convolution in every layer",
         "torch_loop": "PyTorch, per-example CAM loop, first order (authors' algorithm)",
         "torch_vectorised": "PyTorch, vectorised, second order (our algorithm)"}


def markdown(section: dict) -> list[str]:
  """Per batch size: each step's wall and CPU seconds, ours ÷ it, compile, peak RSS, loss₀."""
  lines = []
  for row in section["rows"]:
    t, rows = row["timings"], []
    for v, tv in t.items():
      first = row["first"].get(v, {})
      c = first["compile"]["total_s"] if "compile" in first else first.get("first_call_s")
      rss = row.get("rss", {}).get(v, {})
      ratio = lambda k: fmt_x(t["ours"][k] / tv[k]) if "ours" in t else "–"
      rows.append([NAMES.get(v, v), f"{tv['wall_s']:.2f}", f"{tv['cpu_s']:.2f}",
                   ratio("wall_s"), ratio("cpu_s"),
                   fmt_s(c), f"{rss['peak_rss_mib']:.0f} MiB" if "peak_rss_mib" in rss else "",
                   f"{row['loss0'].get(v, float('nan')):.6f}"])
    lines += [f"Batch B = {row['batch_size']} ({row['images_per_step']} soft images per step), "
              f"median of {section['repeats']}:", ""] + md_table(
        ["step", "wall s / step", "CPU s / step", "ours ÷ it (wall)", "ours ÷ it (CPU)",
         "compile (ours) / first call", "peak RSS", "loss₀"], rows) + [""]
    if row.get("profile"):
      lines += [f"Parts of our step at B = {row['batch_size']} (each jitted alone):", ""]
      lines += md_table(["part", "wall s", "CPU s"], [[k, f"{v['wall_s']:.2f}", f"{v['cpu_s']:.2f}"]
                                                      for k, v in row["profile"].items()]) + [""]
  goals = [[g, m, ok if isinstance(ok, str) else "yes" if ok else "no"]
           for g, m, ok in goal_rows(section)]
  return lines + md_table(["goal", "measured", "met"], goals) + [
      "", f"Width {section.get('width', 64)}, commit {section.get('commit', '?')}, PyTorch "
      f"{section.get('torch_threads', '?')} threads.", ""]


def goal_rows(section: dict) -> list:
  """`(goal, measured, met)`: ours ≤ 1.0× the authors'-algorithm PyTorch step (CPU time)."""
  rows = []
  for row in section.get("rows", []):
    r = row.get("ratios", {})
    if "ours_over_torch_loop_cpu" in r:
      v = r["ours_over_torch_loop_cpu"]
      rows.append((f"ResNet-18 ID-ExpO Grad-CAM step, B = {row['batch_size']}, ≤ 1.0× the "
                   "authors'-algorithm PyTorch step on CPU (stretch 0.7×)",
                   f"{v:.2f}× CPU time, {r['ours_over_torch_loop']:.2f}× wall "
                   f"(vectorised PyTorch: {r.get('ours_over_torch_vectorised_cpu', float('nan')):.2f}×"
                   " CPU)", "yes (stretch too)" if v <= 0.7 else v <= 1.0))
  return rows


def _commit() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
  except Exception:  # pylint: disable=broad-except
    return "unknown"


def run(*, batches=(8, 32), repeats: int = 3, variants=VARIANTS, rss: bool = True,
        profile: bool = False, width: int = 64) -> dict:
  import torch
  section = {"machine": machine_info(), "commit": _commit(), "repeats": repeats, "width": width,
             "torch_threads": torch.get_num_threads(), "rows": []}
  for b in batches:
    section["rows"].append(bench_batch(b, repeats=repeats, variants=variants, rss=rss,
                                       profile=profile, width=width))
  section["machine"]["load_average_end"] = list(os.getloadavg())
  return section


def merge_rows(section: dict, out: str) -> dict:
  """`section` with the saved rows of other batch sizes (from an earlier run at `out`) kept."""
  new = {r["batch_size"] for r in section["rows"]}
  old = [r for r in saved_section("resnet_step", out).get("rows", []) if r["batch_size"] not in new]
  return {**section, "rows": sorted(old + section["rows"], key=lambda r: r["batch_size"])}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=[8, 32])
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--width", type=int, default=64, help="ResNet-18 width (the paper's: 64)")
  p.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS),
                 help=f"comma-separated, of {VARIANTS + ('ours_lax_conv',)}")
  p.add_argument("--profile", action="store_true", help="also time the parts of our step")
  p.add_argument("--no-rss", action="store_true")
  p.add_argument("--quick", action="store_true", help="B = 2, width 4, one repeat (smoke test)")
  p.add_argument("--rss", metavar="VARIANT", help=argparse.SUPPRESS)
  p.add_argument("--out", default="benchmarks/results.json")
  p.add_argument("--doc", default="docs/benchmarks.md")
  p.add_argument("--no-save", action="store_true")
  args = p.parse_args(argv)
  if args.rss:
    print(json.dumps(rss_worker(args.rss, args.batches[0], args.width)))
    return {}
  check_quick_paths(p, args)
  if args.quick:
    args.batches, args.repeats, args.width = [2], 1, 4
  section = run(batches=args.batches, repeats=args.repeats, variants=tuple(args.variants),
                rss=not args.no_rss, profile=args.profile, width=args.width)
  print(json.dumps(section["rows"], indent=1, default=str))
  if not args.no_save:
    section = merge_rows(section, args.out)
    save_section("resnet_step", section, markdown(section), out=args.out, doc=args.doc)
  return section


if __name__ == "__main__":
  main()
