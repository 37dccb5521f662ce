"""The jitted optax train step.

`loss_fn(params, batch, key) -> (loss, aux)` is any sum of this library's terms; the step computes
its gradient, applies the optax update and returns the new state with the metrics. The state is
donated, so parameters and optimizer state are updated in place on accelerators.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


class TrainState(NamedTuple):
  """Everything a step updates. `model_state` holds non-trainable variables (may be empty)."""

  step: Array
  params: Any
  opt_state: Any
  model_state: Any = ()


#: Metric names `make_train_step` writes itself; an `aux` entry of the same name is refused.
RESERVED_METRICS = ("loss", "grad_norm")


def _own_copy(tree):
  """`tree` with every `jax.Array` leaf copied to new buffers of the same sharding."""
  return jax.tree_util.tree_map(lambda x: jnp.copy(x) if isinstance(x, jax.Array) else x, tree)


def init_train_state(params, optimizer: optax.GradientTransformation, model_state=()) -> TrainState:
  """A fresh `TrainState` at step 0 that owns its buffers.

  `params` and `model_state` are copied, so a donating step (`make_train_step(donate=True)`)
  consumes the state's buffers, never the caller's: `params` stays valid and unchanged.

  Args:
    params: the trainable parameters (a pytree of arrays).
    optimizer: an optax transformation; its state is initialised from the copied parameters.
    model_state: non-trainable variables (e.g. BatchNorm statistics; may be empty).

  Returns:
    `TrainState(step=0, params, opt_state, model_state)`.
  """
  params, model_state = _own_copy(params), _own_copy(model_state)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params), model_state=model_state)


def make_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation, *,
                    stateful: bool = False, donate: bool = True, jit: bool = True) -> Callable:
  """Builds `train_step(state, batch, key) -> (state, metrics)`.

  Args:
    loss_fn: `loss_fn(params, batch, key) -> (loss, aux)`; with `stateful=True`,
      `loss_fn(params, model_state, batch, key) -> (loss, (aux, new_model_state))` (e.g. to
      update BatchNorm statistics during pre-training).
    optimizer: an optax transformation.
    stateful: see `loss_fn`.
    donate: donate the state buffers to the step; the step then refuses (`ValueError`) a state
      that was already donated (`DonatedStep`).
    jit: compile the step with `jax.jit` (set False to wrap it in your own `jit`/`shard_map`).

  Returns:
    The step. `metrics` holds `loss`, `grad_norm` and every entry of `aux`.

  Raises:
    ValueError: when the step is traced (first call), naming the key, if `aux` (a dict) has an
      entry named like a metric the step writes itself (`RESERVED_METRICS`: `loss`,
      `grad_norm`), which would overwrite the reported loss or gradient norm; rename the entry.
  """

  def step(state: TrainState, batch, key):
    if stateful:
      (loss, (aux, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          state.params, state.model_state, batch, key)
    else:
      (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
      model_state = state.model_state
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    clash = sorted(set(RESERVED_METRICS) & set(aux))
    if clash:
      raise ValueError(f"The `aux` dict of `loss_fn` has the entries {clash}, names of metrics "
                       f"the train step writes itself ({list(RESERVED_METRICS)}): they would "
                       f"overwrite them. Rename them in `loss_fn` (e.g. 'ce_loss').")
    metrics = {"loss": loss, "grad_norm": optax.tree_utils.tree_norm(grads), **aux}
    return TrainState(state.step + 1, params, opt_state, model_state), metrics

  if not jit:
    return step
  jitted = jax.jit(step, donate_argnums=(0,) if donate else ())
  return DonatedStep(jitted) if donate else jitted


def check_not_donated(state, name: str = "state") -> None:
  """Raises `ValueError` if a leaf of `state` is a `jax.Array` whose buffers were deleted.

  A state donated to a step is consumed: its buffers are deleted (or reused in place). Passing
  it again would feed deleted buffers to XLA, which raises an obscure error on one device and
  crashes the process (SIGSEGV) on a CPU mesh in JAX 0.10.
  """
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    if isinstance(leaf, jax.Array) and leaf.is_deleted():
      raise ValueError(
          f"`{name}` was already donated to a step (leaf {jax.tree_util.keystr(path)} is "
          f"deleted): pass the state that step returned, `state, metrics = step(state, ...)`, "
          f"or build the step with donate=False to reuse an input state.")


class DonatedStep:
  """A jitted step that donates its first argument and refuses an already donated state.

  Calls check `check_not_donated(state)` (a host-side look at the leaves, no device work) and
  then run the jitted function; every other attribute (`lower`, `trace`, ...) is the jitted
  function's.
  """

  def __init__(self, jitted: Callable):
    self._jitted = jitted
    functools.update_wrapper(self, jitted)

  def __call__(self, state, *args, **kwargs):
    check_not_donated(state)
    return self._jitted(state, *args, **kwargs)

  def __getattr__(self, name):
    return getattr(self._jitted, name)
