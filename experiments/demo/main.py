r"""`make demo`: cross-entropy vs ID-ExpO with Grad-CAM, LIME and KernelSHAP on scikit-learn digits.

A small CNN is pre-trained with cross-entropy, then fine-tuned from the same parameters, with the
same batches and for the same number of steps, by every method of `cfg.methods`: cross-entropy
only (`ce`) or ID-ExpO (`CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)`; Yoshikawa & Iwata, AISTATS
2024) with its own explainer (`idexpo_gradcam` on pixels, `idexpo_lime`/`idexpo_kernelshap` on
grid cells). Every model is evaluated on the test split (accuracy and hard insertion/deletion of
the predicted class, see `experiments.common.evaluation`): an ID-ExpO model with the explainer it
was trained for, the CE (and pre-trained) model with every explainer of `cfg.eval.explainers`.

Rows of `metrics.json`: `<method>` for an ID-ExpO method; `ce`/`pretrained` under the first
explainer (Grad-CAM) and `ce_<explainer>`/`pretrained_<explainer>` under the others
(`ce_lime`, `ce_kernelshap`); every row records its `explainer`.

  python -m experiments.demo.main --config=experiments/demo/configs/default.py

Writes `<out_dir>/metrics.json`, `per_example.json`, `heatmaps.png` (and the arrays behind it,
`heatmaps.npz`: `--replot` redraws the PNG from them without training), and
`insertion[_<explainer>].png`/`deletion[_<explainer>].png` per explainer.
"""

from __future__ import annotations

import contextlib
import os
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from experiments.common.config_check import validate_config
from experiments.common import evaluation, methods, reporting, training
from experiments.common.compilation_cache import enable_compilation_cache
from idexpo_jax import plotting
from idexpo_jax.data.sklearn_data import load_digits_images
from idexpo_jax.core.masking import num_units, unit_mask_to_input

CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment configuration file.",
                                         lock_config=True)
REPLOT = flags.DEFINE_bool("replot", False, "Only redraw heatmaps.png from heatmaps.npz of "
                           "`out_dir` (no training).")


def suffix(explainer: str, explainers) -> str:
  """Row-name suffix of an explainer: none for the first of `explainers`, else `_<name>`."""
  return "" if explainer == explainers[0] else "_" + explainer.replace("_", "")


def plan_rows(method_names, explainers) -> list[tuple[str, str, str]]:
  """`(row, model, explainer)` triples: each ID-ExpO model with its own explainer, the others
  (`pretrained`, `ce`) with every explainer (see the module docstring for the row names)."""
  rows = []
  for name in method_names:
    own = methods.get_method(name).explainer
    if own is not None and own not in explainers:
      raise ValueError(f"method {name!r} trains with explainer {own!r}, which is not in "
                       f"`eval.explainers` {list(explainers)}.")
  for e in explainers:
    for name in ("pretrained", *method_names):
      own = None if name == "pretrained" else methods.get_method(name).explainer
      if own is None:
        rows.append((name + suffix(e, explainers), name, e))
      elif own == e:
        rows.append((name, name, e))
  return rows


SHARED = ("steps", "batch_size", "seed", "optimizer", "lr")  # identical for every method


def finetune_config(cfg, name: str):
  """`cfg.finetune` updated with `cfg.per_method[name]` (e.g. λ), which must leave `SHARED` alone.

  Every ID-ExpO method needs an entry with its `lam`.
  """
  ft = cfg.finetune.copy_and_resolve_references()
  if methods.get_method(name).explainer is None:
    return ft
  if name not in cfg.per_method or "lam" not in cfg.per_method[name]:
    raise ValueError(f"`per_method.{name}.lam` (λ of {name!r}) is required; got per_method "
                     f"{cfg.per_method.to_dict()}.")
  shared = sorted(set(cfg.per_method[name]) & set(SHARED))
  if shared:
    raise ValueError(f"`per_method.{name}` must not change {shared}: every method fine-tunes "
                     f"with the same steps, batches and optimizer.")
  ft.update(cfg.per_method[name])
  return ft


@contextlib.contextmanager
def timed(timing: dict, name: str):
  """Records the wall and CPU (user + system, all threads) seconds of a block in `timing`."""
  wall, cpu = time.perf_counter(), time.process_time()
  yield
  timing.setdefault("wall_s", {})[name] = time.perf_counter() - wall
  timing.setdefault("cpu_s", {})[name] = time.process_time() - cpu


