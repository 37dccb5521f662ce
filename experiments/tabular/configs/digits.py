"""Image rows: CE vs ID-ExpO with LIME and KernelSHAP on digits 16×16 over 4×4 grid cells.

The data, model and pre-training are those of `make demo` (experiments/demo/configs/default.py:
same seeds, so the same CE-pretrained parameters), and every row is fine-tuned from them. Units
are 16 grid cells of 4×4 pixels; removed cells take the training mean. The training-time
explainers use fewer samples than the evaluated ones (LIME 64 / 500, KernelSHAP 64 / 256) to keep
the run short on a CPU. λ is chosen on (the first `max_val` examples of) the validation split.

  python -m experiments.tabular.main --config=experiments/tabular/configs/digits.py
"""

import ml_collections

from experiments.tabular.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.get_config()
  c.out_dir = "results/tabular/digits"
  c.datasets = "digits16"
  c.units = "grid cells"
  c.model = ml_collections.ConfigDict(dict(name="small_cnn", width=16))
  c.pretrain = ml_collections.ConfigDict(dict(
      steps=800, batch_size=64, seed=0, optimizer="adam", lr=3e-3))
  c.finetune.update(dict(steps=150, batch_size=32, seed=1, optimizer="sgd", lr=1e-2,
                         momentum=0.9, nesterov=True, weight_decay=5e-4))
  c.lams = (0.1, 0.3, 1.0)
  c.explainers.lime.update(dict(distance="cosine", cell=4, train_samples=64, eval_samples=500))
  c.explainers.kernel_shap.update(dict(cell=4, train_samples=64, eval_samples=256))
  c.eval.update(dict(batch_size=120, max_val=240, max_test=0))
  return c
