"""`make tabular`: cross-entropy vs ID-ExpO with LIME and with KernelSHAP on tabular data.

Breast cancer (30 features) and wine (13 features), z-scored with training statistics; MLP 50–30;
removed features take the training mean (0 after z-scoring). λ is chosen on the validation split
(`η·Acc + Ins + (1 − Del)`, η = 2, accuracy floor = CE validation accuracy − `accuracy_drop`);
the test split is only evaluated.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.out_dir = "results/tabular"
  c.datasets = "breast_cancer,wine"
  c.units = "features"
  c.data_seed = 0
  c.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(50, 30)))
  c.pretrain = ml_collections.ConfigDict(dict(
      steps=400, batch_size=32, seed=0, optimizer="adam", lr=1e-3))
  # Identical fine-tuning for every method (steps, batches, optimizer) from the CE checkpoint.
  # Soft curves over features: n_steps = number of features (one feature per step; set by the
  # driver when `n_steps` is 0), up to half of them.
  c.finetune = ml_collections.ConfigDict(dict(
      steps=200, batch_size=32, seed=1, optimizer="adam", lr=1e-3, lam=0.0, lam2=1e-4,
      n_steps=0, fraction=0.5, temperature=1.0, deletion="ratio", log_softmax=True,
      chunk_size=None, eval_every=0))
  # ID-ExpO λ grid, chosen on validation (a first grid 0.03..1.0 cost 5 to 30 points of
  # validation accuracy at every λ; see docs/lime_kernelshap.md).
  c.lams = (0.001, 0.003, 0.01, 0.03)
  c.selection = ml_collections.ConfigDict(dict(eta=2.0, accuracy_drop=0.02))
  # Explainers: the training-time explainer uses fewer samples than the evaluated one.
  c.explainers = ml_collections.ConfigDict(dict(
      lime=dict(name="lime", distance="euclidean", kernel_width=None, ridge=1.0,
                train_samples=200, eval_samples=1000),
      kernel_shap=dict(name="kernel_shap", output="prob", paired=True,
                       train_samples=128, eval_samples=512)))
  # Hard Ins/Del over features with step 1: "mean" up to `fraction` (k = 0 excluded) and
  # "trapezoid" over the whole curve.
  c.eval = ml_collections.ConfigDict(dict(fraction=0.5, batch_size=64, max_val=0, max_test=0))
  return c
