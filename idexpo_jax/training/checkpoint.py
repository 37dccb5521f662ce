"""Checkpoints of a `TrainState` with orbax, so that an interrupted run resumes exactly (SPEC §7).

A checkpoint holds the whole `TrainState` (step, parameters, optimizer state, model state such as
BatchNorm statistics) and a small JSON record with the step, the data position and any metadata.
With the deterministic loop of `idexpo_jax.training.loop.fit` (batch of step `t` = `batch_fn(t)`, key of step
`t` = `fold_in(key, t)`), the data position is the step itself, so a run restored from the
checkpoint of step `t` repeats the remaining steps bit for bit.

Checkpoints are numbered by `int(state.step)`, the number of completed steps. Arrays are restored
with the dtypes and shardings of a template state (e.g. the freshly initialised, replicated one),
so a data-parallel run resumes on its mesh. orbax is imported lazily: the library core does not
depend on it (`pip install idexpo_jax[experiments]`).

Safety of a resume: the record can hold the run's config (`fit(config=...)`, e.g. the optimizer's
hyperparameters); `check_resume` refuses a checkpoint written under another config or beyond the
run's `num_steps`, naming the field. A checkpoint that cannot be read (e.g. a corrupted
`_METADATA`) is skipped with a warning naming its step, and the previous one is restored.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Mapping, NamedTuple, Optional

import jax

from idexpo_jax._optional import require


class Restored(NamedTuple):
  """A restored checkpoint: the state and its JSON record (`step`, `data_position`, metadata)."""

  state: Any
  record: dict


def checkpoint_manager(directory: str, *, max_to_keep: Optional[int] = 2):
  """An `orbax.checkpoint.CheckpointManager` on `directory` (created if missing).

  Args:
    directory: where the numbered checkpoints live (made absolute).
    max_to_keep: how many of the latest checkpoints to keep (`None`: all).

  Returns:
    The manager; close it with `manager.close()` (or use it as a context manager).
  """
  ocp = require("orbax.checkpoint", "experiments", what="checkpoints")
  if max_to_keep is not None and max_to_keep < 1:
    raise ValueError(f"`max_to_keep` must be >= 1 or None; got {max_to_keep}.")
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def save_checkpoint(manager, state, *, data_position: Any = None,
                    metadata: Optional[dict] = None, wait: bool = True) -> int:
  """Saves `state` under its step `int(state.step)`.

  Args:
    manager: from `checkpoint_manager`.
    state: a `TrainState` (any pytree of arrays with an integer `step` field).
    data_position: JSON-serialisable position in the data stream (default: the step, which is
      the position for a `batch_fn(t)` that is a pure function of the step).
    metadata: extra JSON-serialisable entries for the record (e.g. the config).
    wait: block until the checkpoint is on disk (orbax writes asynchronously otherwise).

  Returns:
    The step the checkpoint was saved under.
  """
  ocp = require("orbax.checkpoint", "experiments", what="checkpoints")
  step = int(state.step)
  record = {**(metadata or {}), "step": step,
            "data_position": step if data_position is None else data_position}
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             record=ocp.args.JsonSave(record)))
  if wait:
    manager.wait_until_finished()
  return step


def restore_checkpoint(manager, template, *, step: Optional[int] = None) -> Optional[Restored]:
  """Restores the checkpoint of `step` (default: the latest readable one), or `None` if none.

  With `step=None`, a checkpoint that cannot be read (a corrupted or truncated file) is skipped
  with a `UserWarning` naming its step and the error, and the next older one is tried; if none
  can be read, the error of the newest is raised.

  Args:
    manager: from `checkpoint_manager`.
    template: a state with the structure, shapes, dtypes and shardings to restore into (its
      values are not read); e.g. the freshly initialised state of the run.
    step: which checkpoint; `None` for the latest readable one.

  Returns:
    `Restored(state, record)`, or `None` when the directory holds no checkpoint.
  """
  ocp = require("orbax.checkpoint", "experiments", what="checkpoints")
  manager.wait_until_finished()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)

  def read(s):
    out = manager.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                     record=ocp.args.JsonRestore()))
    return Restored(out.state, dict(out.record))

  if step is not None:
    if step not in manager.all_steps():
      raise ValueError(f"No checkpoint of step {step} in {manager.directory}; "
                       f"available: {sorted(manager.all_steps())}.")
    return read(step)
  steps = sorted(manager.all_steps(), reverse=True)
  first_error = None
  for i, s in enumerate(steps):
    try:
      return read(s)
    except Exception as e:  # noqa: BLE001 -- any unreadable checkpoint: fall back, loudly
      first_error = first_error or e
      nxt = f"falling back to step {steps[i + 1]}" if i + 1 < len(steps) else "no older one"
      warnings.warn(f"The checkpoint of step {s} in {manager.directory} could not be read "
                    f"({type(e).__name__}: {str(e)[:300]}); {nxt}.", UserWarning, stacklevel=2)
  if first_error is not None:
    raise RuntimeError(f"No checkpoint in {manager.directory} could be read (steps "
                       f"{steps}).") from first_error
  return None


def _flatten(tree, prefix=""):
  """`{"a": {"b": 1}}` -> `{"a.b": 1}` (JSON values)."""
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def normalize_config(config: Optional[Mapping[str, Any]]) -> Optional[dict]:
  """`config` as the JSON record stores it (tuples become lists; other values `str`)."""
  if config is None:
    return None
  if hasattr(config, "to_dict"):  # ml_collections.ConfigDict
    config = config.to_dict()
  if not isinstance(config, Mapping):
    raise TypeError(f"`config` must be a mapping (dict or ConfigDict); got {type(config)}.")
  return json.loads(json.dumps(dict(config), sort_keys=True, default=str))


def check_resume(record: dict, *, config: Optional[Mapping[str, Any]], num_steps: int,
                 directory: str = "") -> None:
  """Refuses to resume from a checkpoint `record` that belongs to another run.

  Args:
    record: the restored record (`Restored.record`).
    config: this run's config (`None`: not checked).
    num_steps: this run's total number of steps.
    directory: named in the messages.

  Raises:
    ValueError: naming `num_steps` when the checkpoint is beyond it, or naming every config field
      whose value differs from (or is missing in) the recorded config.
  """
  where = f" in {directory}" if directory else ""
  step = int(record.get("step", 0))
  if step > num_steps:
    raise ValueError(f"`num_steps`={num_steps} but the checkpoint{where} is already at step "
                     f"{step}: the run would not continue from it. Pass num_steps >= {step}, or "
                     f"another checkpoint_dir.")
  if config is None:
    return
  mine = _flatten(normalize_config(config))
  if "config" not in record:
    raise ValueError(f"The checkpoint{where} (step {step}) records no config, but this run has "
                     f"one: cannot tell whether it belongs to this run. Use another "
                     f"checkpoint_dir.")
  theirs = _flatten(record["config"])
  diff = [f"{k}: checkpoint {theirs.get(k, '<missing>')!r} vs this run {mine.get(k, '<missing>')!r}"
          for k in sorted(set(mine) | set(theirs)) if mine.get(k, None) != theirs.get(k, None)
          or (k in mine) != (k in theirs)]
  if diff:
    raise ValueError(f"The checkpoint{where} (step {step}) was written under another config; "
                     f"differing fields: {'; '.join(diff)}. Resume with the same config, or use "
                     f"another checkpoint_dir.")


def latest_step(directory: str) -> Optional[int]:
  """The step of the latest checkpoint in `directory`, or `None` (also if it does not exist)."""
  if not os.path.isdir(directory):
    return None
  manager = checkpoint_manager(directory, max_to_keep=None)
  try:
    return manager.latest_step()
  finally:
    manager.close()
