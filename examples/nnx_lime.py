"""A new user's script with Flax NNX: LIME for every class, Ins/Del, then ID-ExpO + LIME.

The units (4×4 = 16 cells of 2×2 pixels on 8×8 digits) and the baseline are stated once, on the
explainer; `ij.explain`, `ij.InsertionDeletion` and the ID-ExpO penalty `ij.IdExpo` (Yoshikawa &
Iwata, AISTATS 2024) read them from it. Tiny sizes: a few seconds on a CPU (an untrained model;
fine-tune a trained one in practice).

    python examples/nnx_lime.py
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from sklearn.datasets import load_digits

import idexpo_jax as ij
from idexpo_jax import models


def load(n=64):
  digits = load_digits()
  x = jnp.asarray(digits.images[:n, :, :, None] / 16.0, jnp.float32)  # (N, 8, 8, 1), NHWC
  return x, jnp.asarray(digits.target[:n], jnp.int32)


def main(steps: int = 3):
  x, y = load()
  # The units (16 cells of 2×2 pixels) and the baseline, stated once on the explainer.
  lime = ij.Lime(segments=ij.grid_segments(8, 8, 2), baseline=0.0, n_samples=64)
  # Built inside nnx.jit: one compiled initialisation instead of one per eager operation.
  model = nnx.jit(lambda: models.SmallCNN(in_channels=1, num_classes=10, width=8,
                                          rngs=nnx.Rngs(0)))()

  # 1. Explain a batch for every class: (B, K, d) in one jitted call.
  phi = ij.explain(lime, model, x[:8], jax.random.key(0), targets="all")

  # 2. Insertion/deletion of the explanations of the predicted class (the ID-ExpO protocol).
  pred = model(x[:8]).argmax(-1)
  scores = ij.InsertionDeletion(lime)(model, x[:8], phi[jnp.arange(8), pred], pred)
  print(f"NNX: φ {phi.shape}, Ins {float(scores.insertion_mean):.3f}, "
        f"Del {float(scores.deletion_mean):.3f}")

  # 3. Fine-tune with cross-entropy + ID-ExpO on the same explainer (and so the same units).
  penalty = ij.IdExpo(lime, n_steps=4)
  graphdef, params, rest = models.functional(model)

  def loss_fn(params, batch, key):
    pen, aux = penalty(models.predictor_fn(graphdef, params, rest), *batch, key)
    # `clean_ce`: the batch's cross-entropy, from the clean inputs the penalty evaluates anyway.
    return aux["clean_ce"] + 0.1 * pen + 1e-4 * aux["attribution_sq"], aux

  optimizer = optax.sgd(1e-2, momentum=0.9)
  train_step = ij.make_train_step(loss_fn, optimizer)
  state = ij.init_train_state(params, optimizer)
  for i in range(steps):
    batch = (x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)])
    state, metrics = train_step(state, batch, jax.random.key(i + 1))
  print(f"NNX: {steps} ID-ExpO steps, loss {float(metrics['loss']):.3f}")
  return phi, scores, metrics


if __name__ == "__main__":
  main()
