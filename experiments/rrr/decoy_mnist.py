"""Decoy MNIST with and without the RRR penalty, as Ross, Hughes & Doshi-Velez (IJCAI 2017) did.

  python -m experiments.rrr.decoy_mnist --config=experiments/rrr/configs/mnist.py

Three models per seed on the randomised-decoy test set: no penalty, RRR at the paper's λ₁ = 1000,
and a model trained on the clean digits; then a λ₁ sweep over 1e-4 … 1e8, selected on validation.
Each training run (64 epochs of fixed batches) is one jitted `lax.scan`. Writes
`results/rrr_mnist/metrics.json` and `sweep.png` (see `docs/rrr.md`).
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
from flax import nnx
from ml_collections import config_flags
from tqdm import tqdm

from experiments.common.compilation_cache import enable_compilation_cache
from experiments.common.config_check import validate_config
import idexpo_jax as ij
from idexpo_jax.data.rrr_data import add_decoy, load_decoy_mnist
from idexpo_jax.models import MLP, functional, predictor_fn

#: Ross, Hughes & Doshi-Velez (IJCAI 2017), decoy MNIST test accuracies.
PAPER = {"no_penalty": 0.5155, "penalty": 0.9607, "clean": 0.9611,
         "sweep": {"1": 0.84, "10": 0.94, "100": 0.96, "1000": 0.96, "10000": 0.95,
                   "100000": 0.89, "1000000": 0.52}}


def init_model(cfg, seed: int):
  """The MLP, split functionally, with every parameter drawn from N(0, init_scale²)."""
  graphdef, params, rest = functional(MLP(784, 10, hidden=tuple(cfg.hidden), rngs=nnx.Rngs(seed)))
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [cfg.init_scale * jax.random.normal(k, l.shape, l.dtype) for k, l in zip(keys, leaves)]
  return graphdef, jax.tree.unflatten(treedef, leaves), rest


def fixed_batches(x, y, annotation, batch_size: int):
  """The paper's fixed, unshuffled batches, the last one padded with zero-weight rows."""
  n = len(y)
  nb = -(-n // batch_size)
  pad = nb * batch_size - n
  padded = lambda a: np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)])
  w = padded(np.ones(n, np.float32))
  shape = lambda a: a.reshape((nb, batch_size) + a.shape[1:])
  return tuple(shape(padded(a)) for a in (x, y, annotation.astype(np.float32))) + (shape(w),)


def make_trainer(cfg, graphdef, rest, *, scaling: str):
  """`train(params, lam, batches) -> params`: all epochs in one jitted scan.

  The loss of a batch of `B` real rows (weights `w`):
  `Σ_n w_n CE_n + λ₁ Σ_n ‖A_n ⊙ ∂(Σ_k log p_k)/∂x_n‖² + λ₂‖θ‖²`, divided by `B` when
  `scaling == "mean"` (the paper's loss is `"sum"`).
  """
  if scaling not in ("sum", "mean"):
    raise ValueError(f"`scaling` must be 'sum' or 'mean'; got {scaling!r}.")
  tx = optax.adam(cfg.lr)

  def loss_fn(params, lam, batch):
    xb, yb, ab, wb = batch
    f = predictor_fn(graphdef, params, rest)
    ce = jnp.sum(wb * optax.softmax_cross_entropy_with_integer_labels(f(xb), yb))
    pen, _ = ij.rrr_penalty(f, xb, ab * wb[:, None, None, None], reduction="sum")
    l2 = sum(jnp.sum(p ** 2) for p in jax.tree.leaves(params))
    loss = ce + lam * pen + cfg.weight_penalty * l2
    return loss / (jnp.sum(wb) if scaling == "mean" else 1.0)

  def step(carry, batch):
    params, opt_state, lam = carry
    loss, grads = jax.value_and_grad(loss_fn)(params, lam, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, lam), loss

  @jax.jit
  def train(params, lam, batches):
    def epoch(carry, _):
      carry, losses = jax.lax.scan(step, carry, batches)
      return carry, jnp.sum(losses)

    (params, _, _), history = jax.lax.scan(epoch, (params, tx.init(params), lam), None,
                                           length=cfg.epochs)
    return params, history

  return train


