"""A tiny study for tests: digits, Grad-CAM, 1 seed, few steps and one weight per method."""

from experiments.study.configs.base import base_config


def get_config(explainer: str = "gradcam"):
  c = base_config(explainer)
  c.seeds = (0,)
  c.model.width = 4
  c.pretrain.steps = 20
  c.finetune.steps = 3
  c.finetune.batch_size = 8
  c.finetune.expo_n_neighbors = 66
  c.weights.idexpo = (0.01,)
  c.weights.expo_fidelity = (1.0,)
  c.weights.expo_stability = (10.0,)
  c.weights.gradient = (1e-4,)
  c.eval.update({"max_val": 32, "max_test": 32, "max_sens": 8, "n_subsets": 10, "batch_size": 32})
  c.selection.etas = (1.0, 2.0)
  c.figures.n_examples = 2
  c.output_dir = "/tmp/study_smoke"
  return c
