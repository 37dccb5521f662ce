"""ExpO on tabular regression (Plumb et al., NeurIPS 2020), sized for a 2-core CPU.

The paper's settings: MLP with leaky ReLU, Adam, early stopping on the validation loss; 50/25/25
splits with training-set z-scoring of features and target; regularisers on a batch of 16 beside
the loss batch of 128; ExpO-Fidelity neighbours N(0, 0.5²) with m = max(20, 2D); ExpO-1D-Fidelity
20 samples along one random feature; ExpO-Stability U(±0.05); the weight of a regulariser is
c · (initial loss / initial regulariser) with c from the grid below, chosen on the validation split.
Metrics: LIME (1000 samples) and 5 neighbours at σ = 0.1.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.datasets = ("diabetes", "friedman1", "california_like")
  c.n_samples = 1000  # size of the generated sets (friedman1, california_like)
  c.seeds = (0, 1, 2)  # each seed: its own split, initialisation and batches
  c.methods = ("none", "expo_fidelity", "expo_fidelity_1d", "expo_stability")

  c.model = ml_collections.ConfigDict({"hidden": (64, 64), "leaky_slope": 0.01})
  c.train = ml_collections.ConfigDict({
      "lr": 1e-3, "batch_size": 128, "reg_batch_size": 16, "max_steps": 3000,
      "eval_every": 50, "patience": 8})  # stop after `patience` evaluations without improvement

  c.reg = ml_collections.ConfigDict({
      "c_grid": (0.1, 0.05, 0.025, 0.01, 0.005, 0.001),
      "fidelity_sigma": 0.5, "fidelity_neighbors": 0,  # 0: max(20, 2D)
      "fidelity_1d_neighbors": 20, "stability_radius": 0.05})

  # The explainer (LIME, Gaussian neighbourhood at the training standard deviation = 1 after
  # z-scoring) and ExpO's metrics.
  c.eval = ml_collections.ConfigDict({
      "lime_samples": 1000, "lime_sigma": 1.0, "lime_ridge": 1.0,
      "neighbors": 5, "sigma": 0.1, "chunk": 25})

  # Choice of c on the validation split: the lowest validation value of the method's target
  # metric among the c whose validation MSE is within (1 + mse_tolerance) of the unregularised
  # model's (the lowest validation MSE when none is); never the test split.
  c.select = ml_collections.ConfigDict({
      "mse_tolerance": 0.1, "max_points": 100,
      "metric": {"expo_fidelity": "nf", "expo_fidelity_1d": "nf", "expo_stability": "stability"}})

  c.out_dir = "results/expo"
  c.progress = True
  return c
