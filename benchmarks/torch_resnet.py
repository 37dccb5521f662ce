"""A PyTorch copy of `idexpo_jax.models.ResNet18` and the ID-ExpO Grad-CAM step on it, two ways.

The copy has the architecture of `ResNet18` (He et al., 2016; CIFAR variant: 3×3 stem, no
max-pool, stages of 64/128/256/512 channels, projection shortcuts) in NCHW, with the weights and
BatchNorm statistics copied from the JAX model (eval mode: frozen statistics, as in fine-tuning).
Strided 3×3 convolutions pad like JAX's "SAME" (0 before, 1 after on even maps), which differs
from PyTorch's symmetric `padding=1`.

Two steps of `CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)` (Yoshikawa & Iwata, AISTATS 2024; Grad-CAM,
Selvaraju et al., ICCV 2017), written from the paper's description:

* `loop`: the CAMs one example at a time (forward of the example's features and head, the
  gradient of its logit, the channel weights detached, i.e. first-order Grad-CAM), then one batched
  forward of all soft images; CE and the clean log-probability of the deletion ratio from the
  per-example logits. This is how the ID-ExpO authors' step computes it.
* `vectorised`: `benchmarks.torch_idexpo.idexpo_gradcam_loss` (one batched Grad-CAM with the
  second-order term kept, one batched forward of all soft images and the clean ones), the same
  algorithm as our step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.torch_idexpo import soft_masks


class SameConv(nn.Conv2d):
  """`nn.Conv2d` without bias, padded like JAX's "SAME" (asymmetric at stride 2)."""

  def __init__(self, cin: int, cout: int, k: int, stride: int):
    super().__init__(cin, cout, k, stride=stride, padding=0, bias=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    k, s = self.kernel_size[0], self.stride[0]
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad order: last dim first
      out = -(-n // s)
      total = max((out - 1) * s + k - n, 0)
      pads += [total // 2, total - total // 2]
    if any(pads):
      x = F.pad(x, pads)
    return F.conv2d(x, self.weight, None, self.stride)


class TorchBasicBlock(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = SameConv(cin, cout, 3, stride)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = SameConv(cout, cout, 3, 1)
    self.bn2 = nn.BatchNorm2d(cout)
    self.proj = SameConv(cin, cout, 1, stride) if stride != 1 or cin != cout else None
    self.proj_bn = nn.BatchNorm2d(cout) if self.proj is not None else None

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    short = x if self.proj is None else self.proj_bn(self.proj(x))
    return F.relu(y + short)


class TorchResNet18(nn.Module):
  """`ResNet18` in PyTorch (NCHW), with `features` (up to `feature_stage`) and `head`."""

  def __init__(self, in_channels=3, num_classes=10, *, width=64, feature_stage=2, stem_stride=1):
    super().__init__()
    self.stem = SameConv(in_channels, width, 3, stem_stride)
    self.stem_bn = nn.BatchNorm2d(width)
    stages, cin = [], width
    for i, mult in enumerate((1, 2, 4, 8)):
      cout = width * mult
      stages.append(nn.ModuleList([TorchBasicBlock(cin, cout, 1 if i == 0 else 2),
                                   TorchBasicBlock(cout, cout, 1)]))
      cin = cout
    self.stages = nn.ModuleList(stages)
    self.fc = nn.Linear(cin, num_classes)
    self.feature_stage = feature_stage

  def features(self, x):
    x = F.relu(self.stem_bn(self.stem(x)))
    for stage in self.stages[:self.feature_stage]:
      for block in stage:
        x = block(x)
    return x

  def head(self, a):
    for stage in self.stages[self.feature_stage:]:
      for block in stage:
        a = block(a)
    return self.fc(a.mean(dim=(2, 3)))

  def forward(self, x):
    return self.head(self.features(x))


def _t(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, dtype=np.float32))


def _copy_bn(bn: nn.BatchNorm2d, params: dict, stats: dict) -> None:
  bn.weight.copy_(_t(params["scale"]))
  bn.bias.copy_(_t(params["bias"]))
  bn.running_mean.copy_(_t(stats["mean"]))
  bn.running_var.copy_(_t(stats["var"]))
  bn.eps = 1e-5  # flax's default epsilon, as PyTorch's


def torch_resnet18(model) -> TorchResNet18:
  """A `TorchResNet18` in eval mode holding the weights and statistics of a JAX `ResNet18`."""
  from flax import nnx
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
  kh, kw, cin, width = np.shape(params["stem"]["kernel"])
  num_classes = np.shape(params["fc"]["kernel"])[1]
  stem_stride = model.stem.strides if isinstance(model.stem.strides, int) else model.stem.strides[0]
  out = TorchResNet18(cin, num_classes, width=width, feature_stage=model.feature_stage,
                      stem_stride=stem_stride)

  def conv(dst, src):
    dst.weight.copy_(_t(src["kernel"]).permute(3, 2, 0, 1))  # HWIO -> OIHW

  with torch.no_grad():
    conv(out.stem, params["stem"])
    _copy_bn(out.stem_bn, params["stem_bn"], stats["stem_bn"])
    for i, stage in enumerate(out.stages):
      for j, block in enumerate(stage):
        p, s = params["stages"][i][j], stats["stages"][i][j]
        conv(block.conv1, p["conv1"])
        conv(block.conv2, p["conv2"])
        _copy_bn(block.bn1, p["bn1"], s["bn1"])
        _copy_bn(block.bn2, p["bn2"], s["bn2"])
        if block.proj is not None:
          conv(block.proj, p["proj"])
          _copy_bn(block.proj_bn, p["proj_bn"], s["proj_bn"])
    out.fc.weight.copy_(_t(params["fc"]["kernel"]).T)
    out.fc.bias.copy_(_t(params["fc"]["bias"]))
  return out.eval()


def _upsample(cam: torch.Tensor, h: int, w: int) -> torch.Tensor:
  return cam.repeat_interleave(h // cam.shape[-2], -2).repeat_interleave(w // cam.shape[-1], -1)


def idexpo_gradcam_loss_loop(model, x: torch.Tensor, y: torch.Tensor, baseline: torch.Tensor, *,
                             n_steps: int = 64, fraction: float = 0.5, lam: float = 0.01,
                             lam2: float = 1e-4) -> torch.Tensor:
  """The loss with first-order Grad-CAM computed one example at a time (the authors' way)."""
  b, c, h, w = x.shape
  cams, logits = [], []
  for i in range(b):
    a = model.features(x[i:i + 1])
    out = model.head(a)
    (g,) = torch.autograd.grad(out[0, y[i]], a, retain_graph=True)
    alpha = g.mean(dim=(2, 3), keepdim=True)  # detached: first order
    cams.append(_upsample(F.relu((alpha * a).sum(1)), h, w))
    logits.append(out)
  cam = torch.cat(cams)  # (B, H, W)
  clean = torch.log_softmax(torch.cat(logits), dim=1).gather(1, y[:, None])[:, 0]
  alpha = soft_masks(cam.reshape(b, h * w), n_steps=n_steps, fraction=fraction)  # (B, M, U)
  m = alpha.shape[1]
  z = torch.cat([alpha, 1.0 - alpha], dim=1).reshape(b, 2 * m, 1, h, w)
  base = baseline.expand(c, h, w)
  soft = base + z * (x[:, None] - base)
  logp = torch.log_softmax(model(soft.reshape(-1, c, h, w)), dim=1).reshape(b, 2 * m, -1)
  logp = logp.gather(2, y[:, None, None].expand(b, 2 * m, 1))[..., 0]
  cins = -logp[:, :m].mean(1)
  cdel = (logp[:, m:] - clean[:, None]).mean(1)
  return -clean.mean() + lam * (cins + cdel).mean() + lam2 * (cam ** 2).mean()


def make_resnet_step(model, variant: str, *, lr: float = 1e-4, weight_decay: float = 5e-4,
                     **loss_kwargs):
  """`step(x, y, baseline) -> loss`: one SGD-Nesterov update (momentum 0.9) of `model` in place.

  `variant`: "loop" (`idexpo_gradcam_loss_loop`) or "vectorised"
  (`torch_idexpo.idexpo_gradcam_loss`, second order, CE from the clean row of the soft batch).
  """
  from benchmarks.torch_idexpo import idexpo_gradcam_loss, make_torch_step
  if variant == "loop":
    loss_fn = idexpo_gradcam_loss_loop
  elif variant == "vectorised":
    loss_fn = lambda *a, **k: idexpo_gradcam_loss(*a, ce_from_clean_row=True, **k)
  else:
    raise ValueError(f"`variant` must be 'loop' or 'vectorised'; got {variant!r}.")
  return make_torch_step(model, lr=lr, weight_decay=weight_decay, loss_fn=loss_fn, **loss_kwargs)
