"""Checkpoints of a `TrainState` with orbax, so that an interrupted run resumes exactly.

A checkpoint holds the whole `TrainState` (step, parameters, optimizer state, model state such as
BatchNorm statistics) and a small JSON record with the step, the data position and any metadata.
With the deterministic loop of `idexpo_jax.training.loop.fit` (batch of step `t` = `batch_fn(t)`, key of step
`t` = `fold_in(key, t)`), the data position is the step itself, so a run restored from the
checkpoint of step `t` repeats the remaining steps bit for bit.

Checkpoints are numbered by `int(state.step)`, the number of completed steps. Arrays are restored
with the dtypes and shardings of a template state (e.g. the freshly initialised, replicated one),
so a data-parallel run resumes on its mesh. orbax is imported lazily: the library core does not
depend on it (`pip install idexpo_jax[experiments]`).

The contract of a checkpoint directory (docs/scale.md, "Checkpoint contract"):

* A checkpoint is *complete* when its folder `<dir>/<step>` holds orbax's two commit marks,
  `_CHECKPOINT_METADATA` and `commit_success.txt` (orbax writes into a temporary folder and
  renames it at the end). Anything else named like a step (an empty or partial folder) is not a
  checkpoint: `latest_step` ignores it and opening a manager moves it aside to
  `<step>.incomplete-<n>`, so that it does not block later saves. Nothing is deleted.
* Saving the step of the newest checkpoint again replaces it atomically (written beside it, then
  swapped in with one `rename`); saving a step older than the newest raises
  `CheckpointOrderError`; a save orbax would skip raises instead of returning.
* A newest checkpoint that cannot be read is skipped with a warning, the previous one is restored
  and the unreadable one is moved aside to `<step>.corrupt-<n>` (kept for inspection), so the run
  saves that step again.
* An unusable directory (a regular file, not creatable, read-only, full) raises
  `CheckpointDirectoryError` (an `OSError` naming the path) when the manager is opened, before any
  training. One writer per directory: a second manager on a directory in use raises
  `CheckpointInUseError` (an advisory `flock` on `<dir>/.lock`, released by the kernel when its
  process dies, so a killed run never leaves a stale lock).
* Managers are context managers; `close()` always releases the lock and orbax's threads.
* In a multi-host run, process 0 takes the lock and does the renames (the others wait at a
  barrier); overwriting a step is refused there (`ValueError`).

Safety of a resume: the record can hold the run's config (`fit(config=...)`, e.g. the optimizer's
hyperparameters); `check_resume` refuses a checkpoint written under another config or beyond the
run's `num_steps`, naming the field.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
import warnings
from typing import Any, Mapping, NamedTuple, Optional

import jax

from idexpo_jax._optional import require

#: orbax's marks of a finished checkpoint folder (both are written before its final rename).
COMMIT_MARKS = ("_CHECKPOINT_METADATA", "commit_success.txt")
_LOCK_NAME = ".lock"
_STAGE_PREFIX = ".overwrite-"
# What orbax's `CheckpointManager.close` closes after waiting (orbax 0.11 - 0.12).
_ORBAX_PARTS = ("_checkpointer", "_non_blocking_metadata_store", "_blocking_metadata_store",
                "_checkpoint_deleter")


class CheckpointDirectoryError(OSError):
  """The checkpoint directory cannot be used (not a directory, not creatable, not writable)."""


class CheckpointInUseError(CheckpointDirectoryError):
  """Another open manager (in this or another process) is writing to the checkpoint directory."""


class CheckpointOrderError(ValueError):
  """A save of a step older than the newest checkpoint of the directory."""


class Restored(NamedTuple):
  """A restored checkpoint: the state and its JSON record (`step`, `data_position`, metadata)."""

  state: Any
  record: dict


def _primary() -> bool:
  """Whether this is the process that renames and locks (process 0 of a multi-host run)."""
  return jax.process_index() == 0


def _sync(name: str) -> None:
  """A barrier of every process (a no-op in a single-process run)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def is_complete(step_dir: str) -> bool:
  """Whether the folder `step_dir` is a finished orbax checkpoint (both `COMMIT_MARKS` there)."""
  return os.path.isdir(step_dir) and all(os.path.isfile(os.path.join(step_dir, m))
                                         for m in COMMIT_MARKS)


def _step_dirs(directory: str) -> dict[int, str]:
  """`{step: path}` of the folders of `directory` named by a step (complete or not)."""
  if not os.path.isdir(directory):
    return {}
  names = os.listdir(directory)
  return {int(n): os.path.join(directory, n) for n in names
          if n.isdigit() and os.path.isdir(os.path.join(directory, n))}


