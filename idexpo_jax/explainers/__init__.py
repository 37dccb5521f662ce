"""Explainers: configuration objects over the pure functions of their modules.

* `lime.lime` (Ribeiro et al., KDD 2016), `kernel_shap.kernel_shap` (Lundberg & Lee, NeurIPS
  2017), `grad_cam.grad_cam` (Selvaraju et al., ICCV 2017), `gradients` (integrated gradients,
  SmoothGrad, gradient × input, input gradients): `(model, x, target, key, *, options) -> φ (d,)`;
* `base`: their configuration objects `Lime`, `KernelShap`, `GradCam`, ... (`Explainer`);
* `batch.explain`: a batch of explanations in one jitted, vmapped call;
* `local_linear`: ExpO's local affine explainer `LocalLinear` (Plumb et al., NeurIPS 2020), and
  `maple`: MAPLE's tree-weighted local models (Plumb et al., NeurIPS 2018).
"""

from idexpo_jax.explainers import base, batch, grad_cam, gradients, kernel_shap, lime
from idexpo_jax.explainers import local_linear, maple
from idexpo_jax.explainers.base import (Explainer, GradCam, GradientTimesInput, InputGradients,
                                        IntegratedGradients, KernelShap, Lime, SmoothGrad)
from idexpo_jax.explainers.batch import explain
from idexpo_jax.explainers.local_linear import LocalLinear

__all__ = ("Explainer", "Lime", "KernelShap", "GradCam", "IntegratedGradients", "SmoothGrad",
           "GradientTimesInput", "InputGradients", "LocalLinear", "explain")
