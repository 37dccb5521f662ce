"""Checkpoints of a `TrainState` with orbax, so that an interrupted run resumes exactly (SPEC §7).

A checkpoint holds the whole `TrainState` (step, parameters, optimizer state, model state such as
BatchNorm statistics) and a small JSON record with the step, the data position and any metadata.
With the deterministic loop of `idexpo_jax.loop.fit` (batch of step `t` = `batch_fn(t)`, key of step
`t` = `fold_in(key, t)`), the data position is the step itself, so a run restored from the
checkpoint of step `t` repeats the remaining steps bit for bit.

Checkpoints are numbered by `int(state.step)`, the number of completed steps. Arrays are restored
with the dtypes and shardings of a template state (e.g. the freshly initialised, replicated one),
so a data-parallel run resumes on its mesh. orbax is imported lazily: the library core does not
depend on it (`pip install idexpo_jax[experiments]`).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional

import jax


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
  import orbax.checkpoint as ocp
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
  import orbax.checkpoint as ocp
  step = int(state.step)
  record = {**(metadata or {}), "step": step,
            "data_position": step if data_position is None else data_position}
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             record=ocp.args.JsonSave(record)))
  if wait:
    manager.wait_until_finished()
  return step


def restore_checkpoint(manager, template, *, step: Optional[int] = None) -> Optional[Restored]:
  """Restores the checkpoint of `step` (default: the latest), or returns `None` if there is none.

  Args:
    manager: from `checkpoint_manager`.
    template: a state with the structure, shapes, dtypes and shardings to restore into (its
      values are not read); e.g. the freshly initialised state of the run.
    step: which checkpoint; `None` for the latest.

  Returns:
    `Restored(state, record)`, or `None` when the directory holds no checkpoint.
  """
  import orbax.checkpoint as ocp
  manager.wait_until_finished()
  if step is None:
    step = manager.latest_step()
    if step is None:
      return None
  elif step not in manager.all_steps():
    raise ValueError(f"No checkpoint of step {step} in {manager.directory}; "
                     f"available: {sorted(manager.all_steps())}.")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                      record=ocp.args.JsonRestore()))
  return Restored(out.state, dict(out.record))


def latest_step(directory: str) -> Optional[int]:
  """The step of the latest checkpoint in `directory`, or `None` (also if it does not exist)."""
  if not os.path.isdir(directory):
    return None
  manager = checkpoint_manager(directory, max_to_keep=None)
  try:
    return manager.latest_step()
  finally:
    manager.close()