def _move_aside(path: str, why: str) -> str:
  """Renames `path` to the first free `<path>.<why>-<n>` (n = 1, 2, ...) and returns it."""
  n = 1
  while os.path.lexists(f"{path}.{why}-{n}"):
    n += 1
  target = f"{path}.{why}-{n}"
  os.rename(path, target)
  return target


def _dir_error(path: str, what: str, e: Optional[OSError] = None) -> CheckpointDirectoryError:
  code = e.errno if e is not None and e.errno else errno.EINVAL
  detail = f" ({e.strerror or e})" if e is not None else ""
  return CheckpointDirectoryError(code, f"`checkpoint_dir` {path} {what}{detail}; nothing was "
                                  f"trained or written. Pass a writable directory.", path)


def _check_directory(path: str) -> None:
  """Raises `CheckpointDirectoryError` unless `path` is (or can be made) a writable directory."""
  if os.path.lexists(path) and not os.path.isdir(path):
    raise _dir_error(path, "exists and is not a directory",
                     OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise _dir_error(path, "cannot be created", e) from e
  probe = os.path.join(path, f".write-probe-{os.getpid()}-{uuid.uuid4().hex}")
  try:
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
      os.write(fd, b"probe")
      os.fsync(fd)
    finally:
      os.close(fd)
      os.unlink(probe)
  except OSError as e:
    raise _dir_error(path, "is not writable", e) from e


def _lock(path: str) -> int:
  """Takes the writer's lock of `path` (a non-blocking `flock`) and returns its descriptor."""
  lock_path = os.path.join(path, _LOCK_NAME)
  try:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise _dir_error(path, "is not writable", e) from e
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
    os.close(fd)
    raise CheckpointInUseError(
        errno.EBUSY, f"`checkpoint_dir` {path} is in use by another writer ({holder}); two "
        f"runs must not share a checkpoint directory. Wait for it to finish or pass another "
        f"checkpoint_dir.", path) from e
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
  return fd


def _recover(path: str) -> None:
  """Completes an interrupted overwrite and moves incomplete step folders aside (warning)."""
  for name in sorted(os.listdir(path)):
    stage = os.path.join(path, name)
    if not (name.startswith(_STAGE_PREFIX) and os.path.isdir(stage)):
      continue
    step = name[len(_STAGE_PREFIX):].split("-")[0]
    final = os.path.join(path, step)
    if step.isdigit() and not os.path.exists(final):  # killed between the two renames
      for candidate in (os.path.join(stage, step), os.path.join(stage, "replaced")):
        if is_complete(candidate):
          os.rename(candidate, final)
          warnings.warn(f"Completed an interrupted overwrite of the checkpoint of step {step} in "
                        f"{path} (from {candidate}).", UserWarning, stacklevel=3)
          break
  for step, step_dir in sorted(_step_dirs(path).items()):
    if not is_complete(step_dir):
      target = _move_aside(step_dir, "incomplete")
      warnings.warn(f"{step_dir} is not a complete checkpoint (no orbax commit marks "
                    f"{list(COMMIT_MARKS)}); moved aside to {target}, not read.", UserWarning,
                    stacklevel=3)


def _close_parts(manager) -> None:
  """Closes what orbax's `CheckpointManager.close` closes, each even if another one raises."""
  for name in _ORBAX_PARTS:
    part = getattr(manager, name, None)
    if part is None:
      continue
    try:
      part.close()
    except Exception:  # noqa: BLE001 -- an async checkpointer re-raises its failed save:
      for sub in ("_handler", "_metadata_store"):  # close what its `close` would have closed
        try:
          getattr(part, sub).close()
        except Exception:  # noqa: BLE001 -- best effort; the save's error is raised by close()
          pass


class CheckpointManager:
  """An orbax `CheckpointManager` holding the writer's lock of its directory.

  Every attribute of orbax's manager (`directory`, `latest_step`, `all_steps`, `save`,
  `restore`, `wait_until_finished`, `reload`, ...) is available. Use it as a context manager, or
  call `close()`, which waits for pending saves, stops orbax's threads and releases the lock, on
  every path (also when waiting raises).
  """

  def __init__(self, manager, path: str, lock_fd: Optional[int]):
    self._manager = manager
    self.path = path
    self._lock_fd = lock_fd  # None on the other processes of a multi-host run
    self._closed = False

  def __getattr__(self, name):
    if name.startswith("_"):
      raise AttributeError(name)
    return getattr(self._manager, name)

  @property
  def closed(self) -> bool:
    """Whether `close()` was called."""
    return self._closed

  def close(self, *, raise_errors: bool = True) -> None:
    """Waits for pending saves, stops orbax's threads and releases the lock (idempotent).

    orbax's own `close` waits first and, when a pending save failed (e.g. a full disk), raises
    before stopping anything, which leaves its threads running for minutes; here every part is
    closed regardless, and the save's error is raised afterwards.

    Args:
      raise_errors: raise the error of a failed pending save (after closing); `fit` passes
        False while another error is already propagating.
    """
    if self._closed:
      return
    self._closed = True
    error = None
    try:
      try:
        self._manager.wait_until_finished()
      except Exception as e:  # noqa: BLE001 -- re-raised below, once everything is closed
        error = e
      try:
        self._manager.close()
      except Exception as e:  # noqa: BLE001 -- orbax re-raises a failed save before stopping
        error = error or e
        _close_parts(self._manager)
    finally:
      if self._lock_fd is not None:
        os.close(self._lock_fd)  # releases the flock
        self._lock_fd = None
    if error is not None and raise_errors:
      raise error

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False


def checkpoint_manager(directory: str, *, max_to_keep: Optional[int] = 2) -> CheckpointManager:
  """A `CheckpointManager` on `directory` (created if missing), the only writer there.

  Args:
    directory: where the numbered checkpoints live (made absolute).
    max_to_keep: how many of the latest checkpoints to keep (`None`: all).

  Returns:
    The manager; close it with `manager.close()` (or use it as a context manager).

  Raises:
    ValueError: naming `max_to_keep` when it is < 1.
    CheckpointDirectoryError: an `OSError` naming `directory` when it is a regular file, cannot
      be created or is not writable (e.g. read-only, full), before anything is written.
    CheckpointInUseError: when another open manager writes to `directory`.
  """
  ocp = require("orbax.checkpoint", "experiments", what="checkpoints")
  if max_to_keep is not None and max_to_keep < 1:
    raise ValueError(f"`max_to_keep` must be >= 1 or None; got {max_to_keep}.")
  path = os.path.abspath(os.fspath(directory))
  _check_directory(path)
  # In a multi-host run, process 0 locks and renames; the others wait for it.
  fd = _lock(path) if _primary() else None
  try:
    if fd is not None:
      _recover(path)
    _sync(f"idexpo_jax.checkpoint.open:{path}")
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    manager = ocp.CheckpointManager(path, options=options)
  except BaseException:
    if fd is not None:
      os.close(fd)
    raise
  return CheckpointManager(manager, path, fd)


def _save_args(ocp, state, record):
  return ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record))


