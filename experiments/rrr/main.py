"""RRR on decoy digits and Toy Color; find-another-explanation; input gradients vs LIME.

Ross, Hughes & Doshi-Velez, "Right for the Right Reasons", IJCAI 2017. Loss of a batch:
`CE + λ₁ · rrr_penalty` (+ λ₂‖θ‖² as weight decay), one jitted step (`make_train_step`) driven by
`loop.fit`.

  python -m experiments.rrr.main --config=experiments/rrr/configs/default.py

Writes `results/rrr/metrics.json` and PNG plots (see `docs/rrr.md`).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from ml_collections import config_flags

from experiments.common.compilation_cache import enable_compilation_cache
from experiments.common.config_check import validate_config
from experiments.common.training import Model, build_model, make_optimizer
import idexpo_jax as ij
from idexpo_jax.core.masking import unit_sum
from idexpo_jax.data.rrr_data import (load_decoy_digits, load_toy_color, make_toy_color,
                                      toy_color_masks)
from idexpo_jax.data.sklearn_data import Split
from idexpo_jax.models import functional
from idexpo_jax.regularisers.rrr import batch_input_gradients, explanation_mask

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/rrr/configs/default.py")


# ---------------------------------------------------------------------------------------------
# Training and evaluation.


_STEPS = {}  # one compiled step per (model, input shape, classes, penalised?), λ₁ is data


def _train_step(cfg, model, key, penalised):
  if key not in _STEPS:

    def loss_fn(params, batch, rng):
      del rng
      xb, yb, ab, lam = batch
      predictor = model.predictor(params)
      ce = optax.softmax_cross_entropy_with_integer_labels(predictor(xb), yb).mean()
      if not penalised:
        return ce, {"ce": ce}
      pen, aux = ij.rrr_penalty(predictor, xb, ab)
      return ce + lam * pen, {"ce": ce, "rrr": pen, **aux}

    _STEPS[key] = ij.make_train_step(loss_fn, make_optimizer(cfg.optim))
  return _STEPS[key]


def train(cfg, x, y, annotation, *, lam, num_classes, epochs, seed, desc):
  """Trains the config's MLP with `CE + lam · rrr_penalty(annotation)`; returns a `Model`."""
  model = Model(*functional(build_model(cfg.model, x.shape[1:], num_classes, seed=seed)))
  annotation = np.broadcast_to(annotation, x.shape)
  penalised = lam != 0
  step = _train_step(cfg, model, (cfg.model.name, x.shape[1:], num_classes, penalised), penalised)
  # Batches of example indices from the shared epoch sampler, then (x, y, annotation) rows.
  index_batches = ij.epoch_batch_fn(Split(np.arange(len(y)), y), cfg.batch_size, seed=seed)
  lam = np.float32(lam)

  def batch_fn(t):
    i = index_batches(t).x
    return x[i], y[i], annotation[i], lam

  num_steps = epochs * (len(y) // cfg.batch_size)
  tx = make_optimizer(cfg.optim)
  state, _ = ij.fit(step, ij.init_train_state(model.params, tx), batch_fn, num_steps=num_steps,
                 key=jax.random.key(seed), progress=cfg.progress, desc=desc)
  return model._replace(params=state.params)


def rule_of_thumb(cfg, x, y, annotation, *, num_classes, seed) -> tuple[float, float]:
  """The paper's rule of thumb: λ₁ makes the penalty as large as the cross-entropy at the start.

  Returns `(ratio, λ₁)`: `CE / rrr_penalty` of the freshly initialised model on the training set,
  and that ratio rounded to a power of ten.
  """
  f = Model(*functional(build_model(cfg.model, x.shape[1:], num_classes, seed=seed))).predictor()
  ce = optax.softmax_cross_entropy_with_integer_labels(f(x), y).mean()
  ratio = float(ce / ij.rrr_penalty(f, x, annotation)[0])
  return ratio, float(10.0 ** np.round(np.log10(ratio)))


def accuracy(logits_fn, split) -> float:
  logits = jax.jit(lambda xb: logits_fn(xb))(split.x)
  return float((np.asarray(logits).argmax(-1) == split.y).mean())


def rule_fractions(logits_fn, x, masks, cutoff) -> dict:
  """Where a model's large input gradients lie: the share of `|∇ max_k p_k|` inside each rule.

  `large_*`: the share of the gradient mass of the entries above `cutoff · max` (the
  find-another-explanation mask) lying in the corners / top-middle pixels, averaged over `x`;
  `mass_*`: the same over all entries.
  """

  @jax.jit
  def fn(xb):
    g = jnp.abs(batch_input_gradients(logits_fn, xb, reduce="max_prob"))
    big = g * explanation_mask(logits_fn, xb, cutoff=cutoff)
    out = {}
    for name, m in (("corners", masks.corners), ("top_middle", masks.top_middle)):
      m = jnp.asarray(m, g.dtype)
      out[f"large_{name}"] = jnp.mean((big * m).sum((1, 2, 3)) / big.sum((1, 2, 3)))
      out[f"mass_{name}"] = jnp.mean((g * m).sum((1, 2, 3)) / g.sum((1, 2, 3)))
    return out

  return {k: float(v) for k, v in fn(x).items()}


def toy_probes(n, seed):
  """Images where exactly one rule holds (label = the corner rule's label)."""
  only_corner = make_toy_color(n, seed=seed, corner_rule=np.ones(n, bool),
                               top_rule=np.zeros(n, bool))
  only_top = make_toy_color(n, seed=seed + 1, corner_rule=np.zeros(n, bool),
                            top_rule=np.ones(n, bool))
  return only_corner, only_top


def toy_summary(logits_fn, data, probes, masks, cutoff) -> dict:
  """Accuracy, rule fractions and the class-0 rate on the one-rule probes."""
  pred0 = lambda s: float((np.asarray(jax.jit(lambda xb: logits_fn(xb))(s.x)).argmax(-1) == 0
                          ).mean())
  return {"val_accuracy": accuracy(logits_fn, data.val),
          "test_accuracy": accuracy(logits_fn, data.test),
          **rule_fractions(logits_fn, data.test.x, masks, cutoff),
          "class0_rate_only_corner_rule": pred0(probes[0]),
          "class0_rate_only_top_rule": pred0(probes[1])}


# ---------------------------------------------------------------------------------------------
# The three parts.


def run_decoy(cfg) -> dict:
  c = cfg.decoy
  d = load_decoy_digits(patch=c.patch, seed=cfg.seed)
  tr_mask = d.annotation[0]
  ratio, lam = rule_of_thumb(cfg, d.decoy.train.x, d.decoy.train.y, tr_mask, num_classes=10,
                             seed=c.seeds[0])
  lam = lam if c.lam_rule_of_thumb else c.lam
  rows = {"none": [], "rrr": [], "clean": []}
  rrr_models = {}
  for seed in c.seeds:
    kw = dict(num_classes=10, epochs=c.epochs, seed=seed)
    none = train(cfg, d.decoy.train.x, d.decoy.train.y, tr_mask, lam=0.0, desc="decoy none", **kw)
    rrr = rrr_models[seed] = train(cfg, d.decoy.train.x, d.decoy.train.y, tr_mask, lam=lam,
                                   desc="decoy rrr", **kw)
    clean = train(cfg, d.clean.train.x, d.clean.train.y, tr_mask, lam=0.0, desc="clean", **kw)
    for name, m in (("none", none), ("rrr", rrr), ("clean", clean)):
      f = m.predictor()
      rows[name].append({"decoy_test_accuracy": accuracy(f, d.decoy.test),
                         "clean_test_accuracy": accuracy(f, d.clean.test),
                         "decoy_val_accuracy": accuracy(f, d.decoy.val)})
  summary = {name: {k: {"mean": float(np.mean([r[k] for r in rs])),
                        "std": float(np.std([r[k] for r in rs]))} for k in rs[0]}
             for name, rs in rows.items()}
  summary["per_seed"] = rows
  summary["lam"] = lam
  summary["rule_of_thumb_ce_over_penalty"] = ratio
  sweep = []  # seed c.seeds[0]; the run at the chosen λ₁ is reused
  for lam_s in c.lambdas:
    m = rrr_models[c.seeds[0]] if lam_s == lam else train(
        cfg, d.decoy.train.x, d.decoy.train.y, tr_mask, lam=lam_s, num_classes=10,
        epochs=c.epochs, seed=c.seeds[0], desc=f"decoy λ={lam_s:g}")
    sweep.append({"lam": lam_s, "decoy_test_accuracy": accuracy(m.predictor(), d.decoy.test),
                  "decoy_val_accuracy": accuracy(m.predictor(), d.decoy.val)})
  summary["lambda_sweep"] = sweep
  return summary


def run_toy(cfg):
  c = cfg.toy
  data = load_toy_color(n_train=c.n_train, n_val=c.n_val, n_test=c.n_test, seed=cfg.seed)
  masks = toy_color_masks()
  probes = toy_probes(c.n_probe, cfg.seed + 100)
  x, y = data.train.x, data.train.y
  kw = dict(num_classes=2, epochs=c.epochs, seed=cfg.seed)
  summarise = lambda m: toy_summary(m.predictor(), data, probes, masks, cfg.cutoff)
  models = {
      "none": train(cfg, x, y, np.zeros_like(masks.corners), lam=0.0, desc="toy none", **kw),
      "penalise_corners": train(cfg, x, y, masks.corners, lam=c.lam, desc="toy -corners", **kw),
      "penalise_top_middle": train(cfg, x, y, masks.top_middle, lam=c.lam, desc="toy -top",
                                   **kw),
      "penalise_both": train(cfg, x, y, masks.corners | masks.top_middle, lam=c.lam_both,
                             desc="toy -both", **kw)}
  out = {name: summarise(m) for name, m in models.items()}
  out["lam"] = c.lam
  out["rule_of_thumb_ce_over_penalty"] = {
      rule: rule_of_thumb(cfg, x, y, getattr(masks, rule), num_classes=2, seed=cfg.seed)[0]
      for rule in ("corners", "top_middle")}
  out["penalise_both"]["lam"] = c.lam_both

  trained = []

  def train_fn(xs, ys, annotation):  # model 0 unpenalised (A = 0), then λ₁ on A_t
    t = len(trained)
    # Model 0 (A = 0, no penalty) is the "none" model: same data, seed and steps.
    model = models["none"] if t == 0 else train(cfg, xs, ys, annotation, lam=c.lam,
                                                desc=f"toy fae {t}", **kw)
    trained.append(model)
    return model.predictor()

  fae = ij.find_another_explanation(train_fn, x, y, n_models=c.n_models, cutoff=cfg.cutoff)
  out["find_another_explanation"] = []
  for t, pred in enumerate(fae.models):
    row = toy_summary(pred, data, probes, masks, cfg.cutoff)
    row["annotated_fraction"] = float(fae.annotations[t].mean())
    out["find_another_explanation"].append(row)
  rule = getattr(masks, c.sweep_rule)
  sweep = [{"lam": 0.0, **out["none"]}]  # the λ = 0 and λ = c.lam runs are reused
  for lam in c.lambdas:
    m = models[f"penalise_{c.sweep_rule}"] if lam == c.lam else train(
        cfg, x, y, rule, lam=lam, desc=f"toy λ={lam:g}", **kw)
    sweep.append({"lam": lam, **summarise(m)})
  out["lambda_sweep"] = {"rule": c.sweep_rule, "rows": sweep}
  return out, models["none"], data


def run_lime_vs_gradients(cfg, model, data) -> dict:
  """Top-pixel agreement and time per explanation: input gradients vs our LIME (pixel units)."""
  c = cfg.lime
  x = jnp.asarray(data.test.x[:c.n_examples])
  logits_fn = model.predictor()
  target = jnp.asarray(np.asarray(jax.jit(lambda xb: logits_fn(xb))(x)).argmax(-1))
  baseline = jnp.asarray(data.mean)

  def grad_one(xi, t):  # pixel score: Σ_c |∂p_t/∂x| (the gradient explanation of the target)
    g = jax.grad(lambda v: jax.nn.softmax(logits_fn(v[None])[0])[t])(xi)
    return unit_sum(jnp.abs(g))

  lime = ij.Lime(baseline=baseline, n_samples=c.n_samples)  # pixel units

  def lime_one(xi, t, key):
    return jnp.abs(lime(logits_fn, xi, t, key))

  keys = jax.random.split(jax.random.key(cfg.seed), c.n_examples)
  grad_b, lime_b = jax.jit(jax.vmap(grad_one)), jax.jit(jax.vmap(lime_one))
  grad_1, lime_1 = jax.jit(grad_one), jax.jit(lime_one)
  g, l = np.asarray(grad_b(x, target)), np.asarray(lime_b(x, target, keys))
  rule_px = unit_sum(jnp.asarray(toy_color_masks().corners | toy_color_masks().top_middle,
                                 jnp.float32)) > 0
  out = {"n_examples": c.n_examples, "n_samples": c.n_samples, "units": "pixels (25)"}
  for k in c.top_k:
    tg, tl = np.argsort(-g, 1)[:, :k], np.argsort(-l, 1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(tg, tl)]
    out[f"top{k}_overlap"] = float(np.mean(overlap))
    out[f"top{k}_in_rule_pixels_gradient"] = float(np.asarray(rule_px)[tg].mean())
    out[f"top{k}_in_rule_pixels_lime"] = float(np.asarray(rule_px)[tl].mean())
  out["spearman_mean"] = float(np.mean([_spearman(a, b) for a, b in zip(g, l)]))

  def timed(fn, *args):
    jax.block_until_ready(fn(*args))  # compile
    ts = []
    for _ in range(c.timing_repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      ts.append(time.perf_counter() - t0)
    return float(np.min(ts))  # the minimum: the least disturbed by other jobs on the machine

  out["seconds_per_explanation_single"] = {
      "gradient": timed(grad_1, x[0], target[0]), "lime": timed(lime_1, x[0], target[0], keys[0])}
  out["seconds_per_explanation_batched"] = {
      "gradient": timed(grad_b, x, target) / c.n_examples,
      "lime": timed(lime_b, x, target, keys) / c.n_examples}
  out["lime_over_gradient_single"] = (out["seconds_per_explanation_single"]["lime"]
                                      / out["seconds_per_explanation_single"]["gradient"])
  out["lime_over_gradient_batched"] = (out["seconds_per_explanation_batched"]["lime"]
                                       / out["seconds_per_explanation_batched"]["gradient"])
  return out


def _spearman(a, b) -> float:
  ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
  return float(np.corrcoef(ra, rb)[0, 1])


# ---------------------------------------------------------------------------------------------
# Plots and the driver.


def plot(metrics, out_dir):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  toy = metrics["toy_color"]
  names = ["none", "penalise_corners", "penalise_top_middle", "penalise_both"]
  rows = [toy[n] for n in names] + toy["find_another_explanation"]
  labels = ["none", "−corners", "−top-middle", "−both"] + [
      f"FAE {t}" for t in range(len(toy["find_another_explanation"]))]
  fig, ax = plt.subplots(1, 3, figsize=(16, 4))
  pos = np.arange(len(rows))
  ax[0].bar(pos - 0.2, [r["large_corners"] for r in rows], 0.4, label="corners")
  ax[0].bar(pos + 0.2, [r["large_top_middle"] for r in rows], 0.4, label="top-middle")
  ax[0].plot(pos, [r["test_accuracy"] for r in rows], "k.", label="test accuracy")
  ax[0].set_xticks(pos, labels, rotation=30)
  ax[0].set_ylim(0, 1.3)  # the band above 1 holds the legend, clear of the bars
  ax[0].set_yticks(np.linspace(0, 1, 6))
  ax[0].set_title("Toy Color: share of large |∇ max p| in each rule")
  ax[0].legend(fontsize=8, loc="upper center", ncol=3)
  sweep = toy["lambda_sweep"]
  lams = [r["lam"] for r in sweep["rows"]]
  for key, lab in (("large_corners", "corners"), ("large_top_middle", "top-middle"),
                   ("test_accuracy", "test accuracy")):
    ax[1].plot(lams, [r[key] for r in sweep["rows"]], "o-", label=lab)
  ax[1].set_xscale("symlog", linthresh=min(l for l in lams if l > 0))  # shows λ₁ = 0
  ax[1].set_title(f"Toy Color: λ sweep, penalising {sweep['rule']}")
  ax[1].set_xlabel("λ₁")
  ax[1].legend(fontsize=8)
  dec = metrics["decoy_digits"]
  ax[2].semilogx([r["lam"] for r in dec["lambda_sweep"]],
                 [r["decoy_test_accuracy"] for r in dec["lambda_sweep"]], "o-", label="RRR")
  ax[2].axhline(dec["none"]["decoy_test_accuracy"]["mean"], color="r", ls="--", label="no penalty")
  ax[2].axhline(dec["clean"]["clean_test_accuracy"]["mean"], color="g", ls=":",
                label="clean model (clean test)")
  ax[2].axvline(dec["lam"], color="k", lw=0.5, label="rule of thumb λ₁")
  ax[2].set_title("Decoy digits: test accuracy (random decoys)")
  ax[2].set_xlabel("λ₁")
  ax[2].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "rrr.png"), dpi=110)
  plt.close(fig)