def finetune_all(cfg, data, pretrained, method_names, train_explainers, key, *, timing,
                 progress=True):
  """Fine-tunes every method from `pretrained` (same batches, steps and key); returns
  `(models, train_final)` keyed by method name."""
  models, train_final = {}, {}
  for name in method_names:
    method, ft = methods.get_method(name), finetune_config(cfg, name)
    penalty = (None if method.explainer is None
               else training.idexpo_penalty(ft, train_explainers[method.explainer]))
    with timed(timing, f"finetune_{name}"):
      models[name], history = training.finetune(
          pretrained, data.train, ft, key=key, penalty=penalty, desc=f"finetune {name}",
          progress=progress, checkpoint_name=name)
    train_final[name] = history[-1] if history else {}
  return models, train_final


def build_explainers(cfg, data, names):
  """`(train, eval)` dicts of explainer objects for every explainer name."""
  image_shape = data.train.x.shape[1:]
  pairs = {e: methods.make_train_eval_explainers(e, cfg.explainers[e], baseline=data.mean,
                                                 image_shape=image_shape) for e in names}
  return {e: p[0] for e, p in pairs.items()}, {e: p[1] for e, p in pairs.items()}


def run(cfg) -> dict:
  """Runs the demo with configuration `cfg` and returns the metrics written to metrics.json."""
  validate_config(cfg)
  timing = {}
  with timed(timing, "total"):
    metrics = _run(cfg, timing)
  metrics["timing"] = timing
  reporting.write_json(os.path.join(cfg.out_dir, "metrics.json"), metrics)
  print(f"\nwrote {cfg.out_dir}/metrics.json; wall time {timing['wall_s']['total']:.1f} s, "
        f"CPU time {timing['cpu_s']['total']:.1f} s")
  return metrics


def prepare(cfg, timing: dict, *, progress: bool = True):
  """`(data, keys, pretrained)`: the digits, the run's keys (`pretrain`, `finetune`, `eval`,
  `plot`) and the CE-pretrained model, shared by the demo and its validation sweep."""
  data = load_digits_images(size=cfg.data.size, seed=cfg.data.seed)
  key = jax.random.key(cfg.seed)
  keys = {name: jax.random.fold_in(key, i)
          for i, name in enumerate(("pretrain", "finetune", "eval", "plot"))}
  with timed(timing, "pretrain"):
    module = training.build_model(cfg.model, data.train.x.shape[1:], data.num_classes,
                                  seed=cfg.seed)
    pretrained, _ = training.pretrain(module, data.train, cfg.pretrain, key=keys["pretrain"],
                                      progress=progress)
  return data, keys, pretrained


def make_evaluators(cfg, pretrained, eval_explainers) -> dict:
  """One jitted `Evaluator` per explainer, with the evaluation options of `cfg.eval`."""
  return {e: evaluation.make_evaluator(pretrained, ex, n_steps=cfg.eval.n_steps,
                                       fraction=cfg.eval.fraction,
                                       batch_size=cfg.eval.batch_size)
          for e, ex in eval_explainers.items()}


