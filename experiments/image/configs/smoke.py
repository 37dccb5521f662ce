"""The image configs shrunk to run on a CPU in seconds, e.g. under `tfds.testing.mock_data`.

`--config=experiments/image/configs/smoke.py:cifar10,gradcam` (or `stl10,lime`, ...): the same
pipeline as the full config (tfds loader, ResNet-18 with a stride-2 stem, CE pre-training with
BatchNorm updates, CE and ID-ExpO fine-tuning, validation-only selection, Figures 2–5) with
width 4, 64 training images, 16 held out for validation, a few steps and small explainer budgets.
"""

import importlib


def get_config(arg: str = "cifar10,gradcam"):
  name, explainer = arg.split(",")
  c = importlib.import_module(f"experiments.image.configs.{name}").get_config(explainer)
  c.data.update({"val_size": 16, "max_train": 64, "max_test": 16})
  c.model.width = 4
  if explainer != "gradcam":
    # KernelSHAP needs at least 2(d − 1) = 126 paired samples on the 64 grid cells.
    c.explainer.update({"n_samples": 32 if explainer == "lime" else 128, "chunk_size": None})
  c.pretrain.steps = 4
  c.pretrain.batch_size = 16
  c.finetune.update({"steps": 2, "batch_size": 4, "n_steps": 8})
  c.eval.update({"max_val": 16, "max_test": 16, "max_sens": 4, "n_subsets": 4, "batch_size": 16})
  c.selection.etas = (2.0,)
  c.figures.n_examples = 2
  c.output_dir = "/tmp/image_smoke"
  return c
