"""The ID-ExpO Grad-CAM train step written in plain, vectorised PyTorch: the alternative to ours.

What a researcher would write instead of using this library, from the formulas of SPEC §2 and §4
(Yoshikawa & Iwata, AISTATS 2024; Grad-CAM, Selvaraju et al., ICCV 2017), on the PyTorch copy of
`SmallCNN` (`benchmarks.torch_cnn`, NCHW):

* Grad-CAM for the whole batch: one forward of `features`, `s = Σ_b head(A)[b, y_b]`, one
  `torch.autograd.grad(s, A, create_graph=True)` (second order kept), `α = mean_ij ∂s/∂A`,
  `CAM = ReLU(Σ_f α_f A_f)`, nearest upsampling to the input (units: pixels).
* Soft masks per example: `log_softmax` of the CAM, sort (no gradient), thresholds between the
  `mΔ`-th and `(mΔ+1)`-th values, scale = mean positive gap, `α_m = sigmoid(τ(φ − t_m)/s)`.
* One batched forward of all `B·(2M + 1)` soft images (M insertions, M deletions, the clean image
  for the deletion ratio), `cIns = −mean log p_y(x_ins)`, `cDel = mean[log p_y(x_del) − log p_y(x)]`.
* Loss `CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)`, `loss.backward()`, `torch.optim.SGD` (Nesterov).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from idexpo_jax.metrics.soft_curves import soft_step_counts  # (Δ, M): plain integer arithmetic


def grad_cam_maps(model, x: torch.Tensor, y: torch.Tensor, *, second_order: bool = True
                  ) -> torch.Tensor:
  """Grad-CAM maps `(B, H, W)` of the `TorchSmallCNN` features (after the average pool)."""
  a = model.features(x)  # (B, F, h, w)
  score = model.head(a).gather(1, y[:, None]).sum()
  (grads,) = torch.autograd.grad(score, a, create_graph=second_order)
  alpha = grads.mean(dim=(2, 3), keepdim=True)
  if not second_order:
    alpha = alpha.detach()
  cam = F.relu((alpha * a).sum(1))  # (B, h, w)
  scale_h, scale_w = x.shape[2] // cam.shape[1], x.shape[3] // cam.shape[2]
  return cam.repeat_interleave(scale_h, 1).repeat_interleave(scale_w, 2)


def soft_masks(phi: torch.Tensor, *, n_steps: int, fraction: float, temperature: float = 1.0
               ) -> torch.Tensor:
  """Soft keep-masks `(B, M, U)` of flat attributions `phi (B, U)` (log-softmax first)."""
  phi = torch.log_softmax(phi, dim=1)
  n_units = phi.shape[1]
  delta, m = soft_step_counts(n_units, n_steps, fraction)
  srt = torch.sort(phi.detach(), dim=1, descending=True).values
  idx = torch.arange(1, m + 1, device=phi.device) * delta
  thresholds = 0.5 * (srt[:, idx - 1] + srt[:, idx])  # (B, M)
  gaps = srt[:, :-1] - srt[:, 1:]
  pos = gaps > 0
  n_pos = pos.sum(1).to(phi.dtype)
  mean_gap = torch.where(pos, gaps, torch.zeros_like(gaps)).sum(1) / n_pos.clamp_min(1.0)
  scale = torch.where(n_pos > 0, mean_gap, torch.ones_like(mean_gap))
  return torch.sigmoid(temperature * (phi[:, None, :] - thresholds[:, :, None])
                       / scale[:, None, None])


def idexpo_gradcam_loss(model, x: torch.Tensor, y: torch.Tensor, baseline: torch.Tensor, *,
                        n_steps: int = 64, fraction: float = 0.5, lam: float = 0.01,
                        lam2: float = 1e-4, second_order: bool = True,
                        ce_from_clean_row: bool = False) -> torch.Tensor:
  """`CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)` of a batch `x (B, C, H, W)`, labels `y (B,)`.

  `ce_from_clean_row`: take CE from the clean images of the soft batch (one forward pass fewer,
  the same loss up to float32 rounding) instead of a forward pass of its own.
  """
  b, c, h, w = x.shape
  ce = None if ce_from_clean_row else F.cross_entropy(model(x), y)
  cam = grad_cam_maps(model, x, y, second_order=second_order)  # (B, H, W)
  alpha = soft_masks(cam.reshape(b, h * w), n_steps=n_steps, fraction=fraction)  # (B, M, U)
  m = alpha.shape[1]
  ones = torch.ones(b, 1, h * w, dtype=x.dtype, device=x.device)
  z = torch.cat([alpha, 1.0 - alpha, ones], dim=1).reshape(b, 2 * m + 1, 1, h, w)
  base = baseline.expand(c, h, w)
  soft = base + z * (x[:, None] - base)  # (B, 2M+1, C, H, W)
  logp = torch.log_softmax(model(soft.reshape(-1, c, h, w)), dim=1).reshape(b, 2 * m + 1, -1)
  logp = logp.gather(2, y[:, None, None].expand(b, 2 * m + 1, 1))[..., 0]
  cins = -logp[:, :m].mean(1)
  cdel = (logp[:, m:2 * m] - logp[:, -1:]).mean(1)
  if ce is None:
    ce = -logp[:, -1].mean()
  return ce + lam * (cins + cdel).mean() + lam2 * (cam ** 2).mean()


def make_torch_step(model, *, lr: float = 1e-4, weight_decay: float = 0.0, loss_fn=None,
                    **loss_kwargs):
  """`step(x, y, baseline) -> loss`: one SGD-Nesterov update (momentum 0.9) of `model` in place.

  `loss_fn(model, x, y, baseline, **loss_kwargs)` defaults to `idexpo_gradcam_loss`.
  """
  loss_fn = idexpo_gradcam_loss if loss_fn is None else loss_fn
  opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                        weight_decay=weight_decay)

  def step(x, y, baseline):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y, baseline, **loss_kwargs)
    loss.backward()
    opt.step()
    return loss.detach()

  return step


def forward_backward(model, x: torch.Tensor, y: torch.Tensor) -> None:
  """The floor: forward and backward of the cross-entropy over the images `x`."""
  model.zero_grad(set_to_none=True)
  F.cross_entropy(model(x), y).backward()