def _run(cfg, timing: dict) -> dict:
  method_names = cfg.methods.split(",")
  explainer_names = cfg.eval.explainers.split(",")
  rows = plan_rows(method_names, explainer_names)  # fails early on unknown names
  data, keys, pretrained = prepare(cfg, timing)
  image_shape = data.train.x.shape[1:]
  eval_splits = {name: evaluation.limit_split(getattr(data, name), cfg.eval.max_examples)
                 for name in cfg.eval.splits.split(",")}
  train_explainers, eval_explainers = build_explainers(cfg, data, explainer_names)
  models, train_final = finetune_all(cfg, data, pretrained, method_names, train_explainers,
                                     keys["finetune"], timing=timing)
  models["pretrained"] = pretrained

  evaluators = make_evaluators(cfg, pretrained, eval_explainers)
  results = {split: {} for split in eval_splits}
  for e in explainer_names:
    with timed(timing, f"evaluate_{e}"):
      for split, data_split in eval_splits.items():
        results[split].update({row: evaluators[e].evaluate(models[m].params, data_split,
                                                           keys["eval"])
                               for row, m, ex in rows if ex == e})

  info = {row: {"explainer": e, "model": m, **cfg.per_method.get(m, {})} for row, m, e in rows}
  metrics = {}
  for split, res in results.items():
    table = {row: r.summary for row, r in res.items()}
    print(f"\n{split} split ({len(eval_splits[split].y)} examples; each row explained by its "
          f"explainer (see `explainer` in metrics.json), target = predicted class; ins/del: mean "
          f"of the curve at 1/16..1/2 of the units; *_trapezoid: trapezoid over [0, 1]):\n"
          f"{reporting.format_table(table)}")
    if split == "test":
      metrics.update({row: {**s, **info[row], "train_final": train_final.get(info[row]["model"],
                                                                             {})}
                      for row, s in table.items()})
    else:
      metrics[split] = table
  metrics["config"] = cfg.to_dict()
  metrics["protocol"] = {
      e: reporting.protocol(
          units="pixels" if ex.segments is None else f"{cfg.explainers[e].cell}×"
          f"{cfg.explainers[e].cell}-pixel grid cells",
          step_units=max(num_units(image_shape, ex.segments) // cfg.eval.n_steps, 1),
          fraction=cfg.eval.fraction, baseline="per-channel training mean", explainer=e)
      for e, ex in eval_explainers.items()}

  if "test" in results:
    with timed(timing, "plots"):
      plot(cfg, data, results["test"], rows, models, evaluators, eval_explainers, keys["plot"])
  return metrics


def plot(cfg, data, test, rows, models, evaluators, eval_explainers, key) -> None:
  """Per-example JSON, mean curves per explainer and one heatmap figure of every row."""
  out = cfg.out_dir
  explainers = list(eval_explainers)
  reporting.write_json(os.path.join(out, "per_example.json"),
                       {row: r.per_example for row, r in test.items()})
  for e in explainers:
    sel = {row: test[row] for row, _, ex in rows if ex == e}
    units = "pixels" if eval_explainers[e].segments is None else "grid cells"
    for kind, attr in (("insertion", "ins_curves"), ("deletion", "del_curves")):
      plotting.plot_curves(next(iter(sel.values())).fractions,
                           {row: getattr(r, attr) for row, r in sel.items()},
                           os.path.join(out, f"{kind}{suffix(e, explainers)}.png"),
                           title=f"{kind} (test, {e})",
                           xlabel=f"fraction of {units} " + ("inserted" if kind == "insertion"
                                                             else "deleted"),
                           vline=cfg.eval.fraction)
  n = cfg.plots.n_heatmaps
  xs, ys = data.test.x[:n], data.test.y[:n]
  maps = {}
  for _, m, e in rows:
    phi = evaluators[e].explain(models[m].params, xs, key)[1]
    segments = eval_explainers[e].segments
    if segments is not None:  # unit scores -> pixel maps (H, W)
      phi = np.asarray(unit_mask_to_input(phi, xs.shape[1:], segments=segments))[..., 0]
    maps[f"{m} · {e}"] = np.asarray(phi)
  # The arrays behind heatmaps.png, so that `--replot` redraws it without training.
  np.savez_compressed(os.path.join(out, "heatmaps.npz"), images=np.asarray(xs),
                      labels=np.asarray(ys), names=np.array(list(maps)),
                      **{f"map{i}": v for i, v in enumerate(maps.values())})
  plot_heatmaps(out)


def plot_heatmaps(out: str) -> str:
  """Draws `<out>/heatmaps.png` from `<out>/heatmaps.npz` (written by `plot`)."""
  with np.load(os.path.join(out, "heatmaps.npz")) as z:
    names = [str(v) for v in z["names"]]
    maps = {name: z[f"map{i}"] for i, name in enumerate(names)}
    images, labels = z["images"], z["labels"]
  # Grad-CAM maps are non-negative (sequential scale); LIME/KernelSHAP weights are signed.
  signed = {name: not name.endswith("· gradcam") for name in maps}
  return plotting.plot_heatmaps(images, maps, os.path.join(out, "heatmaps.png"), signed=signed,
                                titles=[f"y={y}" for y in labels])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if REPLOT.value:
    print(f"wrote {plot_heatmaps(CONFIG.value.out_dir)}")
    return
  enable_compilation_cache()  # a second run loads its compiled steps from disk
  run(CONFIG.value)


if __name__ == "__main__":
  app.run(main)