_LOGITS = {}


def accuracy(graphdef, params, rest, split) -> float:
  if graphdef not in _LOGITS:  # one compiled forward pass; the parameters are an argument
    _LOGITS[graphdef] = jax.jit(lambda p, xb: predictor_fn(graphdef, p, rest)(xb))
  logits = _LOGITS[graphdef](params, split.x)
  return float((np.asarray(logits).argmax(-1) == split.y).mean())


def _stats(values) -> dict:
  return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1
          else 0.0, "per_seed": [float(v) for v in values]}


def run(cfg) -> dict:
  validate_config(cfg)  # bad values fail here, naming the field, before any data or training
  rows = {"no_penalty": [], "penalty": [], "clean": []}
  sweep = {float(l): [] for l in cfg.lambdas}
  mean_rows = {"no_penalty": [], "penalty": [], "clean": []}
  n_runs = len(cfg.seeds) * (3 + len(cfg.lambdas) + 3 * cfg.repeat_mean_scaling)
  trainers = {}  # one compiled run per scaling; λ₁, the data and the parameters are arguments
  bar = tqdm(total=n_runs, desc="decoy MNIST runs", disable=not cfg.progress)
  for seed in cfg.seeds:
    d = load_decoy_mnist(patch=cfg.patch, seed=seed, raw=cfg.raw)
    # Validation digits with random decoy codes (another draw than the test set's): the data a
    # user who knows the annotation can build to pick λ₁; the test set is never used to choose.
    vrng = np.random.default_rng([seed, 3])
    xv, _ = add_decoy(d.clean.val.x, vrng.integers(0, 10, len(d.clean.val.y)), patch=cfg.patch,
                      rng=vrng, white=255.0 if cfg.raw else 1.0)
    val_random = d.clean.val._replace(x=xv)
    graphdef, params0, rest = init_model(cfg, seed)
    evaluate = lambda p: {
        "test_random_decoy": accuracy(graphdef, p, rest, d.decoy.test),
        "test_clean": accuracy(graphdef, p, rest, d.clean.test),
        "val_label_decoy": accuracy(graphdef, p, rest, d.decoy.val),
        "val_random_decoy": accuracy(graphdef, p, rest, val_random)}
    decoy_b = fixed_batches(d.decoy.train.x, d.decoy.train.y, d.annotation[0], cfg.batch_size)
    clean_b = fixed_batches(d.clean.train.x, d.clean.train.y, d.annotation[0], cfg.batch_size)

    def fit(scaling, lam, batches, train_split):
      if scaling not in trainers:
        trainers[scaling] = make_trainer(cfg, graphdef, rest, scaling=scaling)
      p, hist = trainers[scaling](params0, jnp.float32(lam), batches)
      bar.update()
      out = evaluate(p)
      out["train"] = accuracy(graphdef, p, rest, train_split)
      out["final_epoch_loss"] = float(hist[-1])
      out["finite"] = bool(np.isfinite(np.asarray(hist)).all())
      return out

    scalings = ((cfg.scaling, rows),) + ((("mean", mean_rows),) if cfg.repeat_mean_scaling
                                         else ())
    for scaling, target in scalings:
      target["no_penalty"].append(fit(scaling, 0.0, decoy_b, d.decoy.train))
      target["penalty"].append(fit(scaling, cfg.lam, decoy_b, d.decoy.train))
      target["clean"].append(fit(scaling, 0.0, clean_b, d.clean.train))
    for lam in cfg.lambdas:
      sweep[float(lam)].append(fit(cfg.scaling, lam, decoy_b, d.decoy.train))
  bar.close()

  def summary(rs):
    return {name: {k: _stats([r[k] for r in runs]) for k in runs[0] if k != "finite"}
            for name, runs in rs.items()}

  out = {"scaling": cfg.scaling, "lam": cfg.lam, "weight_penalty": cfg.weight_penalty,
         **summary(rows)}
  sweep_summary = {f"{lam:g}": {k: _stats([r[k] for r in runs]) for k in runs[0] if k != "finite"}
                   for lam, runs in sweep.items()}
  out["sweep"] = {k: v["test_random_decoy"]["mean"] for k, v in sweep_summary.items()}
  out["sweep_detail"] = sweep_summary
  best = max(sweep_summary, key=lambda k: sweep_summary[k]["val_random_decoy"]["mean"])
  out["selected_on_validation"] = {
      "criterion": "max mean accuracy on validation digits with random decoy codes",
      "lam": float(best), **sweep_summary[best]}
  if cfg.repeat_mean_scaling:
    out["mean_scaling"] = summary(mean_rows)
  out["paper"] = PAPER
  clean = out["clean"]["test_random_decoy"]["mean"]
  out["gap_to_our_clean"] = {name: out[name]["test_random_decoy"]["mean"] - clean
                             for name in ("no_penalty", "penalty")}
  out["gap_to_our_clean"]["paper_no_penalty_minus_clean"] = PAPER["no_penalty"] - PAPER["clean"]
  out["gap_to_our_clean"]["paper_penalty_minus_clean"] = PAPER["penalty"] - PAPER["clean"]
  return out


