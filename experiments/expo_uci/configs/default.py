"""ExpO's UCI protocol (Plumb et al., NeurIPS 2020) on autompgs and housing (REFERENCES.md, ExpO).

Everything the references state is used as stated; the choices they leave open are marked
"(ours)".
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.datasets = ("autompgs", "housing")
  c.trials = 5                         # (paper: 20) fresh split and initialisation per trial
  c.methods = ("none", "expo_fidelity", "expo_fidelity_1d", "expo_stability")
  c.out_dir = "results/expo_uci"
  c.machine = "2-core AMD EPYC shared with other jobs, CPU only"

  c.model = ml_collections.ConfigDict()
  c.model.hidden = ml_collections.ConfigDict({"autompgs": (200, 200), "housing": (100,) * 5})
  c.model.leaky_slope = 0.2            # (ours) TensorFlow's tf.nn.leaky_relu default
  c.model.init = "xavier"              # Glorot uniform kernels, zero biases

  c.train = ml_collections.ConfigDict()
  c.train.lr = 1e-3                    # Adam
  c.train.batch_size = 128             # the last batch of an epoch holds the remaining rows
  c.train.reg_batch_size = 16          # regulariser on 16 rows of each loss batch
  c.train.patience = 50                # epochs without a lower validation loss
  c.train.min_epochs = 50
  c.train.max_epochs = 1000            # (ours) cap; reported when reached
  c.train.chunk_epochs = 25            # epochs per compiled call (stopping is checked between)
  # (ours, for the CPU) the regulariser term of the validation loss on a fixed subset of this
  # many validation rows (0: all); the MSE term always uses every validation row.
  c.train.val_reg_rows = 16

  c.reg = ml_collections.ConfigDict()
  c.reg.fidelity_sigma = 0.5
  c.reg.fidelity_neighbors = 0         # 0: max(20, 2D)
  c.reg.fidelity_1d_neighbors = 20
  c.reg.stability_radius = 0.05
  c.reg.c_grid = (0.1, 0.05, 0.025, 0.01, 0.005, 0.001)

  # (ours) choice of c per trial on the validation split: among the c whose validation MSE is at
  # most (1 + mse_tolerance) × the None model's of the same trial, the lowest validation LIME NF
  # (LIME stability for ExpO-Stability), measured on the first `val_points` validation rows with
  # the paper's LIME convention; the lowest validation MSE if none qualifies.
  c.select = ml_collections.ConfigDict()
  c.select.mse_tolerance = 0.1
  c.select.val_points = 50
  # Also evaluate, on test, the model trained with the reference's final c (REFERENCES.md; it was
  # chosen there on test MSE): reported beside our choice as `at_paper_c`, never used to choose.
  c.select.report_paper_c = True

  c.eval = ml_collections.ConfigDict()
  c.eval.sigma = 0.1                   # metric neighbourhood
  c.eval.neighbors = 5
  c.eval.lime_samples = 1000
  c.eval.lime_ridge = 1.0              # lime's Ridge(alpha=1)
  c.eval.instance_stability = True     # LIME-around-x stability (5 re-explanations per point)
  c.eval.chunk = 16                    # test points per compiled batch
  c.eval.maple_trees = 200
  c.eval.maple_min_samples_leaf = 10
  c.eval.maple_max_features = 0.5
  c.eval.maple_ridge = 1e-3
  return c
