"""experiments/common/training: checkpoint options passed through to `fit` (exact resume)."""

import jax
import ml_collections
import numpy as np
import pytest

from experiments.common import methods, training
from idexpo_jax.data.sklearn_data import Split

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
