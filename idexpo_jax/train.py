"""The jitted optax train step (SPEC §7).

`loss_fn(params, batch, key) -> (loss, aux)` is any sum of this library's terms; the step computes
its gradient, applies the optax update and returns the new state with the metrics. The state is
donated, so parameters and optimizer state are updated in place on accelerators.
"""

from __future__ import annotations

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


def init_train_state(params, optimizer: optax.GradientTransformation, model_state=()) -> TrainState:
  """A fresh `TrainState` at step 0."""
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
    donate: donate the state buffers to the step.
    jit: compile the step with `jax.jit` (set False to wrap it in your own `jit`/`shard_map`).

  Returns:
    The step. `metrics` holds `loss`, `grad_norm` and every entry of `aux`.
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
    metrics = {"loss": loss, "grad_norm": optax.tree_utils.tree_norm(grads), **aux}
    return TrainState(state.step + 1, params, opt_state, model_state), metrics

  if not jit:
    return step
  return jax.jit(step, donate_argnums=(0,) if donate else ())
