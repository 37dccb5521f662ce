"""Data parallelism with `jax.sharding`: the batch is sharded, the state replicated, one jit.

The step of `make_train_step(..., jit=False)` is compiled once with `jax.jit` over a 1-D device
mesh: every leaf of the batch is split along its leading (example) axis over the mesh axis, the
`TrainState` and the key are replicated. XLA (GSPMD) then inserts the all-reduces of the batch
means, so the step computes the same function as on one device: the same gradients up to the
order of float32 summation, the same per-example keys (`jax.random` is sharding-invariant),
and BatchNorm statistics of the whole global batch (synchronised BatchNorm) during pre-training.

Across hosts, call `initialize_distributed()` first (before any other JAX call); the mesh then
spans every device of every process, each process feeds its own rows of the global batch
(`process_rows`) and `shard_batch` assembles the global array.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from idexpo_jax.training.train import DonatedStep

DATA_AXIS = "data"


def initialize_distributed(*, coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None, process_id: Optional[int] = None,
                           auto_detect: bool = False, **kwargs) -> bool:
  """Starts `jax.distributed` for a multi-host run; does nothing on a single host.

  Call it at the very start of the program, before any JAX computation.

  Args:
    coordinator_address: `host:port` of process 0 (or `$JAX_COORDINATOR_ADDRESS`).
    num_processes: number of processes (or `$JAX_NUM_PROCESSES`).
    process_id: this process's index (or `$JAX_PROCESS_ID`).
    auto_detect: let JAX detect the cluster (SLURM, Open MPI, Cloud TPU, ...) when no address
      is given.
    **kwargs: passed to `jax.distributed.initialize` (e.g. `local_device_ids`).

  Returns:
    Whether `jax.distributed` is initialised (True also if it already was).
  """
  if jax.distributed.is_initialized():
    return True
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
  if process_id is None and "JAX_PROCESS_ID" in os.environ:
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if coordinator_address is None and not auto_detect:
    return False
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id, **kwargs)
  return True


def data_mesh(devices: Optional[Sequence[Any]] = None, *, axis: str = DATA_AXIS) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices of all processes) named `axis`."""
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("`devices` must not be empty.")
  return Mesh(np.asarray(devices), (axis,))


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding that keeps a full copy on every device of `mesh`."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, *, axis: str = DATA_AXIS) -> NamedSharding:
  """The sharding that splits the leading axis over the mesh axis `axis`."""
  return NamedSharding(mesh, P(axis))


def replicate(tree, mesh: Mesh):
  """Places every leaf of `tree` (e.g. a `TrainState`) on all devices of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def _check_divisible(tree, n: int, what: str):
  for leaf in jax.tree.leaves(tree):
    if np.ndim(leaf) == 0 or np.shape(leaf)[0] % n:
      raise ValueError(f"Every leaf of {what} needs a leading batch axis divisible by {n} "
                       f"(the number of devices it is split over); got shape {np.shape(leaf)}.")


def process_rows(batch, *, num_processes: Optional[int] = None,
                 process_index: Optional[int] = None):
  """This process's contiguous share of the rows of a global batch (all leaves alike).

  With a batch function that every process evaluates identically (e.g. `epoch_batch_fn` with a
  common seed), `shard_batch(process_rows(batch_fn(t)), mesh)` builds the global batch.
  """
  n = jax.process_count() if num_processes is None else num_processes
  i = jax.process_index() if process_index is None else process_index
  _check_divisible(batch, n, "`batch`")
  return jax.tree.map(lambda a: a[(len(a) // n) * i:(len(a) // n) * (i + 1)], batch)


def shard_batch(batch, mesh: Mesh, *, axis: str = DATA_AXIS):
  """Places a batch on `mesh`, split along the leading axis of every leaf.

  Args:
    batch: pytree of host arrays; on several hosts, this process's rows (`process_rows`).
    mesh: from `data_mesh`.
    axis: the mesh axis to split over.

  Returns:
    The global batch as sharded `jax.Array` values (leading size × number of processes).
  """
  sharding = batch_sharding(mesh, axis=axis)
  local = len(mesh.local_devices)
  _check_divisible(batch, local, "`batch` (per process)")
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)),
                      batch)


def make_data_parallel_step(step: Callable, mesh: Mesh, *, axis: str = DATA_AXIS,
                            donate: bool = True) -> Callable:
  """Compiles `step(state, batch, key) -> (state, metrics)` for data parallelism on `mesh`.

  Args:
    step: the uncompiled step, `make_train_step(loss_fn, optimizer, jit=False)`.
    mesh: from `data_mesh`.
    axis: the mesh axis the batch is split over.
    donate: donate the state buffers; a state that was already donated is then refused with a
      `ValueError` (`train.DonatedStep`) instead of reaching XLA (a SIGSEGV on a CPU mesh).

  Returns:
    The jitted step. Its `state` and `key` are replicated and its `batch` split along the
    leading axis (pass `replicate(state, mesh)` and `shard_batch(batch, mesh)` to avoid
    transfers); the new state and the metrics come back replicated.
  """
  repl, data = replicated(mesh), batch_sharding(mesh, axis=axis)
  jitted = jax.jit(step, in_shardings=(repl, data, repl), out_shardings=(repl, repl),
                   donate_argnums=(0,) if donate else ())
  return DonatedStep(jitted) if donate else jitted


def sharded_batch_fn(batch_fn: Callable[[int], Any], mesh: Mesh, *,
                     axis: str = DATA_AXIS) -> Callable[[int], Any]:
  """Wraps a global `batch_fn(t)` (same on every process) to return sharded global batches."""
  return lambda t: shard_batch(process_rows(batch_fn(t)), mesh, axis=axis)
