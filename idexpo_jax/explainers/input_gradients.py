"""Input gradients, the explanation that RRR constrains (Ross et al., IJCAI 2017; SPEC §4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from idexpo_jax.core.predictor import as_logits_fn, promote_input

Array = jax.Array


def input_gradients(logits_fn, x: Array, *, reduce: str = "sum_log_prob") -> Array:
  """Gradient of a scalar summary of the model's output w.r.t. one input `x`.

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor`.
    x: one example, no batch axis (integer `x` is promoted to the model's float dtype).
    reduce: "sum_log_prob" — `∂/∂x Σ_k log p_k(x)` (the RRR penalty); "max_prob" —
      `∂/∂x max_k p_k(x)` (the find-another-explanation mask).

  Both summaries take a softmax over the logits, so the model needs `K >= 2` outputs (with one,
  both are constant and the gradient would be 0): one output raises ValueError.

  Returns:
    An array of the shape of `x`.
  """
  x = promote_input(logits_fn, x)
  logits_fn = as_logits_fn(logits_fn)
  if reduce not in ("sum_log_prob", "max_prob"):
    raise ValueError(f"`reduce` must be 'sum_log_prob' or 'max_prob'; got {reduce!r}.")

  def summary(xi):
    logits = logits_fn(xi[None])
    if logits.ndim != 2 or logits.shape[0] != 1:
      raise ValueError(f"`x` must be one example without batch axis (the model maps x[None] to "
                       f"logits (1, K)); got x {tuple(x.shape)} giving logits "
                       f"{tuple(logits.shape)}.")
    if logits.shape[1] < 2:
      raise ValueError(f"`reduce={reduce!r}` takes a softmax over the logits, which needs K >= 2 "
                       f"outputs; the model returns {tuple(logits.shape)} (a one-output model's "
                       f"softmax is constant, so its gradient would be 0).")
    logits = logits[0]
    if reduce == "sum_log_prob":
      return jax.nn.log_softmax(logits).sum()
    if reduce == "max_prob":
      return jax.nn.softmax(logits).max()
    raise ValueError(f"`reduce` must be 'sum_log_prob' or 'max_prob'; got {reduce!r}.")

  return jax.grad(summary)(x)
