"""A new user's script with Equinox: LIME for every class, Ins/Del, then ID-ExpO + LIME.

Equinox models take one example and their convolutions are channels-first `(C, H, W)`:
`ij.adapters.equinox_predictor(model)` vmaps the model over a batch and transposes the library's
`(B, H, W, C)` images (and, for Grad-CAM, the feature maps back). The trainable arrays are split
from the rest with `eqx.partition`, and optax updates them. Units and baseline are stated once,
on the explainer.

    python examples/equinox_lime.py
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from sklearn.datasets import load_digits

import idexpo_jax as ij


class CNN(eqx.Module):
  """conv-conv features `(F, h, w)`, global-average-pool + linear head (one example, CHW)."""

  conv1: eqx.nn.Conv2d
  conv2: eqx.nn.Conv2d
  out: eqx.nn.Linear

  def __init__(self, num_classes: int, *, key):
    k1, k2, k3 = jax.random.split(key, 3)
    self.conv1 = eqx.nn.Conv2d(1, 8, 3, padding=1, key=k1)
    self.conv2 = eqx.nn.Conv2d(8, 16, 3, padding=1, key=k2)
    self.out = eqx.nn.Linear(16, num_classes, key=k3)

  def features(self, x):
    return jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))

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
  cnn = CNN(10, key=jax.random.key(0))

  def predictor_of(cnn):
    return ij.adapters.equinox_predictor(cnn, features="features", head="head")

  # 1. Explain a batch for every class: (B, K, d) in one jitted call.
  model = predictor_of(cnn)
  phi = ij.explain(lime, model, x[:8], jax.random.key(0), targets="all")

  # 2. Insertion/deletion of the explanations of the predicted class (the ID-ExpO protocol).
  pred = model(x[:8]).argmax(-1)
  scores = ij.InsertionDeletion(lime)(model, x[:8], phi[jnp.arange(8), pred], pred)
  print(f"Equinox: φ {phi.shape}, Ins {float(scores.insertion_mean):.3f}, "
        f"Del {float(scores.deletion_mean):.3f}")

  # 3. Fine-tune with cross-entropy + ID-ExpO on the same explainer (and so the same units).
  penalty = ij.IdExpo(lime, n_steps=4)
  params, static = eqx.partition(cnn, eqx.is_array)

  def loss_fn(params, batch, key):
    pen, aux = penalty(predictor_of(eqx.combine(params, static)), *batch, key)
    # `clean_ce`: the batch's cross-entropy, from the clean inputs the penalty evaluates anyway.
    return aux["clean_ce"] + 0.1 * pen + 1e-4 * aux["attribution_sq"], aux

  optimizer = optax.sgd(1e-2, momentum=0.9)
  train_step = ij.make_train_step(loss_fn, optimizer)
  state = ij.init_train_state(params, optimizer)
  for i in range(steps):
    batch = (x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)])
    state, metrics = train_step(state, batch, jax.random.key(i + 1))
  print(f"Equinox: {steps} ID-ExpO steps, loss {float(metrics['loss']):.3f}")
  return phi, scores, metrics


if __name__ == "__main__":
  main()
