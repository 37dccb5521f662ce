"""experiments/common/training: checkpoint options passed through to `fit` (exact resume)."""

import jax
import ml_collections
from flax import nnx
import numpy as np
import pytest

from experiments.common import methods, training
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

  ce = methods.get_method("ce")
  ref, _ = training.finetune(ce, full, _TRAIN, _cfg(3), key=key, progress=False)
  training.finetune(ce, full, _TRAIN, _cfg(2, **ckpt), key=key, progress=False,
                    checkpoint_name="ce")
  again, hist = training.finetune(ce, full, _TRAIN, _cfg(3, **ckpt), key=key, progress=False,
                                  checkpoint_name="ce")
  assert [h["step"] for h in hist] == [3]
  for a, b in zip(_leaves(ref), _leaves(again)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="checkpoint_name"):
    training.finetune(ce, full, _TRAIN, _cfg(1, **ckpt), key=key, progress=False)


def test_no_checkpoint_options_by_default():
  assert training.checkpoint_options(_cfg(1), None) == {}


def test_penalty_batch_restricts_the_idexpo_terms_to_the_first_examples():
  model = training.Model(*functional(_module()))
  explainer = methods.make_explainer("lime", {"n_samples": 16, "distance": "euclidean"},
                                     baseline=np.zeros(5, np.float32))
  cfg = ml_collections.ConfigDict(dict(lam=0.5, lam2=0.1, n_steps=5, fraction=0.5,
                                       temperature=1.0, penalty_batch=3))
  method = methods.get_method("idexpo_lime")
  batch = Split(_TRAIN.x[:8], _TRAIN.y[:8])
  key = jax.random.key(1)
  loss, aux = jax.jit(training.make_loss(method, model, cfg, explainer=explainer,
                                         baseline=np.zeros(5, np.float32)))(model.params, batch,
                                                                            key)
  cfg.penalty_batch = 0
  head = Split(batch.x[:3], batch.y[:3])
  ref, ref_aux = jax.jit(training.make_loss(method, model, cfg, explainer=explainer,
                                            baseline=np.zeros(5, np.float32)))(model.params,
                                                                               head, key)
  # Same ID-ExpO terms as on the first 3 examples alone; CE still on all 8.
  # Other batch shapes, other programs: float32 to the policy, the difference scaled to the loss.
  np.testing.assert_allclose(loss - aux["ce"], ref - ref_aux["ce"], **f32(scale=float(loss)))
  np.testing.assert_allclose(aux["penalty"], ref_aux["penalty"], **F32)
  assert not np.isclose(aux["ce"], ref_aux["ce"])


def test_gradcam_cells_sum_the_pixel_map_over_each_cell():
  cnn = SmallCNN(1, 3, width=2, rngs=nnx.Rngs(0))
  predictor = Predictor(features=cnn.features, head=cnn.head)
  x = jax.random.uniform(jax.random.key(0), (8, 8, 1))
  pixels = methods.make_explainer("gradcam", {}, baseline=0.0, image_shape=(8, 8, 1))
  cells = methods.make_explainer("gradcam", {"cell": 4}, baseline=0.0, image_shape=(8, 8, 1))
  assert pixels.segments is None and cells.segments.shape == (8, 8)
  pmap = np.asarray(pixels.fn(predictor, x, 1, None)).reshape(8, 8)
  want = pmap.reshape(2, 4, 2, 4).sum((1, 3)).ravel()  # row-major 2×2 grid of 4×4 cells
  np.testing.assert_allclose(np.asarray(cells.fn(predictor, x, 1, None)), want, rtol=1e-5,
                             atol=1e-7)
