"""Per-layer convolution timings on CPU: the measurements behind `idexpo_jax.conv.cpu_plan`.

For every convolution of the CIFAR ResNet-18 of the image experiments (stride-2 stem, 32×32×3
inputs) and of `SmallCNN` (16×16 digits), times three parts, each a jitted function:

* `fwd`: the convolution;
* `dx`: its input gradient (the VJP in `x` of a given output gradient);
* `dw`: its kernel gradient;

with each method of `idexpo_jax.conv` ("lax": `lax.conv_general_dilated` and its transposes;
"shifted": `kh·kw` GEMMs of shifted views; "patches": im2col and one GEMM; for `dx`, "lax_conv":
the stride-1 input gradient written as a forward convolution of the output gradient with the
flipped kernel, as `conv2d`'s backward does), and the planned `conv2d` (the rule). Also times
PyTorch's `conv2d` and its gradients (oneDNN) on the same shapes when torch is installed.
Methods run round-robin per layer; CPU seconds of this process are reported beside wall time.

`python -m benchmarks.conv [--images 130] [--repeats 3] [--quick]` saves the section `conv` in
`benchmarks/results.json` and `docs/benchmarks.md` (`common.save_section`; `make bench` runs it
through `benchmarks.run`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import (check_quick_paths, machine_info, md_table, save_section,
                               time_interleaved)
from idexpo_jax import conv as C

# (name, H, cin, cout, k, stride): the input map side H of each distinct convolution.
RESNET18 = [
    ("stem 3→64 s2", 32, 3, 64, 3, 2),
    ("s1 64→64", 16, 64, 64, 3, 1),
    ("s2 64→128 s2", 16, 64, 128, 3, 2),
    ("s2 proj 1×1 s2", 16, 64, 128, 1, 2),
    ("s2 128→128", 8, 128, 128, 3, 1),
    ("s3 128→256 s2", 8, 128, 256, 3, 2),
    ("s3 proj 1×1 s2", 8, 128, 256, 1, 2),
    ("s3 256→256", 4, 256, 256, 3, 1),
    ("s4 256→512 s2", 4, 256, 512, 3, 2),
    ("s4 proj 1×1 s2", 4, 256, 512, 1, 2),
    ("s4 512→512", 2, 512, 512, 3, 1),
]
SMALLCNN = [
    ("cnn conv1 1→32", 16, 1, 32, 3, 1),
    ("cnn conv2 32→64", 16, 32, 64, 3, 1),
    ("cnn conv3 64→64", 8, 64, 64, 3, 1),
]
QUICK_LAYERS = [("tiny 1×1 s2", 4, 8, 16, 1, 2), ("tiny 3×3", 8, 1, 8, 3, 1)]  # `--quick`
# ResNet-18 counts of each layer per forward pass (for the per-network totals).
COUNT = {"s1 64→64": 4, "s2 128→128": 3, "s3 256→256": 3, "s4 512→512": 3}


def _log(msg: str) -> None:
  print(f"[conv {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _jax_parts(x, w, stride):
  """`{part: {method: run}}` of jitted, blocking calls."""
  fwd = {m: (lambda x, w, m=m: C.conv2d(x, w, stride, "SAME", method=m)) for m in C.METHODS}
  fwd["plan"] = lambda x, w: C.conv2d(x, w, stride, "SAME")
  y = fwd["lax"](x, w)
  g = jnp.asarray(np.random.default_rng(1).normal(size=y.shape).astype(np.float32))
  pads = C._pads("SAME", x.shape[1:3], w.shape[:2], (stride, stride))
  dx = {"lax": lambda x, w, g: jax.vjp(lambda x: C._lax_conv(x, w, (stride,) * 2, pads), x)[1](g)[0],
        "shifted": lambda x, w, g: jax.vjp(
            lambda x: C._shifted_conv(x, w, (stride,) * 2, pads), x)[1](g)[0],
        "plan": lambda x, w, g: jax.vjp(lambda x: C.conv2d(x, w, stride, "SAME"), x)[1](g)[0]}
  if stride == 1:
    dx["lax_conv"] = lambda x, w, g: C._input_grad(x.shape, w, g, (1, 1), pads,
                                                   "lax", x.dtype)
  dw = {m: (lambda x, w, g, m=m: C._kernel_grad(x, g, w.shape, (stride,) * 2, pads, m))
        for m in C.METHODS}
  dw["plan"] = lambda x, w, g: jax.vjp(lambda w: C.conv2d(x, w, stride, "SAME"), w)[1](g)[0]
  out = {}
  for part, fns, args in (("fwd", fwd, (x, w)), ("dx", dx, (x, w, g)), ("dw", dw, (x, w, g))):
    out[part] = {}
    for m, fn in fns.items():
      jf = jax.jit(fn)
      out[part][m] = (lambda jf=jf, args=args: jax.block_until_ready(jf(*args)))
  return out, g


def _torch_parts(x, w, g, stride, k):
  try:
    import torch
    from torch.nn import functional as F
  except ImportError:
    return {}
  xt = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))
  wt = torch.from_numpy(np.ascontiguousarray(np.asarray(w).transpose(3, 2, 0, 1)))
  gt = torch.from_numpy(np.ascontiguousarray(np.asarray(g).transpose(0, 3, 1, 2)))
  pad = k // 2

  def fwd():
    with torch.no_grad():
      return F.conv2d(xt, wt, stride=stride, padding=pad)

  def dx():
    return torch.nn.grad.conv2d_input(xt.shape, wt, gt, stride=stride, padding=pad)

  def dw():
    return torch.nn.grad.conv2d_weight(xt, wt.shape, gt, stride=stride, padding=pad)

  return {"fwd": fwd, "dx": dx, "dw": dw}


def bench_layer(name, h, cin, cout, k, stride, *, images, repeats) -> dict:
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(images, h, h, cin)).astype(np.float32))
  w = jnp.asarray((rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32))
  parts, g = _jax_parts(x, w, stride)
  torch_parts = _torch_parts(x, w, g, stride, k)
  row = {"layer": name, "H": h, "cin": cin, "cout": cout, "k": k, "stride": stride,
         "images": images, "plan": C.cpu_plan((h, h), (k, k), (stride, stride), cin, cout)._asdict()}
  ho = (h - 1) // stride + 1
  row["gflop"] = 2 * images * ho * ho * cout * cin * k * k / 1e9
  for part, runs in parts.items():
    if part in torch_parts:
      runs = {**runs, "torch": torch_parts[part]}
    t = time_interleaved(runs, repeats=repeats)
    row[part] = {m: {"wall_s": v["median_s"], "cpu_s": v["cpu_median_s"]} for m, v in t.items()}
  return row


def run(*, images: int = 130, repeats: int = 3, layers=None) -> dict:
  layers = layers or RESNET18 + SMALLCNN
  rows = []
  for spec in layers:
    _log(f"{spec[0]}: {images} images")
    rows.append(bench_layer(*spec, images=images, repeats=repeats))
  return {"images": images, "repeats": repeats, "rows": rows, "machine": machine_info()}


def markdown(section: dict) -> list[str]:
  """CPU milliseconds per layer, part and method, and the rule's choice in brackets."""
  rows = []
  for r in section["rows"]:
    for part in ("fwd", "dx", "dw"):
      d = r[part]
      cell = lambda k: f"{d[k]['cpu_s'] * 1e3:.1f}" if k in d else ""
      rows.append([f"{r['layer']} ({r['H']}×{r['H']}) {part}", f"{r['gflop']:.2f}",
                   *map(cell, ("lax", "shifted", "patches", "lax_conv")),
                   f"**{cell('plan')}** [{r['plan'][part]}]", cell("torch"),
                   f"{d['plan']['cpu_s'] / d['lax']['cpu_s']:.2f}×"])
  return md_table(["layer, part", "GFLOP", "lax", "shifted", "patches", "lax_conv", "**plan**",
                   "torch", "plan ÷ lax"], rows) + [
      "", f"{section['images']} images, median of {section['repeats']} round-robin repeats.", ""]


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--images", type=int, default=130)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--quick", action="store_true", help="8 images, 1 repeat")
  p.add_argument("--out", default="benchmarks/results.json")
  p.add_argument("--doc", default="docs/benchmarks.md")
  p.add_argument("--no-save", action="store_true")
  args = p.parse_args(argv)
  check_quick_paths(p, args)
  if args.quick:
    args.images, args.repeats = 8, 1
  section = run(images=args.images, repeats=args.repeats,
                layers=QUICK_LAYERS if args.quick else None)
  section["machine"]["load_average_end"] = list(os.getloadavg())
  for r in section["rows"]:
    print(r["layer"], r["H"], {part: {m: round(v["cpu_s"] * 1e3, 1) for m, v in r[part].items()}
                               for part in ("fwd", "dx", "dw")}, flush=True)
  if not args.no_save:
    save_section("conv", section, markdown(section), out=args.out, doc=args.doc)
  return section


if __name__ == "__main__":
  main()
