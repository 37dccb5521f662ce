"""A new user's script with Flax Linen: LIME for every class, Ins/Del, then ID-ExpO + LIME.

Linen modules are applied with their variables: `ij.adapters.linen_predictor(module, variables,
features="features", head="head")` gives the library's `Predictor` (Linen convolutions are NHWC,
the library's convention). The units and baseline are stated once, on the explainer, and
`ij.explain`, `ij.InsertionDeletion` and `ij.IdExpo` (Yoshikawa & Iwata, AISTATS 2024) read them.

    python examples/linen_lime.py
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from sklearn.datasets import load_digits

import idexpo_jax as ij


class CNN(nn.Module):
  """conv-conv features, global-average-pool + dense head."""

  num_classes: int = 10

  def setup(self):
    self.conv1 = nn.Conv(8, (3, 3))
    self.conv2 = nn.Conv(16, (3, 3))
    self.out = nn.Dense(self.num_classes)

  def features(self, x):
    return nn.relu(self.conv2(nn.relu(self.conv1(x))))

  def head(self, a):
    return self.out(a.mean(axis=(1, 2)))

  def __call__(self, x):
    return self.head(self.features(x))


def load(n=64):
  digits = load_digits()
  x = jnp.asarray(digits.images[:n, :, :, None] / 16.0, jnp.float32)  # (N, 8, 8, 1), NHWC
  return x, jnp.asarray(digits.target[:n], jnp.int32)


def main(steps: int = 3):
  x, y = load()
  # The units (16 cells of 2×2 pixels) and the baseline, stated once on the explainer.
  lime = ij.Lime(segments=ij.grid_segments(8, 8, 2), baseline=0.0, n_samples=64)
  module = CNN()
  params = module.init(jax.random.key(0), x[:1])["params"]

  def predictor_of(params):
    return ij.adapters.linen_predictor(module, {"params": params}, features="features",
                                       head="head")

  # 1. Explain a batch for every class: (B, K, d) in one jitted call.
  model = predictor_of(params)
  phi = ij.explain(lime, model, x[:8], jax.random.key(0), targets="all")

  # 2. Insertion/deletion of the explanations of the predicted class (the ID-ExpO protocol).
  pred = model(x[:8]).argmax(-1)
  scores = ij.InsertionDeletion(lime)(model, x[:8], phi[jnp.arange(8), pred], pred)
  print(f"Linen: φ {phi.shape}, Ins {float(scores.insertion_mean):.3f}, "
        f"Del {float(scores.deletion_mean):.3f}")

  # 3. Fine-tune with cross-entropy + ID-ExpO on the same explainer (and so the same units).
  penalty = ij.IdExpo(lime, n_steps=4)

  def loss_fn(params, batch, key):
    pen, aux = penalty(predictor_of(params), *batch, key)
    # `clean_ce`: the batch's cross-entropy, from the clean inputs the penalty evaluates anyway.
    return aux["clean_ce"] + 0.1 * pen + 1e-4 * aux["attribution_sq"], aux

  optimizer = optax.sgd(1e-2, momentum=0.9)
  train_step = ij.make_train_step(loss_fn, optimizer)
  state = ij.init_train_state(params, optimizer)
  for i in range(steps):
    batch = (x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)])
    state, metrics = train_step(state, batch, jax.random.key(i + 1))
  print(f"Linen: {steps} ID-ExpO steps, loss {float(metrics['loss']):.3f}")
  return phi, scores, metrics


if __name__ == "__main__":
  main()
