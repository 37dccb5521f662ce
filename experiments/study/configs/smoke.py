"""A tiny study for tests: 1 seed, few steps, one weight per method.

`get_config("gradcam")` (digits) or `get_config("wine,lime")` (a tabular set with an explainer).
"""

from experiments.study.configs import digits, tabular


def get_config(arg: str = "gradcam"):
  c = tabular.get_config(arg) if "," in arg else digits.get_config(arg)
  c.seeds = (0,)
  if c.model.name == "small_cnn":
    c.model.width = 4
  if c.explainer.name != "gradcam":
    c.explainer.n_samples = 64  # kernel_shap returns NaN with 16 samples for 13 units
  c.pretrain.steps = 20
  for part in (c.pretrain, c.finetune):  # optax's Adam fails under the tests' strict promotion
    part.update({"optimizer": "sgd", "lr": 0.05, "momentum": 0.9})
  c.finetune.steps = 3
  c.finetune.batch_size = 8
  c.finetune.expo_n_neighbors = 66 if c.model.name == "small_cnn" else None
  c.weights.idexpo = (0.01,)
  c.weights.expo_fidelity = (1.0,)
  c.weights.expo_stability = (10.0,)
  c.weights.gradient = (1e-4,)
  c.eval.update({"max_val": 32, "max_test": 32, "max_sens": 8, "n_subsets": 10, "batch_size": 32})
  c.selection.etas = (1.0, 2.0)
  c.figures.n_examples = 2
  c.output_dir = "/tmp/study_smoke"
  return c
