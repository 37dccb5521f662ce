"""docs/benchmarks.md sections on the ID-ExpO step: PyTorch beside ours, XLA CPU options, compiling.

Rendered by `benchmarks.report.write_markdown` from the `"pytorch"`, `"xla_cpu"` and `"compile"`
sections of `benchmarks/results.json` (`benchmarks.torch_compare`, `benchmarks.xla_cpu`,
`benchmarks.compile_time`).
"""

from __future__ import annotations

from typing import Optional


def _s(t: Optional[float]) -> str:
  if t is None:
    return "–"
  return f"{t:.2f} s" if t >= 1 else f"{t * 1e3:.0f} ms"


def _x(r: Optional[float]) -> str:
  return "–" if r is None else f"{r:.2f}×"


def _machine(m: dict) -> str:
  load = ", ".join(f"{x:.1f}" for x in m.get("load_average") or [])
  end = ", ".join(f"{x:.1f}" for x in m.get("load_average_end") or [])
  return (f"{m['cpu']}, {m['cores']} cores, {m['jax_device']}, jax {m['versions']['jax']}, "
          f"torch {m['versions']['torch']}; load average {load} at start, {end} at end")


def pytorch_section(pt: dict) -> list[str]:
  """Our jitted step and the JAX floor beside the plain PyTorch step and floor."""
  med = {k: v["median_s"] for k, v in pt["timings"].items()}
  b, w, n = pt["batch_size"], pt["width"], pt["floor_images"]
  lines = [
      "## ID-ExpO step: ours vs the same step in plain PyTorch",
      "",
      f"What a researcher would otherwise write: the Grad-CAM ID-ExpO step (B = {b}, SmallCNN "
      f"width {w}, 16×16×1 digits, n_steps = {pt['n_steps']}, fraction = {pt['fraction']}, "
      "second order, SGD-Nesterov) in plain, vectorised PyTorch (`benchmarks/torch_idexpo.py`, "
      "written from SPEC §2 and §4): one `autograd.grad(create_graph=True)` for all CAMs of the "
      "batch, one batched forward of all soft images, `loss.backward()`, `optim.SGD`, on a copy of "
      "the same weights; it computes the same loss and gradients as ours "
      "(tests/test_benchmarks.py). Floors: forward+backward of the cross-entropy over the "
      f"B·(2M+2) = {n} images the step evaluates, in each framework. All four timed round-robin "
      f"in one process (`python -m benchmarks.run --only pytorch`, {pt['wall_s']:.0f} s wall; "
      f"{_machine(pt['machine'])}; PyTorch {pt.get('torch_threads', '?')} threads, oneDNN "
      f"{'on' if pt.get('mkldnn') else 'off'}). Median of {len(pt['timings']['ours']['times_s'])}"
      " repeats.",
      "",
      "| | s / step (wall) | CPU s / step | compile (ours) / first call (PyTorch) | ÷ JAX floor "
      "| ÷ PyTorch step | ÷ PyTorch step, CPU time |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  cpu = {k: v.get("cpu_median_s", float("nan")) for k, v in pt["timings"].items()}
  first = pt.get("torch_first_call_s", {})
  rows = [("**idexpo_jax step** (jit)", "ours", pt["compile"]["ours"]["total_s"]),
          ("plain PyTorch step (eager)", "torch_step", first.get("torch_step")),
          (f"JAX floor: `jax.grad` of CE over {n} images", "jax_floor",
           pt["compile"]["jax_floor"]["total_s"]),
          (f"PyTorch floor: `backward()` of CE over {n} images", "torch_floor",
           first.get("torch_floor"))]
  for label, key, c in rows:
    if key in med:
      t = med[key]
      vs_torch = (_x(t / med["torch_step"]), _x(cpu[key] / cpu["torch_step"])) \
          if "torch_step" in med else ("–", "–")
      lines.append(f"| {label} | {_s(t)} | {_s(cpu[key])} | {_s(c)} | "
                   f"{_x(t / med['jax_floor'])} | {vs_torch[0]} | {vs_torch[1]} |")
  r, rc = pt["ratios"], pt.get("cpu_ratios", {})
  if "ours_over_torch_step" in r:
    lines += [
        "",
        f"Ours ÷ PyTorch: step **{r['ours_over_torch_step']:.2f}×** in wall time "
        f"({rc.get('ours_over_torch_step', float('nan')):.2f}× in CPU time). It factors as "
        f"(bare forward+backward, JAX ÷ PyTorch: {r['jax_floor_over_torch_floor']:.2f}×) × "
        f"(our step ÷ its floor: {r['ours_over_jax_floor']:.2f}×) ÷ (PyTorch step ÷ its floor: "
        f"{r['torch_step_over_torch_floor']:.2f}×). The first factor is the frameworks' "
        "convolution kernels alone (XLA's CPU convolutions vs PyTorch's oneDNN), with no ID-ExpO "
        "code involved; the other two are what each step adds to its images' forward and "
        "backward (Grad-CAM's second-order pass, the soft masks, the optimizer; eager dispatch "
        "and intermediate tensors for PyTorch, one fused XLA program for us).",
    ]
  return lines + [""]


_FLAG_NOTES = {
    "onednn": "oneDNN thunks for matmul and convolution fusions",
    "onednn_custom_call": "oneDNN custom calls (experimental)",
    "fast_math": "unsafe fast math",
    "no_xnnpack": "XNNPACK off (on by default)",
    "xnn_graph_fusion": "XNNPACK graph fusion, greedy",
    "vector_width_512": "AVX-512 vectors (default 256)",
    "fast_compile": "opt preset FAST_COMPILE",
    "no_expensive_llvm": "skip LLVM's expensive passes",
}


def _best_floor(sec: dict) -> list[tuple[str, float]]:
  """`(option, floor CPU-time ratio to the default)` of every measured option, best first."""
  out = []
  for name, r in sec.get("flags", {}).get("variants", {}).items():
    if "ratio_to_baseline" in r:
      out.append((f"`{r['flags']}`", r["ratio_to_baseline"]["cpu"]["floor"]))
  ip = sec.get("in_process", {}).get("cpu_ratio_to_default", {})
  names = {"floor_nchw_f32": "NCHW layout", "floor_nhwc_bf16": "bfloat16"}
  out += [(names[k], v) for k, v in ip.items() if k in names]
  return sorted(out, key=lambda t: t[1])


def xla_cpu_section(sec: dict, pytorch: Optional[dict] = None) -> list[str]:
  """Measured effect of each XLA CPU option on the floor and on our step."""
  lines = [
      "## Closing the CPU gap: XLA options, layout, bfloat16, chunks",
      "",
      f"`python -m benchmarks.xla_cpu` on the problem above (B = {sec['batch']}, width "
      f"{sec['width']}); {_machine(sec['machine'])}. Ratios < 1 are faster than the default.",
      "",
  ]
  fl = sec.get("flags")
  if fl:
    base = fl["baseline"]
    lines += [
        "Each `XLA_FLAGS` setting in a fresh process; the default (no flags) ran first and last "
        f"(floor {_s(base['wall']['floor'])} wall; the two "
        "default runs' floors: " + ", ".join(f"{_s(r['wall']['floor'])} wall / "
                                             f"{_s(r['cpu']['floor'])} CPU"
                                             for r in fl["baseline_runs"])
        + ", i.e. how much a rerun moves them), every ratio is to their mean. CPU time = this process's CPU seconds (all "
        "threads), which the other jobs on the machine disturb less than wall time.",
        "",
        "| XLA_FLAGS | what | floor ÷ default (wall / CPU) | step ÷ default (wall / CPU) | "
        "compile CPU ÷ default (floor / step) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, r in fl["variants"].items():
      if "error" in r:
        lines.append(f"| `{r['flags']}` | {_FLAG_NOTES.get(name, '')} | fails: {r['error']} | | |")
        continue
      rr = r["ratio_to_baseline"]

      def pair(a, b):
        return f"{_x(a)} / {_x(b)}" if a is not None else "–"

      lines.append(
          f"| `{r['flags']}` | {_FLAG_NOTES.get(name, '')} | "
          f"{pair(rr['wall']['floor'], rr['cpu']['floor'])} | "
          f"{pair(rr['wall'].get('step'), rr['cpu'].get('step'))} | "
          f"{pair(rr['compile_cpu']['floor'], rr['compile_cpu'].get('step'))} |")
    lines.append("")
  ip = sec.get("in_process")
  if ip:
    notes = {"floor_nhwc_f32": "floor, NHWC float32 (ours, the reference)",
             "floor_nchw_f32": "floor, NCHW activations / OIHW kernels (PyTorch's layout)",
             "floor_nhwc_bf16": "floor, bfloat16 weights and images",
             "step_one_call": "step, all soft images in one model call (default)"}
    lines += ["In one process, round-robin:", "",
              "| variant | wall | ÷ its default | CPU | ÷ its default (CPU) | compile (CPU s) |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for k, t in ip["wall"].items():
      label = notes.get(k) or (f"step, `chunk_size={k.rsplit('_', 1)[1]}` soft images per "
                               "example per model call (`lax.map` over chunks)")
      lines.append(f"| {label} | {_s(t)} | {_x(ip['wall_ratio_to_default'][k])} | "
                   f"{_s(ip['cpu'][k])} | {_x(ip['cpu_ratio_to_default'][k])} | "
                   f"{_s(ip['compile'][k]['total_cpu_s'])} |")
    lines.append("")
    chunks = [v for k, v in ip["cpu_ratio_to_default"].items() if k.startswith("step_chunk")]
    if chunks:
      lines += [f"Chunking the soft images (`chunk_size`, a `lax.map` inside the vmapped, "
                f"differentiated penalty) makes the step {min(chunks):.1f}–{max(chunks):.0f}× "
                "slower in CPU time here, at about the same compile time: keep the default (one "
                "batched model call) unless memory forces a chunk.", ""]
  best = _best_floor(sec)
  gap = (pytorch or {}).get("cpu_ratios", {}).get("jax_floor_over_torch_floor")
  if best:
    lines += [
        "Best measured option for the floor: " + f"{best[0][0]} at {best[0][1]:.2f}× the default "
        "(CPU time); all: " + ", ".join(f"{n} {v:.2f}×" for n, v in best) + "."
        + (f" Matching PyTorch's floor would need {1 / gap:.2f}×." if gap else ""), ""]
  return lines


def compile_section(sec: dict) -> list[str]:
  """Persistent cache cold vs warm, and the ResNet-18 cold compiles."""
  lines = ["## Compile time", "", f"`python -m benchmarks.compile_time`; {_machine(sec['machine'])}. "
           "Every number from a fresh process.", ""]
  c = sec.get("cache")
  if c:
    lines += [
        f"Persistent compilation cache (`experiments/common/compilation_cache.py`, turned on by "
        f"every experiment driver), {c['step']}:",
        "",
        "| run | trace + lower (wall / CPU) | `compile()` (wall / CPU) | total wall |",
        "| --- | ---: | ---: | ---: |",
    ]
    for k in ("cold", "warm"):
      r = c[k]
      if "error" in r:
        lines.append(f"| {k} | fails: {r['error']} | | |")
      else:
        lines.append(f"| {k} cache | {_s(r['lower_s'])} / {_s(r['lower_cpu_s'])} | "
                     f"{_s(r['compile_s'])} / {_s(r['compile_cpu_s'])} | {_s(r['total_s'])} |")
    lines.append("")
  rn = sec.get("resnet18")
  if rn and "rows" in rn:
    lines += _resnet_compile_lines(rn)
  if sec.get("steady"):
    lines += _steady_lines(sec["steady"])
  return lines


_RESNET_LABELS = {
    "idexpo_separate_ce": "ID-ExpO + Grad-CAM (second order), CE of its own forward pass (before)",
    "idexpo": "**ID-ExpO + Grad-CAM (second order), CE from `clean_ce` (now)**",
    "idexpo_lime_separate_ce": "ID-ExpO + LIME, CE of its own forward pass (before)",
    "idexpo_lime": "**ID-ExpO + LIME, CE from `clean_ce` (now)**",
    "idexpo_lime_unchunked": "ID-ExpO + LIME (now), the samples in one call (`chunk_size=None`)",
    "idexpo_first_order_separate_ce": "ID-ExpO + Grad-CAM `second_order=False`, separate CE",
    "idexpo_first_order": "ID-ExpO + Grad-CAM `second_order=False`, CE from `clean_ce`",
    "ce": "plain CE step (same optimizer)",
    "floor": "floor: `jax.grad` of CE over the B·(2M+2) images",
    "idexpo_b2": "ID-ExpO + Grad-CAM (now), B = 2",
    "idexpo_b32": "ID-ExpO + Grad-CAM (now), B = 32",
    "idexpo_size64": "ID-ExpO + Grad-CAM (now), 64×64 inputs",
    "idexpo_flat_opt": "ID-ExpO + Grad-CAM (now), `optax.flatten(optimizer)`",
    "idexpo_fast_compile": "ID-ExpO + Grad-CAM (now), XLA opt preset FAST_COMPILE",
    "idexpo_no_expensive_llvm": "ID-ExpO + Grad-CAM (now), LLVM's expensive passes off",
}

# Each row's "before" (the formulation with a separate CE forward pass) for the ratio column.
_BEFORE = {"idexpo_lime": "idexpo_lime_separate_ce",
           "idexpo_lime_unchunked": "idexpo_lime_separate_ce",
           "idexpo_lime_separate_ce": "idexpo_lime_separate_ce",
           "idexpo_first_order": "idexpo_first_order_separate_ce",
           "idexpo_first_order_separate_ce": "idexpo_first_order_separate_ce"}


def compile_reduction(rows: dict, now: str) -> Optional[tuple[float, float]]:
  """`(before, now)` total CPU seconds of a row and of its separate-CE counterpart."""
  before = _BEFORE.get(now, "idexpo_separate_ce")
  if "total_cpu_s" not in rows.get(now, {}) or "total_cpu_s" not in rows.get(before, {}):
    return None
  return rows[before]["total_cpu_s"], rows[now]["total_cpu_s"]


def _resnet_compile_lines(rn: dict) -> list[str]:
  rows = rn["rows"]
  loads = [r["load_average_start"][0] for r in rows.values() if r.get("load_average_start")]
  lime = rn.get("lime", {})
  lines = [
      f"ResNet-18 (CIFAR, width {rn['width']}, stride-2 stem, Grad-CAM on the second stage; LIME "
      f"on {lime.get('cell', '?')}×{lime.get('cell', '?')}-pixel grid cells with "
      f"{lime.get('n_samples', '?')} samples in chunks of {lime.get('chunk_size', '?')}, the "
      f"CIFAR config), {rn['size']}×{rn['size']}×3, B = {rn['batch']} unless the row says "
      f"otherwise, n_steps = {rn['n_steps']}, SGD-Nesterov with weight decay, cold compile "
      f"(fresh process, no persistent cache), each row the median of its round-robin rounds "
      f"(1-min load average {min(loads, default=0):.0f}–{max(loads, default=0):.0f} at the "
      "starts). CPU seconds are the measure here: wall time on this shared 2-core machine moves "
      "with the other jobs' load.",
      "",
      "| | XLA_FLAGS | rounds | trace + lower (CPU s) | `compile()` (CPU s) | total (CPU s) | "
      "total (wall) | ÷ its separate-CE step (CPU) |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  for label, r in rows.items():
    name = _RESNET_LABELS.get(label, label)
    flags = f"`{r['xla_flags']}`" if r.get("xla_flags") else ""
    if "error" in r:
      lines.append(f"| {name} | {flags} | | fails: {r['error']} | | | | |")
      continue
    pair = compile_reduction(rows, label) if r["kind"] != "ce" and r["kind"] != "floor" else None
    ratio = _x(pair[1] / pair[0]) if pair else "–"
    lines.append(f"| {name} | {flags} | {r.get('rounds', 1)} | {_s(r['lower_cpu_s'])} | "
                 f"{_s(r['compile_cpu_s'])} | {_s(r['total_cpu_s'])} | {_s(r['total_s'])} | "
                 f"{ratio} |")
  lines.append("")
  said = []
  for now, what in (("idexpo", "Grad-CAM"), ("idexpo_lime", "LIME")):
    pair = compile_reduction(rows, now)
    if pair:
      said.append(f"{what} {pair[0]:.1f} → {pair[1]:.1f} CPU s "
                  f"({100 * (pair[1] / pair[0] - 1):+.0f}%)")
  if said:
    cpu = {k: r.get("total_cpu_s") for k, r in rows.items()}
    parts = ""
    if cpu.get("ce") and cpu.get("floor") and cpu.get("idexpo"):
      parts = (f" Of the Grad-CAM step's {cpu['idexpo']:.1f} CPU s now, the model's own forward "
               f"and backward pass (the floor) is {cpu['floor']:.1f} s, the optimizer update and "
               f"the step's metrics about {cpu['ce'] - cpu['floor']:.1f} s (plain CE step minus "
               f"floor: one small fused kernel or more per parameter array), and Grad-CAM's "
               f"pass with its second-order term and the penalty's own arithmetic the remaining "
               f"{cpu['idexpo'] - cpu['ce']:.1f} s.")
    lines += [
        "What dominates: XLA's `compile()` (LLVM code generation of several hundred fused "
        "kernels: each convolution's neighbours, BatchNorm, the per-parameter optimizer update), "
        "not tracing (`lower`, 1–3 s), and it does not depend on the batch or image size (rows "
        "B = 2, 32 and 64×64). There is no unrolled per-soft-step work (the 2M + 1 soft images "
        "are one batched call). The step held three copies of the model's forward and backward "
        "pass: the CE's, the explainer's and the soft curves' (whose batch already holds the "
        "clean input, for the deletion ratio). Taking the CE from that clean row "
        "(`idexpo_penalty` reports `clean_ce`; the image configs set `ce_from_penalty`) removes "
        "one copy: " + "; ".join(said) + ", the same loss up to float32 rounding "
        "(tests/test_idexpo.py, tests/test_study.py)." + parts + " LIME's `lax.map` over "
        "sample chunks compiles a loop whose differentiation stacks every chunk's activations; "
        "the unchunked row shows its cost. XLA's compile-time options and a flattened "
        "optimizer change little.", ""]
  return lines


def _steady_lines(steady: dict) -> list[str]:
  lines = ["Steady state of the same two formulations (compiled in one process, called "
           "interleaved, median per step; `--only steady`):", "",
           "| explainer | shape | formulation | s / step (wall) | CPU s / step | ÷ before (wall / "
           "CPU) | first step's loss |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
  for label, r in steady.items():
    if "error" in r:
      lines.append(f"| {label} | | fails: {r['error']} | | | | |")
      continue
    shape = r["shape"]
    what = f"B = {shape['batch']}, {shape['size']}×{shape['size']}, width {shape['width']}"
    if r.get("lime"):
      what += f", {r['lime']['n_samples']} samples in chunks of {r['lime']['chunk_size']}"
    kinds = list(r["kinds"].items())
    before = kinds[0][1]
    for kind, k in kinds:
      form = "separate CE (before)" if kind.endswith("_separate_ce") else "CE from `clean_ce`"
      lines.append(f"| {label} | {what} | {form} | {_s(k['step_s'])} | {_s(k['step_cpu_s'])} | "
                   f"{_x(k['step_s'] / before['step_s'])} / "
                   f"{_x(k['step_cpu_s'] / before['step_cpu_s'])} | {k['first_loss']:.6g} |")
  loads = [f"{r['load_average_start'][0]:.0f}" for r in steady.values()
           if "load_average_start" in r]
  lines += ["", f"{next(iter(steady.values())).get('repeats', '?')} calls each; 1-min load "
            f"average at the start {', '.join(loads)}.", ""]
  return lines


def step_goal_rows(results: dict) -> list[tuple[str, str, object]]:
  """Goal rows of issue 15 points 4 and 5: `(goal, measured, met)`; met may be a phrase."""
  rows = []
  pt = results.get("pytorch", {}).get("ratios", {})
  if "ours_over_torch_step" in pt:  # wall-time ratio, from the round-robin timings
    cpu = results["pytorch"].get("cpu_ratios", {})
    rows.append(("Grad-CAM ID-ExpO step ≤ 1.0× the plain PyTorch step (goal on a GPU; CPU "
                 "measured here)", f"CPU: {pt['ours_over_torch_step']:.2f}× wall, "
                 f"{cpu.get('ours_over_torch_step', float('nan')):.2f}× CPU time (bare "
                 f"forward+backward {pt['jax_floor_over_torch_floor']:.2f}× / "
                 f"{cpu.get('jax_floor_over_torch_floor', float('nan')):.2f}×)",
                 "GPU not measured"))
  cache = results.get("compile", {}).get("cache", {})
  if "compile_s" in cache.get("warm", {}):
    w, c = cache["warm"], cache["cold"]
    rows.append(("second run's compile of the ID-ExpO step ≤ 2 s (persistent cache)",
                 f"{w['compile_s']:.2f} s wall (cold {c['compile_s']:.2f} s; trace + lower, "
                 f"not cached, {w['lower_s']:.2f} s)", w["compile_s"] <= 2.0))
  rn = results.get("compile", {}).get("resnet18", {}).get("rows", {})
  pair = compile_reduction(rn, "idexpo")
  if pair:
    lime = compile_reduction(rn, "idexpo_lime")
    cut = 1 - pair[1] / pair[0]
    steady = results["compile"].get("steady", {}).get("gradcam", {}).get("kinds", {})
    run = ""
    if len(steady) == 2:
      (_, b), (_, n) = steady.items()
      run = f"; steady-state step {n['step_cpu_s'] / b['step_cpu_s']:.2f}× (CPU time)"
    rows.append(("ResNet-18 ID-ExpO step cold compile down toward 30 s, i.e. −25% (40 s on the "
                 "H100; CPU here: 32×32, B = 8, CPU seconds)",
                 f"Grad-CAM {pair[0]:.1f} → {pair[1]:.1f} s ({-100 * cut:.0f}%)"
                 + (f", LIME {lime[0]:.1f} → {lime[1]:.1f} s "
                    f"({100 * (lime[1] / lime[0] - 1):.0f}%)" if lime else "") + run,
                 ("yes on CPU" if cut >= 0.25 else f"partly: −{100 * cut:.0f}% on CPU")
                 + "; GPU not measured"))
  return rows
