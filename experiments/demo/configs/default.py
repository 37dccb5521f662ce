"""`make demo`: Grad-CAM ID-ExpO vs cross-entropy fine-tuning of a small CNN on digits (16×16).

Hyper-parameters of the fine-tuning (λ, temperature, steps, learning rate) were chosen on the
validation split (see docs/demo.md); the test split is only evaluated.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.out_dir = "results/demo"
  c.methods = "ce,idexpo_gradcam"  # fine-tuned from the same pre-trained parameters

  c.data = ml_collections.ConfigDict(dict(size=16, seed=0))
  c.model = ml_collections.ConfigDict(dict(name="small_cnn", width=16))

  # Cross-entropy pre-training (Adam; BatchNorm-free model).
  c.pretrain = ml_collections.ConfigDict(dict(
      steps=800, batch_size=64, seed=0, optimizer="adam", lr=3e-3))

  # Fine-tuning, identical for every method (same steps, batches and optimizer); the ID-ExpO
  # terms `lam·mean(cIns + cDel) + lam2·mean(φ²)` are used only by methods with an explainer.
  c.finetune = ml_collections.ConfigDict(dict(
      steps=200, batch_size=32, seed=1, optimizer="sgd", lr=1e-2, momentum=0.9, nesterov=True,
      weight_decay=5e-4, lam=0.01, lam2=1e-4, n_steps=16, fraction=0.5, temperature=1.0,
      deletion="ratio", log_softmax=True, chunk_size=None, eval_every=0))

  # Grad-CAM on the SmallCNN feature map (8×8 on 16×16 inputs), nearest upsampling.
  c.explainer = ml_collections.ConfigDict(dict(
      name="gradcam", upsample="nearest", second_order=True))

  # Hard Ins/Del: step = U // n_steps pixels (16 px of 256, the reference's 64 px of 1024),
  # "mean" convention up to `fraction`, "trapezoid" over the whole curve.
  c.eval = ml_collections.ConfigDict(dict(
      n_steps=16, fraction=0.5, batch_size=120, splits="val,test", max_examples=0))
  c.plots = ml_collections.ConfigDict(dict(n_heatmaps=8))
  return c
