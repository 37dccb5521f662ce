"""`make bench`: every benchmark section, side by side in one run, into JSON and Markdown.

Usage: `python -m benchmarks.run [--sections explainers,tabular,...] [--quick] [--images 64] ...`
(see `--help`). The sections (`SECTIONS`): explainer throughput on images (`explainers`) and on the
tabular MLP (`tabular`), the ID-ExpO train step against its floors (`train_step`), the same step in
plain PyTorch (`pytorch`), the ResNet-18 Grad-CAM step against PyTorch (`resnet_step`,
`benchmarks.resnet_step`), the per-layer convolutions (`conv`, `benchmarks.conv`) and KernelSHAP's
error vs budget (`error_vs_budget`). Each one run replaces its section of `--out` and its tables in
`--doc` (`common.save_section`); the others stay. `--quick` runs tiny sizes (a smoke test) and so
needs `--out` and `--doc` away from the measured results. `--render` only rewrites the doc's tables
from the saved results.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

from benchmarks import conv, resnet_step, train_steps
from benchmarks import error_vs_budget as evb
from benchmarks import explainers as ex
from benchmarks import lime_pairing, torch_compare
from benchmarks import tabular as tab
from benchmarks.common import (DOC, RESULTS, check_quick_paths, machine_info, make_problem,
                               save_section, time_interleaved)
from benchmarks.torch_compare import bench_pytorch
from benchmarks.train_steps import bench_train_steps

SECTIONS = ("explainers", "train_step", "tabular", "pytorch", "resnet_step", "conv",
            "error_vs_budget")
MARKDOWN = {"explainers": ex.markdown, "train_step": train_steps.markdown, "tabular": tab.markdown,
            "pytorch": torch_compare.markdown, "resnet_step": resnet_step.markdown,
            "conv": conv.markdown, "error_vs_budget": evb.markdown_section,
            "lime_pairing": lime_pairing.markdown_section}
QUICK = dict(defaults=False, images=2, samples=32, segments=[16], width=8, tiny_width=None,
             package_images=1, repeats=1, batch=2, train_batch=2, train_samples=32,
             train_segments=16, tabular_rows=2, tabular_package_rows=1, resnet_batches=[2],
             resnet_width=4, resnet_rss=False, conv_images=8)


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--images", type=int, default=64, help="images explained by our explainers")
  p.add_argument("--samples", type=int, default=1000, help="samples per explanation (all)")
  p.add_argument("--segments", type=lambda s: [int(v) for v in s.split(",")], default=[16, 64],
                 help="grid segment counts, comma-separated squares")
  p.add_argument("--width", type=int, default=32, help="SmallCNN width")
  p.add_argument("--tiny-width", type=int, default=4,
                 help="also time a SmallCNN this narrow (model cost ~0) at the first segment "
                      "count; 0 to skip")
  p.add_argument("--package-images", type=int, default=4,
                 help="images explained by each package (median per explanation)")
  p.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
  p.add_argument("--batch", type=int, default=1,
                 help="images per jitted explainer call (1: N = 1000 images per model call, "
                      "faster per image on CPU than 8 × 1000, which spills the caches)")
  p.add_argument("--train-batch", type=int, default=32)
  p.add_argument("--train-samples", type=int, default=128,
                 help="LIME / KernelSHAP samples per example inside the train step")
  p.add_argument("--train-segments", type=int, default=16)
  p.add_argument("--sections", type=_sections, default=list(SECTIONS),
                 help=f"comma-separated, of {','.join(SECTIONS)} (default: all)")
  p.add_argument("--resnet-batches", type=lambda s: [int(v) for v in s.split(",")],
                 default=[8, 32], help="batch sizes of the ResNet-18 step")
  p.add_argument("--resnet-width", type=int, default=64, help="ResNet-18 width (the paper's)")
  p.add_argument("--resnet-variants", type=lambda s: tuple(s.split(",")),
                 default=resnet_step.VARIANTS, help="steps timed in the ResNet-18 section")
  p.add_argument("--no-resnet-rss", dest="resnet_rss", action="store_false",
                 help="skip the ResNet-18 peak-RSS subprocesses")
  p.add_argument("--conv-images", type=int, default=130, help="images per convolution call")
  p.add_argument("--tabular-rows", type=int, default=64,
                 help="breast-cancer test rows explained by our explainers (tabular MLP)")
  p.add_argument("--tabular-package-rows", type=int, default=16,
                 help="rows explained by each package in the tabular section")
  p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
  p.add_argument("--no-defaults", dest="defaults", action="store_false",
                 help="skip the packages' default batching (first configuration only)")
  p.add_argument("--skip-packages", action="store_true", help="time only idexpo_jax")
  p.add_argument("--render", action="store_true",
                 help="only rewrite the tables of --doc from the sections saved in --out")
  p.add_argument("--out", default=RESULTS)
  p.add_argument("--doc", default=DOC)
  args = p.parse_args(argv)
  check_quick_paths(p, args)
  if args.quick:
    for k, v in QUICK.items():
      setattr(args, k, v)
  if args.tiny_width == 0:
    args.tiny_width = None
  if args.images % args.batch:
    p.error(f"--images ({args.images}) must be a multiple of --batch ({args.batch}).")
  return args


def _sections(text: str) -> list[str]:
  names = text.split(",")
  bad = [n for n in names if n not in SECTIONS]
  if bad:
    raise argparse.ArgumentTypeError(f"unknown sections {bad}; choose from {', '.join(SECTIONS)}")
  return names


def _log(msg: str) -> None:
  print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def bench_explainers(args, width: int, n_segments: int, *, with_defaults: bool = False) -> dict:
  """One row of the explainer table: ours, the floor and the packages on one configuration."""
  problem = make_problem(n_images=args.images, width=width)
  n_pkg = min(args.package_images, args.images)
  common = dict(n_segments=n_segments, n_samples=args.samples)
  row = {"width": width, "n_segments": n_segments, "n_samples": args.samples,
         "n_images": args.images, "ours": {}, "packages": {}}
  _log(f"width {width}, {n_segments} segments: floor and ours (compile, then interleaved)")
  prepared = {"floor": ex.prepare_floor(problem, batch=args.batch, **common)}
  for method in ex.METHODS:
    prepared[method] = ex.prepare_ours(problem, method, batch=args.batch, **common)
  available = {k: v for k, v in prepared.items() if v is not None}
  timings = time_interleaved({k: run for k, (run, _) in available.items()},
                             repeats=args.repeats)
  row["floor"] = ex.per_explanation(timings["floor"], prepared["floor"][1])
  for method in ex.METHODS:
    row["ours"][method] = (ex.per_explanation(timings[method], prepared[method][1])
                           if prepared[method] else None)
  if not args.skip_packages:
    packages = {
        "lime_package": lambda: ex.bench_lime_package(problem, n_images=n_pkg, **common),
        "shap_package": lambda: ex.bench_shap_package(problem, n_images=n_pkg, **common),
        "captum_lime": lambda: ex.bench_captum(problem, "lime", n_images=n_pkg, **common),
        "captum_kernel_shap": lambda: ex.bench_captum(problem, "kernel_shap", n_images=n_pkg,
                                                      **common),
    }
    packages["torch_floor"] = lambda: ex.bench_torch_floor(problem, n_images=n_pkg, **common)
    if with_defaults:  # the packages' default batching, as most users run them
      packages["lime_package_default"] = lambda: ex.bench_lime_package(
          problem, n_images=n_pkg, batch_size=10, **common)
      for m in ex.METHODS:
        packages[f"captum_{m}_default"] = functools.partial(
            ex.bench_captum, problem, m, n_images=n_pkg, perturbations_per_eval=1, **common)
    for name, fn in packages.items():
      _log(f"width {width}, {n_segments} segments: {name}")
      try:
        row["packages"][name] = fn()
      except ImportError as e:
        row["packages"][name] = {"error": f"not installed: {e}"}
  row["ratios"] = explainer_ratios(row)
  return row


def explainer_ratios(row: dict) -> dict:
  """Package time / our time, and our (and each package's) time / floor, per explanation."""
  floor = row["floor"]["per_explanation_s"]
  out = {}
  for method, ours in row["ours"].items():
    if ours is None:
      continue
    t = ours["per_explanation_s"]
    out[f"{method}_over_floor"] = t / floor
    for pkg in ex.COMPETITORS[method] + ex.DEFAULT_VARIANTS[method]:
      r = row["packages"].get(pkg, {})
      if "per_explanation_s" in r:
        out[f"{pkg}_over_ours"] = r["per_explanation_s"] / t
  for pkg, r in row["packages"].items():
    if "per_explanation_s" in r:
      out[f"{pkg}_over_floor"] = r["per_explanation_s"] / floor
  torch_floor = row["packages"].get("torch_floor", {}).get("per_explanation_s")
  for pkg in ("captum_lime", "captum_kernel_shap"):
    if torch_floor and "per_explanation_s" in row["packages"].get(pkg, {}):
      out[f"{pkg}_over_torch_floor"] = row["packages"][pkg]["per_explanation_s"] / torch_floor
  return out


def bench_tabular(args) -> dict:
  """The tabular MLP row: ours, the floor and the packages on breast cancer (`benchmarks.tabular`).

  Our explainers explain all rows in one jitted, vmapped call.
  """
  problem = tab.make_tabular_problem(n_rows=args.tabular_rows)
  d = problem.x.shape[1]
  n_pkg = min(args.tabular_package_rows, args.tabular_rows)
  common = dict(n_segments=d, n_samples=args.samples)
  row = {"model": f"MLP {d}-{'-'.join(map(str, problem.hidden))}-2", "dataset": "breast_cancer",
         "n_features": d, "hidden": list(problem.hidden), "n_samples": args.samples,
         "n_images": args.tabular_rows, "kernel_width": tab.lime_width(problem),
         "machine": machine_info(), "ours": {}, "packages": {}}
  batch = args.tabular_rows
  _log(f"tabular MLP, {d} features: floor and ours (compile, then interleaved)")
  prepared = {"floor": ex.prepare_floor(problem, batch=batch, **common)}
  for method in ex.METHODS:
    prepared[method] = ex.prepare_ours(problem, method, batch=batch, **common,
                                       options=tab.LIME_OPTIONS if method == "lime" else None)
  parts = tab.prepare_parts(problem, n_samples=args.samples)
  prepared.update(parts)
  available = {k: v for k, v in prepared.items() if v is not None}
  timings = time_interleaved({k: run for k, (run, _) in available.items()},
                             repeats=max(args.repeats, 20))
  row["floor"] = ex.per_explanation(timings["floor"], prepared["floor"][1])
  for method in ex.METHODS:
    row["ours"][method] = (ex.per_explanation(timings[method], prepared[method][1])
                           if prepared[method] else None)
  row["parts"] = {k: ex.per_explanation(timings[k], info) for k, (_, info) in parts.items()}
  n_rows = args.tabular_rows  # CPU time of this process beside wall time (less moved by load)
  row["floor"]["cpu_per_explanation_s"] = timings["floor"]["cpu_median_s"] / n_rows
  for method in ex.METHODS:
    if row["ours"][method]:
      row["ours"][method]["cpu_per_explanation_s"] = timings[method]["cpu_median_s"] / n_rows
  if not args.skip_packages:
    kw = dict(n_samples=args.samples, n_images=n_pkg)
    packages = {
        "lime_package": lambda: tab.bench_lime_base(problem, **kw),
        "shap_package": lambda: tab.bench_shap_tabular(problem, **kw),
        "captum_lime": lambda: tab.bench_captum_tabular(problem, "lime", **kw),
        "captum_kernel_shap": lambda: tab.bench_captum_tabular(problem, "kernel_shap", **kw),
        "torch_floor": lambda: tab.bench_torch_floor_tabular(problem, **kw),
        "lime_tabular": lambda: tab.bench_lime_tabular(problem, **kw),
    }
    if args.defaults:
      for m in ex.METHODS:
        packages[f"captum_{m}_default"] = functools.partial(
            tab.bench_captum_tabular, problem, m, perturbations_per_eval=1, **kw)
    for name, fn in packages.items():
      _log(f"tabular MLP: {name}")
      try:
        row["packages"][name] = fn()
      except ImportError as e:
        row["packages"][name] = {"error": f"not installed: {e}"}
  row["ratios"] = explainer_ratios(row)
  for method in ex.METHODS:
    if row["ours"][method]:
      row["ratios"][f"{method}_over_floor_cpu"] = (
          row["ours"][method]["cpu_per_explanation_s"] / row["floor"]["cpu_per_explanation_s"])
  if "per_explanation_s" in row["packages"].get("lime_tabular", {}) and row["ours"]["lime"]:
    row["ratios"]["lime_tabular_over_ours"] = (row["packages"]["lime_tabular"]["per_explanation_s"]
                                               / row["ours"]["lime"]["per_explanation_s"])
  row["machine"]["load_average_end"] = list(os.getloadavg())
  return row


def run_explainers(args) -> dict:
  """The image-explainer tables: one row per (width, segments) configuration."""
  t0 = time.time()
  section = {"machine": machine_info(), "args": vars(args), "rows": []}
  configs = [(args.width, s) for s in args.segments]
  if args.tiny_width:
    configs.append((args.tiny_width, args.segments[0]))
  for i, (width, n_segments) in enumerate(configs):
    section["rows"].append(bench_explainers(args, width, n_segments,
                                            with_defaults=i == 0 and args.defaults))
  section["wall_s"] = time.time() - t0
  return section


def run_train_step(args) -> dict:
  """The CE and ID-ExpO steps beside their forward+backward floors (`benchmarks.train_steps`)."""
  _log("train steps")
  machine = machine_info()
  problem = make_problem(n_images=max(args.train_batch, args.images), width=args.width)
  section = bench_train_steps(problem, batch_size=args.train_batch, n_segments=args.train_segments,
                              n_samples=args.train_samples, repeats=args.repeats)
  return {**section, "machine": machine}


def run_tabular(args) -> dict:
  t0 = time.time()
  section = bench_tabular(args)
  section["wall_s"] = time.time() - t0
  section["args"] = {k: getattr(args, k) for k in (
      "samples", "tabular_rows", "tabular_package_rows", "repeats", "defaults")}
  return section


def run_pytorch(args) -> dict:
  """Our Grad-CAM ID-ExpO step and its floor beside the same step and floor in PyTorch."""
  _log("ID-ExpO step: ours vs PyTorch (compile, then interleaved)")
  t0 = time.time()
  machine = machine_info()
  problem = make_problem(n_images=max(args.train_batch, args.images), width=args.width)
  out = bench_pytorch(problem, batch_size=args.train_batch, repeats=max(args.repeats, 3))
  out["machine"] = machine
  out["wall_s"] = time.time() - t0
  return out


def run_resnet_step(args) -> dict:
  _log("ResNet-18 Grad-CAM step: ours vs PyTorch")
  return resnet_step.run(batches=args.resnet_batches, repeats=args.repeats,
                         variants=args.resnet_variants, rss=args.resnet_rss,
                         width=args.resnet_width)


def run_conv(args) -> dict:
  _log("convolutions per layer")
  return conv.run(images=args.conv_images, repeats=args.repeats,
                  layers=conv.QUICK_LAYERS if args.quick else None)


def run_error_vs_budget(args) -> dict:
  _log("KernelSHAP error vs budget")
  section = (evb.run(n_rows=2, seeds=2, budgets=(64, 256)) if args.quick else evb.run())
  section["machine"] = machine_info()
  evb.plot(section, os.path.join(os.path.dirname(args.doc) or ".", "error_vs_budget.png"))
  return section


RUN = {"explainers": run_explainers, "train_step": run_train_step, "tabular": run_tabular,
       "pytorch": run_pytorch, "resnet_step": run_resnet_step, "conv": run_conv,
       "error_vs_budget": run_error_vs_budget}


def main(argv=None) -> dict:
  # lime_image draws a progress bar per explanation; set here, not at import, so that importing
  # this module (e.g. in the tests) leaves other progress bars alone.
  os.environ.setdefault("TQDM_DISABLE", "1")
  args = parse_args(argv)
  if args.render:
    with open(args.out) as f:
      results = json.load(f)
    for name, section in results.items():
      if name in MARKDOWN:
        save_section(name, section, MARKDOWN[name](section), out=args.out, doc=args.doc)
    _log(f"rendered {args.out} to {args.doc}")
    return results
  t0 = time.time()
  done = {}
  for name in args.sections:
    section = RUN[name](args)
    section.setdefault("machine", machine_info())["load_average_end"] = list(os.getloadavg())
    if name == "resnet_step":
      section = resnet_step.merge_rows(section, args.out)
    save_section(name, section, MARKDOWN[name](section), out=args.out, doc=args.doc)
    done[name] = section
    _log(f"{name}: saved to {args.out} and {args.doc} ({time.time() - t0:.0f} s so far)")
  return done


if __name__ == "__main__":
  main()
