"""experiments/common: explainer objects from configs, the fine-tuning loss, checkpoints, evaluation."""

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
import numpy as np
import pytest

import idexpo_jax as ij
from experiments.common import methods, training
from idexpo_jax.explainers.grad_cam import grad_cam
from idexpo_jax.data.sklearn_data import Split
from idexpo_jax.models import SmallCNN, functional
from idexpo_jax.core.predictor import Predictor
from tolerances import F32, f32

_RNG = np.random.default_rng(0)
_TRAIN = Split(_RNG.normal(size=(40, 5)).astype(np.float32), _RNG.integers(0, 3, size=40))


def _cfg(steps, **kw):
  return ml_collections.ConfigDict(dict(steps=steps, batch_size=8, seed=0, optimizer="sgd",
                                        lr=0.1, momentum=0.9, **kw))


def _module():
  return training.build_model(ml_collections.ConfigDict(dict(name="mlp", hidden=(8,))), (5,), 3,
                              seed=0)


def _leaves(model):
  return [np.asarray(p) for p in jax.tree.leaves(model.params)]


def test_pretrain_and_finetune_resume_from_checkpoint_dir(tmp_path):
  key = jax.random.key(0)
  ckpt = dict(checkpoint_dir=str(tmp_path), checkpoint_every=2)
  full, _ = training.pretrain(_module(), _TRAIN, _cfg(6), key=key, progress=False)
  training.pretrain(_module(), _TRAIN, _cfg(4, **ckpt), key=key, progress=False)  # "killed"
  resumed, hist = training.pretrain(_module(), _TRAIN, _cfg(6, **ckpt), key=key, progress=False)
  assert (tmp_path / "pretrain_seed0").is_dir()
  assert [h["step"] for h in hist] == [5, 6]  # restarted at step 4, not from scratch
  for a, b in zip(_leaves(full), _leaves(resumed)):
    np.testing.assert_array_equal(a, b)

  ref, _ = training.finetune(full, _TRAIN, _cfg(3), key=key, progress=False)
  training.finetune(full, _TRAIN, _cfg(2, **ckpt), key=key, progress=False,
                    checkpoint_name="ce")
  again, hist = training.finetune(full, _TRAIN, _cfg(3, **ckpt), key=key, progress=False,
                                  checkpoint_name="ce")
  assert [h["step"] for h in hist] == [3]
  for a, b in zip(_leaves(ref), _leaves(again)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="checkpoint_name"):
    training.finetune(full, _TRAIN, _cfg(1, **ckpt), key=key, progress=False)


def test_no_checkpoint_options_by_default():
  assert training.checkpoint_options(_cfg(1), None) == {}


def test_penalty_batch_restricts_the_idexpo_terms_to_the_first_examples():
  model = training.Model(*functional(_module()))
  explainer = methods.make_explainer("lime", {"n_samples": 16, "distance": "euclidean"},
                                     baseline=np.zeros(5, np.float32))
  cfg = ml_collections.ConfigDict(dict(lam=0.5, lam2=0.1, n_steps=5, fraction=0.5,
                                       temperature=1.0, penalty_batch=3))
  penalty = training.idexpo_penalty(cfg, explainer)
  batch = Split(_TRAIN.x[:8], _TRAIN.y[:8])
  key = jax.random.key(1)
  loss, aux = jax.jit(training.make_loss(model, cfg, penalty=penalty))(model.params, batch, key)
  cfg.penalty_batch = 0
  head = Split(batch.x[:3], batch.y[:3])
  ref, ref_aux = jax.jit(training.make_loss(model, cfg, penalty=penalty))(model.params, head,
                                                                         key)
  # Same ID-ExpO terms as on the first 3 examples alone; CE still on all 8.
  # Other batch shapes, other programs: float32 to the policy, the difference scaled to the loss.
  np.testing.assert_allclose(loss - aux["ce"], ref - ref_aux["ce"], **f32(scale=float(loss)))
  np.testing.assert_allclose(aux["penalty"], ref_aux["penalty"], **F32)
  assert not np.isclose(aux["ce"], ref_aux["ce"])


def test_idexpo_loss_is_ce_plus_weighted_penalty_and_attribution_term():
  """`CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)` against optax's CE and the penalty's own terms;
  a `Batch` carries λ as a traced input instead of `cfg.lam`."""
  import optax
  model = training.Model(*functional(_module()))
  explainer = methods.make_explainer("lime", {"n_samples": 16}, baseline=0.0)
  cfg = ml_collections.ConfigDict(dict(lam=0.5, lam2=0.1, n_steps=5, fraction=0.5,
                                       temperature=1.0))
  penalty = training.idexpo_penalty(cfg, explainer)
  assert (penalty.n_steps, penalty.fraction, penalty.deletion, penalty.log_softmax) == (
      5, 0.5, "ratio", True)
  x, y, key = _TRAIN.x[:8], _TRAIN.y[:8], jax.random.key(2)
  loss, aux = training.make_loss(model, cfg, penalty=penalty)(model.params, Split(x, y), key)
  logits = model.predictor()(x)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  pen, paux = penalty(model.predictor(), x, y, key)
  np.testing.assert_allclose(aux["ce"], ce, **F32)
  np.testing.assert_allclose(loss, ce + 0.5 * pen + 0.1 * paux["attribution_sq"], **F32)
  traced = training.make_loss(model, cfg, penalty=penalty)(
      model.params, training.Batch(x, y, np.float32(2.0), model.rest), key)[0]
  np.testing.assert_allclose(traced, ce + 2.0 * pen + 0.1 * paux["attribution_sq"], **F32)


