"""Model building, cross-entropy pre-training and fine-tuning with a composable loss.

Every step is the library's jitted functional step (`models.functional` once, then
`ij.make_train_step`), driven by `ij.fit` with a deterministic `ij.epoch_batch_fn`.

Fine-tuning loss (`make_loss`): cross-entropy, plus `λ·penalty` for a regulariser. ID-ExpO
(Yoshikawa & Iwata, AISTATS 2024) is `ij.IdExpo` built once from the config (`idexpo_penalty`):
`CE + λ·mean_n(cIns_n + cDel_n) + λ₂·mean(φ²)`, with the true label as the target. Models
fine-tune in `eval()` mode, so perturbed forward passes never update BatchNorm statistics.

Checkpoints (off by default): with `cfg.checkpoint_dir` set in a pre-training or fine-tuning
config, the run saves its `TrainState` under `<checkpoint_dir>/<name>` every
`cfg.checkpoint_every` steps (0: only after the last step) and resumes from there when restarted
with the same command (`loop.fit`; bit-identical to an uninterrupted run). `<name>` must differ
between runs: `pretrain_seed<cfg.seed>` for pre-training, the caller's `checkpoint_name` for
fine-tuning.
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import idexpo_jax as ij
from idexpo_jax.models import MLP, ResNet18, SmallCNN, functional, logits_with_state, predictor_fn
from idexpo_jax.training import epoch_batch_fn, fit, init_train_state, make_train_step


class Model(NamedTuple):
  """A split NNX module: `graphdef` and non-trainable `rest` are fixed, `params` train."""

  graphdef: object
  params: object
  rest: object

  def predictor(self, params=None):
    """The pure `Predictor` of these (or the given) parameters."""
    return predictor_fn(self.graphdef, self.params if params is None else params, self.rest)


def build_model(cfg, input_shape, num_classes: int, *, seed: int) -> nnx.Module:
  """Builds `cfg.name` in {"small_cnn", "mlp", "resnet18"} for inputs of `input_shape`."""
  rngs = nnx.Rngs(seed)
  if cfg.name == "small_cnn":
    return SmallCNN(input_shape[-1], num_classes, width=cfg.get("width", 32),
                    pool=cfg.get("pool", 2), rngs=rngs)
  if cfg.name == "mlp":
    return MLP(int(np.prod(input_shape)), num_classes, hidden=tuple(cfg.get("hidden", (50, 30))),
               rngs=rngs)
  if cfg.name == "resnet18":
    return ResNet18(input_shape[-1], num_classes, width=cfg.get("width", 64),
                    stem_stride=cfg.get("stem_stride", 1), rngs=rngs)
  raise ValueError(f"`model.name` must be 'small_cnn', 'mlp' or 'resnet18'; got {cfg.name!r}.")


def make_optimizer(cfg) -> optax.GradientTransformation:
  """`cfg.optimizer` "sgd" (`momentum`, `nesterov`) or "adam", with optional `weight_decay`.

  Note: optax's Adam fails under `jax_numpy_dtype_promotion="strict"` (the tests' setting).
  """
  if cfg.optimizer == "sgd":
    tx = optax.sgd(cfg.lr, momentum=cfg.get("momentum", 0.0) or None,
                   nesterov=cfg.get("nesterov", False))
  elif cfg.optimizer == "adam":
    tx = optax.adam(cfg.lr)
  else:
    raise ValueError(f"`optimizer` must be 'sgd' or 'adam'; got {cfg.optimizer!r}.")
  if cfg.get("weight_decay", 0.0):
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay), tx)
  return tx


def _ce_terms(logits, labels):
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  acc = (logits.argmax(-1) == labels).astype(jnp.float32).mean()
  return ce, {"ce": ce, "acc": acc}


def idexpo_penalty(cfg, explainer: ij.Explainer) -> ij.IdExpo:
  """The ID-ExpO penalty of a fine-tuning config: `ij.IdExpo` of `explainer` with the soft-curve
  options `n_steps`, `fraction`, `temperature`, `deletion`, `log_softmax` and `chunk_size`
  (the last three optional) of `cfg`."""
  return ij.IdExpo(explainer, n_steps=cfg.n_steps, fraction=cfg.fraction,
                   temperature=cfg.temperature, deletion=cfg.get("deletion", "ratio"),
                   log_softmax=cfg.get("log_softmax", True),
                   chunk_size=cfg.get("chunk_size", None))


class Batch(NamedTuple):
  """A fine-tuning batch that carries the penalty weight `lam` and the model's non-trainable
  state `rest` as traced inputs, so one compiled step serves every weight and every model of the
  same architecture (batches without them, e.g. `Split`s, use `cfg.lam` and `model.rest`)."""

  x: jax.Array
  y: jax.Array
  lam: jax.Array
  rest: object


def make_loss(model: Model, cfg, *, penalty: Optional[Callable] = None,
              penalty_batch: Optional[int] = None):
  """`loss_fn(params, batch, key) -> (loss, aux)`: `CE + λ·penalty (+ λ₂·mean(φ²))`.

  The loss is cross-entropy only without a penalty; with `penalty` an `ij.IdExpo` it is ID-ExpO's
  `CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)` (Yoshikawa & Iwata, AISTATS 2024), the true labels as
  targets; any other `penalty(predictor, xb, yb, key) -> (value, aux)` adds `λ·value`. `λ` is
  `batch.lam` for a `Batch`, else `cfg.lam`.

  Args:
    model: the split model (its `graphdef` stays fixed; `rest` too unless the batch carries it).
    cfg: `lam` (λ, unless the batch carries it), `lam2` (λ₂, for ID-ExpO) and `ce_from_penalty`
      (default False): take CE and accuracy from the clean inputs ID-ExpO evaluates anyway
      (`aux["clean_ce"]`, `aux["clean_acc"]`), the same loss up to float32 rounding with one
      forward and backward pass of the model fewer (the penalty must see the whole batch).
    penalty: the regulariser, or None.
    penalty_batch: the penalty sees the first `penalty_batch` examples of the batch (None or 0:
      `cfg.penalty_batch`, and all of them when that is unset or 0; CE always sees the whole
      batch): a cheaper penalty for sampling explainers (LIME, KernelSHAP evaluate the model on
      every perturbed input).
  """
  n = penalty_batch or cfg.get("penalty_batch", 0) or None
  is_idexpo = isinstance(penalty, ij.IdExpo)
  shared_ce = is_idexpo and bool(cfg.get("ce_from_penalty", False))
  if shared_ce and n is not None:
    raise ValueError("`ce_from_penalty` needs the penalty on the whole batch; unset "
                     "`penalty_batch`.")

  def loss_fn(params, batch, key):
    predictor = predictor_fn(model.graphdef, params, getattr(batch, "rest", model.rest))
    if not shared_ce:
      ce, aux = _ce_terms(predictor(batch.x), batch.y)
    if penalty is None:
      return ce, aux
    lam = batch.lam if isinstance(batch, Batch) else cfg.lam
    value, paux = penalty(predictor, batch.x[:n], batch.y[:n], key)
    if shared_ce:
      ce, aux = paux["clean_ce"], {"ce": paux["clean_ce"], "acc": paux["clean_acc"]}
    loss = ce + lam * value
    if is_idexpo:
      loss = loss + cfg.lam2 * paux["attribution_sq"]
    return loss, {**aux, "penalty": value, **paux}

  return loss_fn


def make_finetune_step(model: Model, cfg, *, penalty=None, penalty_batch=None):
  """The jitted train step (`make_train_step`) of `make_loss(model, cfg, ...)` with
  `make_optimizer(cfg)`."""
  return make_train_step(make_loss(model, cfg, penalty=penalty, penalty_batch=penalty_batch),
                         make_optimizer(cfg))


def checkpoint_options(cfg, name: Optional[str]) -> dict:
  """`fit`'s `checkpoint_dir`/`checkpoint_every`/`config` from `cfg` (`{}` without a directory).

  The recorded `config` is `cfg` without the entries that do not change the run (the directory,
  the period, `steps` and `eval_every`), so a resume under another learning rate, batch size,
  seed or loss weight is refused by `fit`, naming the field.

  Args:
    cfg: a training config with optional `checkpoint_dir` (None: no checkpoints) and
      `checkpoint_every`.
    name: the sub-directory of this run, unique among the runs that share `checkpoint_dir`.
  """
  directory = cfg.get("checkpoint_dir", None)
  if not directory:
    return {}
  if not name:
    raise ValueError("`checkpoint_name` is required when `checkpoint_dir` is set (runs sharing a "
                     "directory would resume from each other's checkpoints).")
  config = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_RUN_CONFIG}
  return {"checkpoint_dir": os.path.join(directory, name),
          "checkpoint_every": int(cfg.get("checkpoint_every", 0)), "config": config}


# Options that do not change a run's result; every other entry of a training config (optimizer,
# batches, seed, loss options) is recorded with its checkpoints and must match on resume.
_NOT_RUN_CONFIG = ("checkpoint_dir", "checkpoint_every", "steps", "eval_every")


def pretrain(module: nnx.Module, train_split, cfg, *, key, progress: bool = True):
  """Cross-entropy pre-training (BatchNorm statistics update in `train()` mode).

  Args:
    module: a freshly built NNX model.
    train_split: the training `Split`.
    cfg: `steps`, `batch_size`, `seed`, the optimizer options of `make_optimizer` and the
      optional `checkpoint_dir`/`checkpoint_every` (run name `pretrain_seed<seed>`).
    key: PRNG key of the loop.
    progress: show a tqdm bar.

  Returns:
    `(model, history)`: the trained `Model`, split in `eval()` mode for fine-tuning.
  """
  module.train()
  graphdef, params, rest = functional(module)

  def loss_fn(params, model_state, batch, key):
    del key
    logits, new_state = logits_with_state(graphdef, params, model_state, batch.x)
    ce, aux = _ce_terms(logits, batch.y)
    return ce, (aux, new_state)

  tx = make_optimizer(cfg)
  step = make_train_step(loss_fn, tx, stateful=True)
  state, history = fit(step, init_train_state(params, tx, rest),
                       epoch_batch_fn(train_split, cfg.batch_size, seed=cfg.seed),
                       num_steps=cfg.steps, key=key, progress=progress, desc="pretrain (CE)",
                       **checkpoint_options(cfg, f"pretrain_seed{cfg.seed}"))
  trained = nnx.merge(graphdef, state.params, state.model_state)
  trained.eval()
  return Model(*functional(trained)), history


def finetune(model: Model, train_split, cfg, *, key, penalty=None, step=None, lam=None,
             eval_fn=None, progress: bool = True, desc: Optional[str] = None,
             checkpoint_name: Optional[str] = None):
  """Fine-tunes `model.params` from step 0 with a fresh optimizer.

  Args:
    model: the pre-trained model (its parameters are copied, never donated).
    train_split: the training `Split`.
    cfg: `steps`, `batch_size`, `seed`, optimizer options and the loss options of `make_loss`.
    key: PRNG key of the loop (penalty keys are folded from it per step).
    penalty: the regulariser of `make_loss` (None: cross-entropy only).
    step: a step of `make_finetune_step` to reuse (built from `cfg` and `penalty` when None).
    lam: the weight λ as a traced input: batches are `Batch(x, y, lam, model.rest)`, so `step`
      serves every weight and model (None: `Split` batches and `cfg.lam`).
    eval_fn: optional `eval_fn(state) -> dict` every `cfg.eval_every` steps (see `loop.fit`).
    progress, desc: the tqdm bar.
    checkpoint_name: this run's sub-directory of `cfg.checkpoint_dir` (required when it is set).

  Returns:
    `(model, history)` with the fine-tuned parameters.
  """
  tx = make_optimizer(cfg)
  if step is None:
    step = make_train_step(make_loss(model, cfg, penalty=penalty), tx)
  batch_fn = epoch_batch_fn(train_split, cfg.batch_size, seed=cfg.seed)
  if lam is not None:
    lam_arr, split_batches = jnp.asarray(lam, jnp.float32), batch_fn
    batch_fn = lambda t: Batch(*split_batches(t), lam_arr, model.rest)
  params = jax.tree.map(jnp.copy, model.params)
  state, history = fit(step, init_train_state(params, tx), batch_fn, num_steps=cfg.steps,
                       key=key, eval_fn=eval_fn, eval_every=cfg.get("eval_every", 0),
                       progress=progress, desc=desc, **checkpoint_options(cfg, checkpoint_name))
  return model._replace(params=state.params), history
