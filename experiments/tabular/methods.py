"""Registers LIME and KernelSHAP (and the ID-ExpO methods that train with them) by name.

Explainers `lime` and `kernel_shap` are `segment_explainer`s: units are grid cells of `cfg.cell`
pixels on images and the features on tabular data. Methods `idexpo_lime` and `idexpo_kernelshap`
are ID-ExpO (Yoshikawa & Iwata, AISTATS 2024) with those explainers. Idempotent; another module
that registered the same explainer names first is left as it is.
"""

from experiments.common import methods as registry
from idexpo_jax.kernel_shap import kernel_shap
from idexpo_jax.lime import lime

LIME_OPTIONS = ("n_samples", "kernel_width", "distance", "ridge", "chunk_size")
KERNEL_SHAP_OPTIONS = ("n_samples", "paired", "output", "chunk_size")


def register() -> None:
  """Adds `lime`, `kernel_shap`, `idexpo_lime` and `idexpo_kernelshap` to the registry."""
  if "lime" not in registry.EXPLAINERS:
    registry.register_explainer("lime", registry.segment_explainer(lime, *LIME_OPTIONS))
  if "kernel_shap" not in registry.EXPLAINERS:
    registry.register_explainer("kernel_shap",
                                registry.segment_explainer(kernel_shap, *KERNEL_SHAP_OPTIONS))
  registry.register_method("idexpo_lime", registry.Method(explainer="lime"))
  registry.register_method("idexpo_kernelshap", registry.Method(explainer="kernel_shap"))