def test_explainers_are_the_library_objects_with_the_config_options():
  cells = methods.make_explainer("lime", {"cell": 4, "n_samples": 8, "train_samples": 2},
                                 baseline=0.5, image_shape=(8, 8, 1))
  assert isinstance(cells, ij.Lime) and cells.n_samples == 8 and cells.baseline == 0.5
  np.testing.assert_array_equal(cells.segments, ij.grid_segments(8, 8, 4))
  train, evaluated = methods.make_train_eval_explainers(
      "kernel_shap", {"cell": 4, "train_samples": 14, "eval_samples": 6, "paired": False},
      baseline=0.0, image_shape=(8, 8, 1))
  assert (train.n_samples, evaluated.n_samples, train.paired) == (14, 6, False)
  assert methods.make_explainer("lime", {}, baseline=0.0).segments is None  # tabular features
  with pytest.raises(ValueError, match="nope"):
    methods.make_explainer("lime", {"nope": 1}, baseline=0.0)
  with pytest.raises(ValueError, match="Unknown explainer"):
    methods.make_explainer("lim", {}, baseline=0.0)


def test_gradcam_cells_sum_the_pixel_map_over_each_cell():
  cnn = SmallCNN(1, 3, width=2, rngs=nnx.Rngs(0))
  predictor = Predictor(features=cnn.features, head=cnn.head)
  x = jax.random.uniform(jax.random.key(0), (8, 8, 1))
  pixels = methods.make_explainer("gradcam", {}, baseline=0.0, image_shape=(8, 8, 1))
  cells = methods.make_explainer("gradcam", {"cell": 4}, baseline=0.0, image_shape=(8, 8, 1))
  assert isinstance(cells, ij.GradCam) and pixels.segments is None
  assert cells.segments.shape == (8, 8)
  pmap = np.asarray(grad_cam(predictor, x, 1)).reshape(8, 8)  # the pure function's pixel map
  np.testing.assert_allclose(np.asarray(pixels(predictor, x, 1)), pmap.ravel(), rtol=1e-6)
  want = pmap.reshape(2, 4, 2, 4).sum((1, 3)).ravel()  # row-major 2×2 grid of 4×4 cells
  np.testing.assert_allclose(np.asarray(cells(predictor, x, 1)), want, rtol=1e-5, atol=1e-7)


def test_evaluation_scores_the_predicted_class_with_keys_of_the_whole_split():
  """Ins/Del of `make_evaluator` against a NumPy reference: example `i` explained with
  `split(key, N)[i]` whatever the batch size (the last batch padded), units ranked by φ, the
  target's softmax probability on inputs with the top `k` features kept (insertion) or set to
  the baseline (deletion); "mean" over `0 < k ≤ U/2`, trapezoid over `[0, 1]`."""
  from experiments.common import evaluation
  model = training.Model(*functional(_module()))
  baseline = np.full(5, 0.25, np.float32)
  explainer = methods.make_explainer("lime", {"n_samples": 16}, baseline=baseline)
  split, key = Split(_TRAIN.x[:3], _TRAIN.y[:3]), jax.random.key(3)
  ev = evaluation.make_evaluator(model, explainer, n_steps=5, batch_size=2).evaluate(
      model.params, split, key)
  predictor = model.predictor()
  prob = lambda xb: np.asarray(jax.nn.softmax(predictor(jnp.asarray(xb)), -1), np.float64)
  for i, k_i in enumerate(jax.random.split(key, 3)):
    x = split.x[i]
    t = int(prob(x[None])[0].argmax())
    top = np.argsort(-np.asarray(explainer(predictor, x, t, k_i)), kind="stable")
    keep = np.zeros((6, 5), bool)
    for k in range(6):
      keep[k, top[:k]] = True
    ins = prob(np.where(keep, x, baseline))[:, t]
    dele = prob(np.where(keep, baseline, x))[:, t]
    assert ev.per_example["pred"][i] == t
    np.testing.assert_allclose(ev.per_example["ins"][i], ins[1:3].mean(), **F32)
    np.testing.assert_allclose(ev.per_example["del"][i], dele[1:3].mean(), **F32)
    np.testing.assert_allclose(ev.per_example["ins_trapezoid"][i],
                               np.trapezoid(ins, np.arange(6) / 5), **F32)
  np.testing.assert_allclose(ev.fractions, np.arange(6) / 5, **F32)
  np.testing.assert_allclose(ev.summary["accuracy"], np.mean(ev.per_example["pred"] == split.y),
                             **F32)


def test_evaluator_explains_pixel_units_of_images_as_maps():
  from experiments.common import evaluation
  model = training.Model(*functional(SmallCNN(1, 3, width=2, rngs=nnx.Rngs(0))))
  gradcam = methods.make_explainer("gradcam", {}, baseline=0.0, image_shape=(8, 8, 1))
  x = np.asarray(jax.random.uniform(jax.random.key(0), (2, 8, 8, 1)))
  pred, phi = evaluation.make_evaluator(model, gradcam, batch_size=2).explain(
      model.params, x, jax.random.key(1))
  assert phi.shape == (2, 8, 8)
  for i in range(2):
    want = np.asarray(grad_cam(model.predictor(), jnp.asarray(x[i]), int(pred[i])))
    np.testing.assert_allclose(phi[i], want, rtol=1e-5, atol=1e-7)