def _exchange(a: str, b: str) -> bool:
  """Swaps the directories `a` and `b` atomically (Linux `renameat2`); False if unsupported."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    renameat2 = libc.renameat2
  except (OSError, AttributeError):
    return False
  at_fdcwd, rename_exchange = -100, 2
  if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
    return True
  code = ctypes.get_errno()
  if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
    return False
  raise OSError(code, f"cannot swap {a} and {b}: {os.strerror(code)}")


def _overwrite(ocp, manager: CheckpointManager, step: int, state, record) -> None:
  """Replaces the checkpoint of `step`: written to a staging folder, then swapped in."""
  if jax.process_count() > 1:
    raise ValueError(f"Saving step {step} again in {manager.directory} (an overwrite) is not "
                     f"supported in a multi-process run; save a newer step.")
  root = manager.path
  stage = os.path.join(root, f"{_STAGE_PREFIX}{step}-{os.getpid()}-{time.time_ns()}")
  staging = ocp.CheckpointManager(stage, options=ocp.CheckpointManagerOptions(create=True))
  try:
    if not staging.save(step, args=_save_args(ocp, state, record)):
      raise RuntimeError(f"orbax refused to stage the checkpoint of step {step} in {stage}.")
    staging.wait_until_finished()
  finally:
    staging.close()
  new, final = os.path.join(stage, str(step)), os.path.join(root, str(step))
  if not is_complete(new):
    raise RuntimeError(f"The staged checkpoint {new} is not complete; {final} was left as is.")
  if not _exchange(new, final):  # no atomic swap here: two renames, recovered on open
    os.rename(final, os.path.join(stage, "replaced"))
    os.rename(new, final)
  shutil.rmtree(stage)  # the replaced checkpoint, which the caller asked to overwrite
  manager.reload()


def save_checkpoint(manager, state, *, data_position: Any = None,
                    metadata: Optional[dict] = None, wait: bool = True) -> int:
  """Saves `state` under its step `int(state.step)`.

  A new step is saved by orbax (asynchronously with `wait=False`); the step of the newest
  checkpoint is replaced atomically (always synchronously): a reader sees either the old or the
  new checkpoint, never a mixture or none.

  Args:
    manager: from `checkpoint_manager`.
    state: a `TrainState` (any pytree of arrays with an integer `step` field).
    data_position: JSON-serialisable position in the data stream (default: the step, which is
      the position for a `batch_fn(t)` that is a pure function of the step).
    metadata: extra JSON-serialisable entries for the record (e.g. the config).
    wait: block until the checkpoint is on disk (orbax writes asynchronously otherwise).

  Returns:
    The step the checkpoint was saved under; it is on disk (or being written, `wait=False`).

  Raises:
    CheckpointOrderError: when the step is older than the newest checkpoint (saving it would
      either be skipped or break the order in which checkpoints are kept).
    RuntimeError: when the manager is closed or orbax skips the save.
    OSError: when writing fails (e.g. the disk is full); older checkpoints are left intact.
  """
  ocp = require("orbax.checkpoint", "experiments", what="checkpoints")
  if getattr(manager, "closed", False):
    raise RuntimeError(f"The checkpoint manager of {manager.path} is closed.")
  step = int(state.step)
  record = {**(metadata or {}), "step": step,
            "data_position": step if data_position is None else data_position}
  manager.wait_until_finished()  # a pending save counts as the newest
  newest = manager.latest_step()
  if newest is not None and step < newest:
    raise CheckpointOrderError(
        f"Cannot save step {step} in {manager.directory}: its newest checkpoint is step "
        f"{newest}, and checkpoints are saved in increasing step order. Restore an older one "
        f"with restore_checkpoint(..., step=...), or use another directory.")
  if step == newest:
    _overwrite(ocp, manager, step, state, record)
    return step
  try:
    saved = manager.save(step, args=_save_args(ocp, state, record))
    if saved and wait:
      manager.wait_until_finished()
  except Exception as e:
    converted = _as_os_error(e, step, manager.directory)
    if converted is e:
      raise
    raise converted from e
  if not saved:
    raise RuntimeError(f"orbax skipped the save of step {step} in {manager.directory} (newest: "
                       f"{newest}).")
  return step


def _as_os_error(e: Exception, step: int, directory) -> Exception:
  """`e` as an `OSError` when it is one that tensorstore reports as a `ValueError`."""
  if isinstance(e, OSError):
    return e
  code = re.search(r"os_error_code='(\d+)'", str(e))
  if code is None:
    return e
  n = int(code.group(1))
  return OSError(n, f"Writing the checkpoint of step {step} in {directory} failed: "
                 f"{os.strerror(n)} ({str(e)[:300]}); the older checkpoints are intact.")


def restore_checkpoint(manager, template, *, step: Optional[int] = None) -> Optional[Restored]:
  """Restores the checkpoint of `step` (default: the latest readable one), or `None` if none.

  With `step=None`, a checkpoint that cannot be read (a corrupted or truncated file) is skipped
  with a `UserWarning` naming its step and the error, and the next older one is tried. Once one
  is read, the unreadable newer ones are moved aside to `<step>.corrupt-<n>` (kept for
  inspection, named in a second warning), so that the run saves those steps again. If none can
  be read, the error of the newest is raised and nothing is moved.

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
      restored = read(s)
    except Exception as e:  # noqa: BLE001 -- any unreadable checkpoint: fall back, loudly
      first_error = first_error or e
      nxt = f"falling back to step {steps[i + 1]}" if i + 1 < len(steps) else "no older one"
      warnings.warn(f"The checkpoint of step {s} in {manager.directory} could not be read "
                    f"({type(e).__name__}: {str(e)[:300]}); {nxt}.", UserWarning, stacklevel=2)
      continue
    if i:
      for bad in steps[:i]:
        if not _primary():
          continue
        target = _move_aside(os.path.join(os.fspath(manager.directory), str(bad)), "corrupt")
        warnings.warn(f"The unreadable checkpoint of step {bad} was moved aside to {target} "
                      f"(kept for inspection); the run goes on from step {s}.", UserWarning,
                      stacklevel=2)
      _sync(f"idexpo_jax.checkpoint.corrupt:{manager.directory}")
      manager.reload()
    return restored
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


def normalize_config(config: Any) -> Optional[dict]:
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
  """The step of the newest complete checkpoint in `directory`, or `None` (also if it is missing).

  Only complete checkpoints count (`is_complete`: orbax's commit marks); an empty or partial
  folder named like a step is ignored. Reads the directory listing only: no manager, no lock.
  """
  steps = [s for s, d in _step_dirs(os.fspath(directory)).items() if is_complete(d)]
  return max(steps) if steps else None
