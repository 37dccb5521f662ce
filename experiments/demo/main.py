r"""`make demo`: cross-entropy vs ID-ExpO + Grad-CAM fine-tuning on scikit-learn digits.

A small CNN is pre-trained with cross-entropy, then fine-tuned from the same parameters, with the
same batches and for the same number of steps, (a) with cross-entropy only and (b) with ID-ExpO
(`CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)`, Grad-CAM explanations; Yoshikawa & Iwata, AISTATS
2024). Both are evaluated on the test split: accuracy, and hard insertion/deletion of their
Grad-CAM explanations of the predicted class (see `experiments.common.evaluation`).

  python -m experiments.demo.main --config=experiments/demo/configs/default.py

Writes `<out_dir>/metrics.json`, `per_example.json`, `heatmaps.png`, `insertion.png` and
`deletion.png`.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app
from ml_collections import config_flags

from experiments.common import evaluation, methods, reporting, training
from idexpo_jax import plotting
from idexpo_jax.data.sklearn_data import Split, load_digits_images

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment configuration file.",
                                          lock_config=True)


def _limit(split: Split, n: int) -> Split:
  return split if n <= 0 else Split(split.x[:n], split.y[:n])


def run(cfg) -> dict:
  """Runs the demo with configuration `cfg` and returns the metrics written to metrics.json."""
  t_start = time.perf_counter()
  timing = {}
  data = load_digits_images(size=cfg.data.size, seed=cfg.data.seed)
  image_shape = data.train.x.shape[1:]
  eval_splits = {name: _limit(getattr(data, name), cfg.eval.max_examples)
                 for name in cfg.eval.splits.split(",")}
  key = jax.random.key(cfg.seed)
  k_pre, k_ft, k_eval, k_plot = (jax.random.fold_in(key, i) for i in range(4))
  method_names = cfg.methods.split(",")
  for name in method_names:
    methods.get_method(name)  # fail early on unknown names

  t = time.perf_counter()
  module = training.build_model(cfg.model, image_shape, data.num_classes, seed=cfg.seed)
  pretrained, _ = training.pretrain(module, data.train, cfg.pretrain, key=k_pre)
  timing["pretrain"] = time.perf_counter() - t

  explainer = methods.make_explainer(cfg.explainer.name, cfg.explainer, baseline=data.mean,
                                     image_shape=image_shape)
  models = {"pretrained": pretrained}
  train_final = {}
  for name in method_names:
    method = methods.get_method(name)
    t = time.perf_counter()
    train_explainer = None
    if method.explainer is not None:
      if method.explainer != cfg.explainer.name:
        raise ValueError(f"method {name!r} trains with explainer {method.explainer!r} but the "
                         f"config's explainer is {cfg.explainer.name!r}.")
      train_explainer = explainer
    models[name], history = training.finetune(
        method, pretrained, data.train, cfg.finetune, key=k_ft, explainer=train_explainer,
        baseline=data.mean, desc=f"finetune {name}")
    train_final[name] = history[-1] if history else {}
    timing[f"finetune_{name}"] = time.perf_counter() - t

  t = time.perf_counter()
  evaluator = evaluation.make_evaluator(pretrained, explainer, baseline=data.mean,
                                        n_steps=cfg.eval.n_steps, fraction=cfg.eval.fraction,
                                        batch_size=cfg.eval.batch_size)
  results = {split: {name: evaluator.evaluate(m.params, data_split, k_eval)
                     for name, m in models.items()}
             for split, data_split in eval_splits.items()}
  timing["evaluate"] = time.perf_counter() - t

  metrics = {}
  for split, rows in results.items():
    table = {name: r.summary for name, r in rows.items()}
    print(f"\n{split} split ({len(eval_splits[split].y)} examples; Grad-CAM of the predicted "
          f"class; ins/del: mean of the curve at 1/16..1/2 of the pixels; *_trapezoid: "
          f"trapezoid over [0, 1]):\n{reporting.format_table(table)}")
    if split == "test":
      metrics.update({name: {**s, "train_final": train_final.get(name, {})}
                      for name, s in table.items()})
    else:
      metrics[split] = table
  metrics["config"] = cfg.to_dict()
  metrics["protocol"] = reporting.protocol(
      units="pixels", step_units=max(int(np.prod(image_shape[:2])) // cfg.eval.n_steps, 1),
      fraction=cfg.eval.fraction, baseline="per-channel training mean",
      explainer=cfg.explainer.name)

  out = cfg.out_dir
  if "test" in results:
    test = results["test"]
    reporting.write_json(os.path.join(out, "per_example.json"),
                         {name: r.per_example for name, r in test.items()})
    r0 = next(iter(test.values()))
    for kind, attr in (("insertion", "ins_curves"), ("deletion", "del_curves")):
      plotting.plot_curves(r0.fractions, {name: getattr(r, attr) for name, r in test.items()},
                           os.path.join(out, f"{kind}.png"), title=f"{kind} (test, Grad-CAM)",
                           xlabel="fraction of pixels " + ("inserted" if kind == "insertion"
                                                           else "deleted"),
                           vline=cfg.eval.fraction)
    n = cfg.plots.n_heatmaps
    xs, ys = data.test.x[:n], data.test.y[:n]
    maps = {name: evaluator.explain(m.params, xs, k_plot)[1] for name, m in models.items()}
    plotting.plot_heatmaps(xs, maps, os.path.join(out, "heatmaps.png"),
                           titles=[f"y={y}" for y in ys])
  timing["total"] = time.perf_counter() - t_start
  metrics["timing_s"] = timing
  reporting.write_json(os.path.join(out, "metrics.json"), metrics)
  print(f"\nwrote {out}/metrics.json; wall time {timing['total']:.1f} s")
  return metrics


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  run(_CONFIG.value)


if __name__ == "__main__":
  app.run(main)
