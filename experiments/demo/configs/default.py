"""`make demo`: ID-ExpO (Grad-CAM, LIME, KernelSHAP) vs cross-entropy fine-tuning on digits 16×16.

Hyper-parameters of the fine-tuning (λ per method, temperature, steps, learning rate) were chosen
on the validation split (experiments/demo/sweep.py, docs/demo.md); the test split is only
evaluated.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.out_dir = "results/demo"
  # Fine-tuned from the same pre-trained parameters; an ID-ExpO method trains with its explainer.
  c.methods = "ce,idexpo_gradcam,idexpo_lime,idexpo_kernelshap"

  c.data = ml_collections.ConfigDict(dict(size=16, seed=0))
  c.model = ml_collections.ConfigDict(dict(name="small_cnn", width=16))

  # Cross-entropy pre-training (Adam; BatchNorm-free model). `checkpoint_dir` (None: off) makes
  # pre-training and fine-tuning resumable (`checkpoint_every` steps; 0: at the end only).
  c.pretrain = ml_collections.ConfigDict(dict(
      steps=800, batch_size=64, seed=0, optimizer="adam", lr=3e-3,
      checkpoint_dir=placeholder(str), checkpoint_every=0))

  # Fine-tuning, identical for every method (same steps, batches, optimizer and key); the ID-ExpO
  # terms `lam·mean(cIns + cDel) + lam2·mean(φ²)` are used only by methods with an explainer.
  # Soft curves: 16 steps over the units up to 50% (16 px of 256 per step on pixels, one cell of
  # 16 per step on grid cells).
  c.finetune = ml_collections.ConfigDict(dict(
      steps=200, batch_size=32, seed=1, optimizer="sgd", lr=1e-2, momentum=0.9, nesterov=True,
      weight_decay=5e-4, lam=0.0, lam2=1e-4, n_steps=16, fraction=0.5, temperature=1.0,
      deletion="ratio", log_softmax=True, chunk_size=None, eval_every=0, penalty_batch=0,
      checkpoint_dir=placeholder(str), checkpoint_every=0))
  # Options of each ID-ExpO method over `finetune` (never steps, batches or optimizer): λ, chosen
  # on validation (experiments/demo/sweep.py, docs/demo.md), and for the sampling explainers a
  # penalty on the first `penalty_batch` examples of each batch (CE still sees all 32).
  c.per_method = ml_collections.ConfigDict(dict(
      idexpo_gradcam=dict(lam=0.01),
      idexpo_lime=dict(lam=0.01, penalty_batch=8),
      idexpo_kernelshap=dict(lam=0.01, penalty_batch=8)))

  # Explainers. Grad-CAM on the SmallCNN feature map (8×8 on 16×16 inputs), nearest upsampling.
  # LIME and KernelSHAP on 4×4-pixel grid cells (16 segments); the training-time explainers use
  # fewer samples than the evaluated ones (`train_samples` < `eval_samples`).
  c.explainers = ml_collections.ConfigDict(dict(
      gradcam=dict(upsample="nearest", second_order=True),
      lime=dict(cell=4, distance="cosine", ridge=1.0, train_samples=32, eval_samples=256),
      kernel_shap=dict(cell=4, output="prob", paired=True, train_samples=96, eval_samples=128)))

  # Hard Ins/Del: step = U // n_steps units (16 px of 256, the reference's 64 px of 1024; one
  # cell of 16), "mean" convention up to `fraction`, "trapezoid" over the whole curve. The CE and
  # pre-trained models are scored with every explainer listed (the first keeps the bare row names
  # `ce`/`pretrained`), an ID-ExpO model with its own.
  c.eval = ml_collections.ConfigDict(dict(
      explainers="gradcam,lime,kernel_shap", n_steps=16, fraction=0.5, batch_size=120,
      splits="test", max_examples=0))
  c.plots = ml_collections.ConfigDict(dict(n_heatmaps=8))
  return c