def plot(m, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  lams = sorted(float(k) for k in m["sweep_detail"])
  get = lambda key: [m["sweep_detail"][f"{l:g}"][key] for l in lams]
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for key, lab, st, col in (("test_random_decoy", "test (random decoys)", "o-", "C0"),
                            ("val_random_decoy", "validation (random decoys)", "s--", "C1"),
                            ("val_label_decoy", "validation (label-coded decoys)", "^:", "C4")):
    s = get(key)
    ax.errorbar(lams, [r["mean"] for r in s], yerr=[r["sd"] for r in s], fmt=st, ms=4,
                capsize=2, label=lab, color=col)
  raw = m["config"]["raw"]
  # The paper's λ₁ is on raw pixels; on [0, 1] pixels the same function's penalty is 255² larger.
  shift = 1.0 if raw else 255.0 ** -2
  pl = sorted((float(k) * shift, v) for k, v in m["paper"]["sweep"].items())
  ax.plot([a for a, _ in pl], [b for _, b in pl], "kx",
          label="paper (60,000 digits), test" + ("" if raw else ", at λ₁/255²"))
  ax.axhline(m["no_penalty"]["test_random_decoy"]["mean"], color="r", ls="--", lw=1,
             label="no penalty, test")
  ax.axhline(m["clean"]["test_random_decoy"]["mean"], color="g", ls=":", lw=1,
             label="clean model, test")
  ax.axvline(m["selected_on_validation"]["lam"], color="k", lw=0.5)
  ax.set_xscale("log")
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("λ₁ (summed loss, " + ("raw 0–255 pixels)" if raw else "pixels in [0, 1])"))
  ax.set_ylabel("accuracy")
  ax.set_title(f"Decoy MNIST (3,500 training digits), mean ± sd over {len(m['config']['seeds'])} "
               "seeds; | = chosen on validation", fontsize=10)
  ax.legend(fontsize=7, loc="lower left")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(_):
  enable_compilation_cache()  # a second run loads its compiled steps from disk
  cfg = _CONFIG.value
  os.makedirs(cfg.out_dir, exist_ok=True)
  t0 = time.perf_counter()
  m = run(cfg)
  m["wall_seconds"] = time.perf_counter() - t0
  m["device"] = str(jax.devices()[0])
  m["config"] = cfg.to_dict()
  with open(os.path.join(cfg.out_dir, "metrics.json"), "w") as f:
    json.dump(m, f, indent=1)
  plot(m, os.path.join(cfg.out_dir, "sweep.png"))
  for name in ("no_penalty", "penalty", "clean"):
    r = m[name]["test_random_decoy"]
    print(f"{name:11s} test (random decoys) {r['mean']:.4f} ± {r['sd']:.4f}  paper "
          f"{PAPER[name]:.4f}")
  print("sweep", json.dumps(m["sweep"]))
  print("selected", m["selected_on_validation"]["lam"], f"wall {m['wall_seconds']:.0f} s")


if __name__ == "__main__":
  # Defined here, not at import: the tests import this module beside other drivers that define
  # their own --config flag in the same process.
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/rrr/configs/mnist.py")
  app.run(main)
