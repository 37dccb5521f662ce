"""A tiny study for tests: 1 seed, a few steps, the smallest shapes that reach every code path.

`get_config("lime")` (digits; also `gradcam`, `kernel_shap`) or `get_config("wine,lime")` (a
tabular set). Image explainers score 4×4 cells of the 8×8 digits (4 units); LIME/KernelSHAP use
fewer samples inside the train step (`finetune.explainer`) than in the evaluation.
"""

from experiments.study.configs import digits, tabular


def get_config(arg: str = "lime"):
  c = tabular.get_config(arg) if "," in arg else digits.get_config(arg)
  c.seeds = (0,)
  if c.model.name == "small_cnn":
    c.model.width = 2
  else:
    c.model.hidden = (8,)
  if c.explainer.name != "gradcam":
    # kernel_shap needs >= 2(d − 1) sampled coalitions (exact enumeration from 2^d − 2).
    c.explainer.n_samples = 32
    c.finetune.explainer = {"n_samples": 24}
    if c.model.name == "small_cnn":
      c.explainer.cell = 4
      c.finetune.n_steps = c.eval.n_steps = 4
  c.pretrain.steps = 4
  for part in (c.pretrain, c.finetune):  # optax's Adam fails under the tests' strict promotion
    part.update({"optimizer": "sgd", "lr": 0.05, "momentum": 0.9})
  c.finetune.steps = 2
  c.finetune.batch_size = 4
  c.finetune.expo_reg_batch = 2
  c.finetune.expo_n_neighbors = 66 if c.model.name == "small_cnn" else None
  c.weights.idexpo = (0.01, 0.1)  # two weights: the compiled step is reused
  c.weights.expo_fidelity = (1.0,)
  c.weights.expo_stability = (10.0,)
  c.weights.gradient = (1e-4,)
  c.eval.update({"max_val": 8, "max_test": 8, "max_sens": 4, "n_subsets": 4, "batch_size": 8})
  c.selection.etas = (1.0, 2.0)
  c.figures.n_examples = 2
  c.output_dir = "/tmp/study_smoke"
  return c
