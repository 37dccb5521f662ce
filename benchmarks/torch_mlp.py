"""A PyTorch copy of `idexpo_jax.models.MLP` (ReLU), for captum's explainers on tabular data.

The weights are copied from the JAX params, so both models compute the same function: a JAX
`nnx.Linear` kernel is `(in, out)`, a `torch.nn.Linear` weight is `(out, in)`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _tensor(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, dtype=np.float32))


def torch_mlp(params) -> nn.Sequential:
  """Builds `Linear-ReLU-…-Linear` in eval mode holding the weights of a JAX `MLP` (ReLU).

  Args:
    params: the `nnx.Param` state of an `MLP` (from `models.functional`) or its pure dict
      (`nnx.to_pure_dict`), with `layers` (a list or an int-keyed dict) and `out`.

  Returns:
    The PyTorch model; `model(x)` on `(B, D)` float32 inputs equals the JAX logits up to float32
    rounding.
  """
  from flax import nnx
  if not isinstance(params, dict):
    params = nnx.to_pure_dict(params)
  hidden = params.get("layers", {})
  hidden = [hidden[k] for k in sorted(hidden)] if isinstance(hidden, dict) else list(hidden)
  modules = []
  for layer in [*hidden, params["out"]]:
    kernel = _tensor(layer["kernel"])
    if kernel.ndim != 2:
      raise ValueError(f"`params` must hold 2-D MLP kernels (in, out); got {tuple(kernel.shape)}.")
    linear = nn.Linear(*kernel.shape)
    with torch.no_grad():
      linear.weight.copy_(kernel.T)
      linear.bias.copy_(_tensor(layer["bias"]))
    modules += [linear, nn.ReLU()]
  return nn.Sequential(*modules[:-1]).eval()
