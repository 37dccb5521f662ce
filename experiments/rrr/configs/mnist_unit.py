"""Decoy MNIST as `mnist.py` but with pixels in [0, 1] instead of the paper's raw 0–255.

Everything else is the paper's (N(0, 0.1²) init, summed loss, 64 epochs, fixed batches). Input
gradients are 255× larger in these units, so the RRR term of the same function is 255² = 65,025×
larger: λ₁ = 1000 on raw pixels corresponds to λ₁ = 1000/255² ≈ 0.0154 here (the `penalty` model;
the sweep covers both).
"""

from experiments.rrr.configs import mnist


def get_config():
  c = mnist.get_config()
  c.raw = False
  c.lam = 1000.0 / 255.0 ** 2
  c.repeat_mean_scaling = False
  c.out_dir = "results/rrr_mnist/unit_pixels"
  return c