def main(_):
  enable_compilation_cache()  # a second run loads its compiled steps from disk
  cfg = _CONFIG.value
  validate_config(cfg)
  os.makedirs(cfg.out_dir, exist_ok=True)
  t0 = time.perf_counter()
  metrics = {"decoy_digits": run_decoy(cfg)}
  toy, model, data = run_toy(cfg)
  metrics["toy_color"] = toy
  metrics["gradient_vs_lime"] = run_lime_vs_gradients(cfg, model, data)
  metrics["wall_seconds"] = time.perf_counter() - t0
  metrics["device"] = str(jax.devices()[0])
  metrics["config"] = cfg.to_dict()
  with open(os.path.join(cfg.out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1)
  plot(metrics, cfg.out_dir)
  print(json.dumps({k: metrics["decoy_digits"][k] for k in ("none", "rrr", "clean")}, indent=1))
  for name, r in toy.items():
    if isinstance(r, dict) and "test_accuracy" in r:
      print(f"{name:22s} acc {r['test_accuracy']:.3f} corners {r['large_corners']:.2f} "
            f"top {r['large_top_middle']:.2f}")
  for t, r in enumerate(toy["find_another_explanation"]):
    print(f"FAE {t:<18d} acc {r['test_accuracy']:.3f} corners {r['large_corners']:.2f} "
          f"top {r['large_top_middle']:.2f}")
  print(json.dumps(metrics["gradient_vs_lime"], indent=1))
  print(f"wall time {metrics['wall_seconds']:.0f} s")


if __name__ == "__main__":
  app.run(main)
