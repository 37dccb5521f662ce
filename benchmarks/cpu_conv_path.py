"""XLA:CPU's two convolution paths side by side: YNNPACK (jaxlib 0.10's default) and Eigen.

`import idexpo_jax` adds `idexpo_jax.conv.CPU_XLA_FLAGS` (`--xla_cpu_experimental_ynn_fusion_type=
-individual_convolution`) to `XLA_FLAGS`; this benchmark times the same work in fresh processes
with the flag and without it (`IDEXPO_JAX_KEEP_XLA_FLAGS=1`): a 3×3 convolution, its input and
kernel gradients, SmallCNN's floor (`jax.grad` of a CE over the 2112 images of a B = 32 ID-ExpO
step) and the ResNet-18 ID-ExpO Grad-CAM step at B = 8. Wall and CPU seconds, median of 3.

`python -m benchmarks.cpu_conv_path` prints a markdown table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PARTS = ("conv_fwd", "conv_vjp", "smallcnn_floor", "resnet_step_b8")


def _child(part: str) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from flax import nnx

  from benchmarks.common import time_interleaved
  from idexpo_jax import conv as C
  from idexpo_jax import models

  rng = np.random.default_rng(0)
  if part in ("conv_fwd", "conv_vjp"):
    x = jnp.asarray(rng.normal(size=(2112, 16, 16, 32)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 32, 64)) / 10, jnp.float32)
    conv = lambda x, w: C.conv2d(x, w, 1, "SAME", method="lax")  # noqa: E731
    fn = jax.jit(conv if part == "conv_fwd" else
                 jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), (0, 1)))
    run = lambda: jax.block_until_ready(fn(x, w))  # noqa: E731
  elif part == "smallcnn_floor":
    x = jnp.asarray(rng.normal(size=(2112, 16, 16, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 2112), jnp.int32)
    g, p, rest = models.functional(models.SmallCNN(1, 10, width=32, rngs=nnx.Rngs(0)))
    fn = jax.jit(jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        models.predictor_fn(g, p, rest)(x), y).mean()))
    run = lambda: jax.block_until_ready(fn(p))  # noqa: E731
  else:
    from benchmarks import resnet_step as R
    x, y, base = R.make_batch(8)
    run = R.prepare_ours(R.make_model(), x, y, base)[0]
  run()
  t = time_interleaved({part: run}, repeats=3)[part]
  return {"wall_s": t["median_s"], "cpu_s": t["cpu_median_s"]}


def main() -> None:
  if len(sys.argv) == 3 and sys.argv[1] == "--child":
    print(json.dumps(_child(sys.argv[2])))
    return
  rows = []
  for part in PARTS:
    row = [part]
    for keep in ("1", "0"):
      env = {**os.environ, "IDEXPO_JAX_KEEP_XLA_FLAGS": keep}
      env.pop("XLA_FLAGS", None)
      out = subprocess.run([sys.executable, "-m", "benchmarks.cpu_conv_path", "--child", part],
                           env=env, capture_output=True, text=True, check=True)
      t = json.loads(out.stdout.strip().splitlines()[-1])
      row.append(f"{t['wall_s']:.3f} / {t['cpu_s']:.3f}")
    rows.append(row)
  print("| work | YNNPACK (default) wall / CPU s | Eigen (`-individual_convolution`) wall / CPU s |")
  print("| --- | ---: | ---: |")
  for r in rows:
    print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
  main()
