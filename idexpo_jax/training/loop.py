"""A small, deterministic training loop around a jitted `train_step`.

`fit` drives `train_step(state, batch, key) -> (state, metrics)` (see `train.make_train_step`) for
a fixed number of steps. Determinism is by construction, so that a resumed run repeats exactly:

* the batch of step `t` is `batch_fn(t)`, a pure function of the step (`epoch_batch_fn` builds
  one from a split, a `NamedTuple` of arrays `x` and `y`, with an epoch-wise permutation drawn
  from a seed and the epoch number);
* the PRNG key of step `t` is `jax.random.fold_in(key, t)`.

The loop starts at `int(state.step)`, so a state restored at step `t` continues at `t`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Protocol, TypeVar

import jax
import numpy as np

from idexpo_jax.core.checks import check_int


class _Split(Protocol):
  """What `epoch_batch_fn` needs of a split: arrays `x` and `y` with one row per example, and
  `_replace` (a `NamedTuple`, e.g. the data modules' `Split`)."""

  x: Any
  y: Any

  def _replace(self, **kwargs) -> Any: ...


S = TypeVar("S", bound=_Split)


def _to_floats(metrics) -> dict[str, float]:
  """Pulls a dict of scalar arrays to the host as Python floats (one transfer)."""
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def fit(train_step: Callable, state, batch_fn: Callable[[int], Any], *, num_steps: int,
        key: jax.Array, eval_fn: Optional[Callable] = None, eval_every: int = 0,
        progress: bool = True, desc: Optional[str] = None, checkpoint_dir: Optional[str] = None,
        checkpoint_every: int = 0, checkpoint_keep: int = 2, stop_on_nonfinite: bool = True,
        config: Optional[Mapping[str, Any]] = None):
  """Runs `train_step` from `int(state.step)` up to `num_steps` (exclusive).

  With `checkpoint_dir`, the run resumes from the latest checkpoint there (when it is ahead of
  `state`) and saves one every `checkpoint_every` steps and after the last step; since the batch
  and key of step `t` depend only on `t`, a resumed run ends with the same state, bit for bit, as
  an uninterrupted one (`idexpo_jax.training.checkpoint`). A non-finite loss or gradient norm stops the
  run before its state is saved, so the last checkpoint is the last good state.

  A resume is refused (`ValueError` naming the field) when the checkpoint is beyond `num_steps`
  or was written under another `config`; an unreadable newest checkpoint is skipped with a
  warning naming its step and moved aside to `<step>.corrupt-<n>` after the previous one is
  restored (`checkpoint.restore_checkpoint`), so the run saves that step again. Asking for more
  steps than a previous run (e.g. 6 after 4) continues it. An unusable `checkpoint_dir` (a
  regular file, not creatable, read-only) or one another run is writing to raises an `OSError`
  naming it before any step runs (`checkpoint.checkpoint_manager`); the manager is closed on
  every exit path, so a failed run exits at once.

  Args:
    train_step: `train_step(state, batch, key) -> (state, metrics)`, e.g. from
      `make_train_step`; `state` must have an integer `step` field (`TrainState`).
    state: the initial state (donated to `train_step` if it donates).
    batch_fn: `batch_fn(t) -> batch`, deterministic in the step `t`.
    num_steps: total number of steps (the loop stops at step `num_steps`).
    key: base PRNG key; step `t` uses `jax.random.fold_in(key, t)`.
    eval_fn: optional `eval_fn(state) -> dict of scalars`, called every `eval_every` steps and
      after the last step; its entries are added to that step's history record.
    eval_every: evaluation period in steps (0: only after the last step, if `eval_fn` is set).
    progress: show a tqdm progress bar with the running loss.
    desc: label of the progress bar.
    checkpoint_dir: directory of orbax checkpoints (`None`: no checkpoints, no resuming).
    checkpoint_every: save every this many steps (0: only after the last step).
    checkpoint_keep: how many of the latest checkpoints to keep (an integer >= 1, or None: all).
    stop_on_nonfinite: raise `FloatingPointError` naming the step when its `loss` (or
      `grad_norm`) is NaN or infinite.
    config: what determines the run besides the step count (e.g. optimizer hyperparameters and
      loss weights; a dict or `ConfigDict` of JSON-serialisable values), recorded with every
      checkpoint and compared on resume (`checkpoint.check_resume`).

  Returns:
    `(state, history)`: the final state and one dict of float metrics per step, each with
    `step` (the 1-based count of completed steps) and the step's `metrics` (plus evaluation
    entries on evaluation steps). A resumed run's history starts at the restored step.
  """
  num_steps = check_int(num_steps, "num_steps", minimum=0)
  eval_every = check_int(eval_every, "eval_every", minimum=0)
  checkpoint_every = check_int(checkpoint_every, "checkpoint_every", minimum=0)
  check_int(checkpoint_keep, "checkpoint_keep", minimum=1, none_ok=True)
  manager = None
  if checkpoint_dir is not None:
    from idexpo_jax.training import checkpoint
    # Raises (an OSError naming the directory) before any training if it is unusable or in use.
    manager = checkpoint.checkpoint_manager(checkpoint_dir, max_to_keep=checkpoint_keep)
  bar = None
  failed = True
  try:
    if manager is not None:
      metadata = {"num_steps": num_steps, "config": checkpoint.normalize_config(config)}
      if metadata["config"] is None:
        del metadata["config"]
      restored = checkpoint.restore_checkpoint(manager, state)
      if restored is not None:
        checkpoint.check_resume(restored.record, config=config, num_steps=num_steps,
                                directory=str(manager.directory))
        if int(restored.record["step"]) > int(state.step):
          state = restored.state
    start = int(state.step)
    history = []
    if progress:
      from tqdm.auto import tqdm
      bar = tqdm(total=num_steps, initial=start, desc=desc, leave=True, dynamic_ncols=True)
    for t in range(start, num_steps):
      state, metrics = train_step(state, batch_fn(t), jax.random.fold_in(key, t))
      record = {"step": t + 1, **_to_floats(metrics)}
      if stop_on_nonfinite:
        _check_finite(record, t, manager)
      last = t + 1 == num_steps
      if eval_fn is not None and (last or (eval_every and (t + 1) % eval_every == 0)):
        record.update(_to_floats(eval_fn(state)))
      history.append(record)
      if manager is not None and (last or (checkpoint_every and (t + 1) % checkpoint_every == 0)):
        checkpoint.save_checkpoint(manager, state, metadata=metadata)
      if bar is not None:
        bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
        bar.update(1)
    failed = False
  finally:
    try:
      if bar is not None:
        bar.close()
    finally:
      if manager is not None:
        # Waits for pending saves, stops orbax's threads, releases the lock; a failed save is
        # raised here unless an error (the same one, typically) is already on its way.
        manager.close(raise_errors=not failed)
  return state, history


def _check_finite(record: dict, t: int, manager) -> None:
  """Raises `FloatingPointError` naming step `t` if its loss or gradient norm is not finite."""
  bad = {k: record[k] for k in ("loss", "grad_norm")
         if k in record and not math.isfinite(record[k])}
  if not bad:
    return
  where = ("no checkpoint directory was given" if manager is None else
           f"the last good checkpoint is step {manager.latest_step()} in {manager.directory}")
  raise FloatingPointError(f"Non-finite {bad} at step {t} (0-based; its state was not kept); "
                           f"{where}.")


def epoch_batch_fn(split: S, batch_size: int, *, seed: int = 0) -> Callable[[int], S]:
  """A deterministic `batch_fn(t)` over a split: shuffled epochs, incomplete batches dropped.

  Step `t` belongs to epoch `e = t // (N // batch_size)`; the permutation of epoch `e` is
  `np.random.default_rng([seed, e]).permutation(N)`, so any step's batch can be rebuilt without
  replaying the previous ones (resumable). A batch is `split` with `x` and `y` replaced by the
  batch's rows (`split._replace`), so it has the split's type (e.g. a data module's `Split`).
  """
  n = len(split.y)
  if n == 0:
    raise ValueError("`split` must hold at least one example; got an empty split.")
  batch_size = check_int(batch_size, "batch_size", minimum=1, maximum=n)
  seed = check_int(seed, "seed", minimum=0)
  per_epoch = n // batch_size
  cache: dict[int, np.ndarray] = {}

  def batch_fn(t: int) -> S:
    epoch, i = divmod(int(t), per_epoch)
    if epoch not in cache:
      cache.clear()
      cache[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
    idx = cache[epoch][i * batch_size:(i + 1) * batch_size]
    return split._replace(x=split.x[idx], y=split.y[idx])

  return batch_fn
