"""Accelerator benchmark: the CIFAR-size ID-ExpO train step and the explainers against their floors.

Run where a GPU/TPU exists (`python -m benchmarks.gpu --out results.json`); needs only the library
(jax, flax, optax, chex, numpy) — the `lime`/`shap`/`captum` packages run on the CPU and are
compared in `benchmarks.run`. Timings: compile (lower + compile) separately; steady state = median
of repeats of the compiled executable, blocking on the result.

* Train step: CIFAR ResNet-18 (stride-2 stem, Grad-CAM on the 8×8×128 second-stage map as in the
  ID-ExpO reference), batch B = 128 of 32×32×3 inputs, `CE + 0.01·idexpo_penalty + 1e-4·mean φ²`
  with n_steps = 64, fraction = 0.5 (M = 32 soft steps), SGD-Nesterov. Floor: one jitted
  `jax.grad` of CE over the B·(2M + 2) images the step evaluates; also the plain CE step.
* With `--pytorch`: the SmallCNN Grad-CAM ID-ExpO step (B = 32, width 32) and its floor beside
  the same step and floor in plain PyTorch on CUDA (`benchmarks.torch_compare`).
* Explainers: `lime` / `kernel_shap` on SmallCNN (width 32, 16×16×1, 16 grid segments, 1000
  samples, 64 images in one vmapped call) against the forward pass of the 64 000 masked images.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import idexpo_jax as ij
from benchmarks.common import timed_compile
from idexpo_jax import models
from idexpo_jax.metrics.soft_curves import soft_step_counts


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def _compile(jitted, *args):
  compiled, seconds = timed_compile(jitted, *args)
  return compiled, seconds["total_s"]


def _ce(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def bench_train_step(*, batch, width, n_steps, repeats, second_order=True):
  model = models.ResNet18(3, 10, width=width, stem_stride=2, rngs=nnx.Rngs(0))
  model.eval()  # fine-tuning: frozen BatchNorm statistics
  graphdef, params, rest = models.functional(model)
  key = jax.random.key(0)
  x = jax.random.normal(key, (batch, 32, 32, 3), jnp.float32)
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
  explainer = functools.partial(ij.explainers.grad_cam.grad_cam, second_order=second_order)
  opt = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(1e-4, momentum=0.9, nesterov=True))

  def idexpo_loss(p, b, k):
    pred = models.predictor_fn(graphdef, p, rest)
    ce = _ce(pred(b[0]), b[1])
    pen, aux = ij.IdExpo(explainer, baseline=0.0, n_steps=n_steps, fraction=0.5)(pred, b[0], b[1], k)
    return ce + 0.01 * pen + 1e-4 * aux["attribution_sq"], aux

  def ce_loss(p, b, k):
    return _ce(models.predictor_fn(graphdef, p, rest)(b[0]), b[1]), {}

  rows = {}
  delta, m = soft_step_counts(32 * 32, n_steps, 0.5)
  for name, loss in (("ce_step", ce_loss), ("idexpo_gradcam_step", idexpo_loss)):
    step = ij.make_train_step(loss, opt)
    state = ij.init_train_state(jax.tree.map(jnp.copy, params), opt)
    compiled, t_compile = _compile(step, state, (x, y), key)
    holder = {"state": state}

    def run():
      holder["state"], metrics = compiled(holder["state"], (x, y), key)
      return metrics["loss"]

    run()
    rows[name] = {"seconds": _median_time(run, repeats), "compile_seconds": t_compile}
    mem = compiled.memory_analysis()
    if mem is not None:
      rows[name]["temp_bytes"] = int(getattr(mem, "temp_size_in_bytes", 0))
  n_images = batch * (2 * m + 2)
  xs = jnp.tile(x, (2 * m + 2, 1, 1, 1))
  ys = jnp.tile(y, 2 * m + 2)
  fb = jax.jit(jax.grad(lambda p, a, b: _ce(models.predictor_fn(graphdef, p, rest)(a), b)))
  compiled, t_compile = _compile(fb, params, xs, ys)
  rows["floor_forward_backward"] = {"seconds": _median_time(lambda: compiled(params, xs, ys),
                                                            repeats),
                                    "compile_seconds": t_compile, "images": n_images}
  return {"batch": batch, "width": width, "soft_steps": m, "units_per_step": delta,
          "second_order": second_order, "rows": rows,
          "step_over_floor": rows["idexpo_gradcam_step"]["seconds"]
          / rows["floor_forward_backward"]["seconds"],
          "step_over_ce_step": rows["idexpo_gradcam_step"]["seconds"] / rows["ce_step"]["seconds"]}


def bench_explainers(*, images, samples, repeats):
  model = models.SmallCNN(1, 10, width=32, rngs=nnx.Rngs(0))
  graphdef, params, rest = models.functional(model)
  logits_fn = models.predictor_fn(graphdef, params, rest)
  x = jax.random.uniform(jax.random.key(0), (images, 16, 16, 1), jnp.float32)
  targets = jnp.argmax(logits_fn(x), -1)
  seg = jnp.asarray(ij.grid_segments(16, 16, 4))
  keys = jax.random.split(jax.random.key(1), images)
  out = {}
  for name, fn in (("lime", ij.explainers.lime.lime), ("kernel_shap", ij.explainers.kernel_shap.kernel_shap)):
    f = jax.jit(jax.vmap(lambda xi, t, k, fn=fn: fn(logits_fn, xi, t, k, segments=seg,
                                                     baseline=0.0, n_samples=samples)))
    compiled, t_compile = _compile(f, x, targets, keys)
    out[name] = {"seconds": _median_time(lambda: compiled(x, targets, keys), repeats),
                 "compile_seconds": t_compile}
  z = jax.random.bernoulli(jax.random.key(2), 0.5, (images, samples, 16)).astype(jnp.float32)

  def floor(xb, zb, t):
    masked = jax.vmap(lambda xi, zi: ij.apply_unit_mask(xi, zi, 0.0, segments=seg))(xb, zb)
    probs = jax.nn.softmax(logits_fn(masked.reshape(-1, 16, 16, 1)), -1)
    return probs.reshape(images, samples, -1)[jnp.arange(images), :, t]

  compiled, t_compile = _compile(jax.jit(floor), x, z, targets)
  out["floor_forward"] = {"seconds": _median_time(lambda: compiled(x, z, targets), repeats),
                          "compile_seconds": t_compile, "images": images * samples}
  for name in ("lime", "kernel_shap"):
    out[name]["over_floor"] = out[name]["seconds"] / out["floor_forward"]["seconds"]
  return {"images": images, "samples": samples, "segments": 16, "rows": out}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--n-steps", type=int, default=64)
  p.add_argument("--images", type=int, default=64)
  p.add_argument("--samples", type=int, default=1000)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--pytorch", action="store_true",
                 help="also the SmallCNN Grad-CAM ID-ExpO step beside the same step in plain "
                      "PyTorch on CUDA (benchmarks.torch_compare; needs a CUDA build of torch)")
  p.add_argument("--out", default="benchmarks/results_gpu.json")
  a = p.parse_args(argv)
  dev = jax.devices()[0]
  result = {"device": f"{dev.platform}: {getattr(dev, 'device_kind', '')}",
            "jax": jax.__version__, "host": platform.node(),
            "train_step": bench_train_step(batch=a.batch, width=a.width, n_steps=a.n_steps,
                                           repeats=a.repeats),
            "train_step_first_order": bench_train_step(batch=a.batch, width=a.width,
                                                       n_steps=a.n_steps, repeats=a.repeats,
                                                       second_order=False),
            "explainers": bench_explainers(images=a.images, samples=a.samples,
                                           repeats=a.repeats)}
  if a.pytorch:
    from benchmarks.common import make_problem
    from benchmarks.torch_compare import bench_pytorch
    result["pytorch"] = bench_pytorch(make_problem(n_images=32, width=32), batch_size=32,
                                      repeats=a.repeats, torch_device="cuda")
  print(json.dumps(result, indent=1))
  with open(a.out, "w") as f:
    json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
