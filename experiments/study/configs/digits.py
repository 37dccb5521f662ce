"""scikit-learn digits (8×8×1 images), SmallCNN; `--config=.../digits.py:gradcam|lime|kernel_shap`.

Grad-CAM scores pixels (64 units, 4 px per curve point up to 50%: 8 points, as the ID-ExpO
reference's 64 px on 32×32); LIME/KernelSHAP score 2×2 grid cells (16 units).
"""

from experiments.study.configs.base import base_config


def get_config(explainer: str = "gradcam"):
  c = base_config(explainer)
  c.finetune.steps = 100
  c.finetune.expo_n_neighbors = 80  # > D + 1 = 65 regressors of the affine fit; 2D = 128 is slow
  c.weights.expo_fidelity = (3.0, 10.0, 30.0)
  if explainer != "gradcam":
    c.eval.n_steps = 8  # 16 segments: 2 per point
    c.finetune.n_steps = 8
  return c
