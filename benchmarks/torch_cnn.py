"""A PyTorch copy of `idexpo_jax.models.SmallCNN`, for captum's explainers.

The weights are copied from the JAX params, so both models compute the same function: the JAX
model is NHWC with HWIO kernels and "SAME" padding, the copy is NCHW with OIHW weights and
padding 1 (the same zero padding for 3×3 kernels at stride 1). Inputs to the copy are NCHW.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class TorchSmallCNN(nn.Module):
  """conv-conv-avgpool features, conv-GAP-linear head: `SmallCNN` in PyTorch (NCHW)."""

  def __init__(self, in_channels: int, num_classes: int, *, width: int = 32):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
    self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
    self.conv3 = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
    self.out = nn.Linear(2 * width, num_classes)

  def features(self, x: torch.Tensor) -> torch.Tensor:
    """conv-conv-avgpool: the maps Grad-CAM reads, `(B, 2·width, H/2, W/2)`."""
    return F.avg_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2, 2)

  def head(self, a: torch.Tensor) -> torch.Tensor:
    """conv-ReLU-GAP-linear on the feature maps: logits `(B, K)`."""
    return self.out(F.relu(self.conv3(a)).mean(dim=(2, 3)))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.head(self.features(x))


def _tensor(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, dtype=np.float32))


def torch_small_cnn(params) -> TorchSmallCNN:
  """Builds a `TorchSmallCNN` in eval mode holding the weights of a JAX `SmallCNN`.

  Args:
    params: the `nnx.Param` state of a `SmallCNN` (from `models.functional`) or its pure dict
      (`nnx.to_pure_dict`).

  Returns:
    The PyTorch model; `model(x.permute(0, 3, 1, 2))` equals the JAX logits up to float32
    rounding.
  """
  from flax import nnx
  if not isinstance(params, dict):
    params = nnx.to_pure_dict(params)
  kh, kw, cin, width = np.shape(params["conv1"]["kernel"])
  if (kh, kw) != (3, 3):
    raise ValueError(f"`params` must hold 3×3 SmallCNN kernels; got conv1 {(kh, kw, cin, width)}.")
  num_classes = np.shape(params["out"]["kernel"])[1]
  model = TorchSmallCNN(cin, num_classes, width=width)
  with torch.no_grad():
    for name in ("conv1", "conv2", "conv3"):
      conv = getattr(model, name)
      conv.weight.copy_(_tensor(params[name]["kernel"]).permute(3, 2, 0, 1))  # HWIO -> OIHW
      conv.bias.copy_(_tensor(params[name]["bias"]))
    model.out.weight.copy_(_tensor(params["out"]["kernel"]).T)
    model.out.bias.copy_(_tensor(params["out"]["bias"]))
  return model.eval()
