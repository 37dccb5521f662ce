"""Tests for idexpo_jax.training.checkpoint and the checkpointing / NaN guard of `loop.fit`."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from idexpo_jax.training import checkpoint
from idexpo_jax.data.sklearn_data import Split
from idexpo_jax.training.loop import epoch_batch_fn, fit
from idexpo_jax.models import functional, logits_with_state
from idexpo_jax.training.train import init_train_state, make_train_step


class _BNNet(nnx.Module):
  """conv-BatchNorm-GAP-linear: parameters, optimizer momentum and batch statistics to restore."""

  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 4, (3, 3), use_bias=False, rngs=rngs)
    self.bn = nnx.BatchNorm(4, rngs=rngs)
    self.fc = nnx.Linear(4, 3, rngs=rngs)

  def __call__(self, x):
    return self.fc(jax.nn.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))


class _Interrupted(Exception):
  pass


@pytest.fixture(scope="module")
def setup():
  module = _BNNet(nnx.Rngs(0))
  module.train()
  graphdef, params, rest = functional(module)

  def loss_fn(params, model_state, batch, key):
    # The key enters the loss (input noise), so a resumed run must use the same step keys.
    x = batch.x + 0.1 * jax.random.normal(key, batch.x.shape)
    logits, new_state = logits_with_state(graphdef, params, model_state, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch.y).mean()
    return loss, ({}, new_state)

  tx = optax.sgd(0.1, momentum=0.9, nesterov=True)
  step = make_train_step(loss_fn, tx, stateful=True)
  rng = np.random.default_rng(0)
  split = Split(rng.normal(size=(24, 4, 4, 3)).astype(np.float32),
                rng.integers(0, 3, 24).astype(np.int32))
  fresh = lambda: jax.tree.map(jnp.copy, init_train_state(params, tx, rest))
  return step, fresh, epoch_batch_fn(split, 4, seed=1), jax.random.key(3)


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_interrupted_run_resumes_exactly(setup, tmp_path):
  step, fresh, batch_fn, key = setup
  full, full_hist = fit(step, fresh(), batch_fn, num_steps=9, key=key, progress=False)

  def crashing(t):
    if t == 7:
      raise _Interrupted
    return batch_fn(t)

  ckpt = str(tmp_path / "ckpt")
  with pytest.raises(_Interrupted):
    fit(step, fresh(), crashing, num_steps=9, key=key, progress=False, checkpoint_dir=ckpt,
        checkpoint_every=3)
  assert checkpoint.latest_step(ckpt) == 6
  resumed, hist = fit(step, fresh(), batch_fn, num_steps=9, key=key, progress=False,
                      checkpoint_dir=ckpt, checkpoint_every=3)
  assert [r["step"] for r in hist] == [7, 8, 9]
  assert [r["loss"] for r in hist] == [r["loss"] for r in full_hist[6:]]
  _assert_trees_equal(resumed, full)  # params, momentum and BatchNorm statistics, bit for bit
  assert checkpoint.latest_step(ckpt) == 9
  # A different key gives a different run: the comparison above is not vacuous.
  other, _ = fit(step, fresh(), batch_fn, num_steps=9, key=jax.random.key(4), progress=False)
  assert not np.array_equal(np.asarray(other.params["fc"]["kernel"]),
                            np.asarray(full.params["fc"]["kernel"]))


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(setup, tmp_path):
  step, fresh, batch_fn, key = setup

  def poisoned(t):
    b = batch_fn(t)
    return Split(b.x * np.float32(np.inf), b.y) if t == 4 else b

  ckpt = str(tmp_path / "ckpt")
  with pytest.raises(FloatingPointError, match=r"at step 4 .*last good checkpoint is step 4"):
    fit(step, fresh(), poisoned, num_steps=8, key=key, progress=False, checkpoint_dir=ckpt,
        checkpoint_every=1)
  assert checkpoint.latest_step(ckpt) == 4
  good, _ = fit(step, fresh(), batch_fn, num_steps=4, key=key, progress=False)
  manager = checkpoint.checkpoint_manager(ckpt)
  restored = checkpoint.restore_checkpoint(manager, fresh())
  manager.close()
  _assert_trees_equal(restored.state, good)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(restored.state))


def test_nonfinite_loss_without_checkpoints_names_the_step(setup):
  step, fresh, batch_fn, key = setup
  poisoned = lambda t: Split(batch_fn(t).x * np.float32(np.nan), batch_fn(t).y)
  with pytest.raises(FloatingPointError, match="at step 0 .*no checkpoint directory"):
    fit(step, fresh(), poisoned, num_steps=3, key=key, progress=False)


def test_save_restore_roundtrip_and_record(setup, tmp_path):
  _, fresh, _, _ = setup
  state = fresh()._replace(step=jnp.asarray(5, jnp.int32))
  manager = checkpoint.checkpoint_manager(str(tmp_path / "c"), max_to_keep=None)
  assert checkpoint.restore_checkpoint(manager, state) is None
  assert checkpoint.save_checkpoint(manager, state, data_position={"epoch": 1, "index": 2},
                                    metadata={"config": "smoke"}) == 5
  out = checkpoint.restore_checkpoint(manager, fresh())
  _assert_trees_equal(out.state, state)
  assert out.record == {"config": "smoke", "step": 5, "data_position": {"epoch": 1, "index": 2}}
  with pytest.raises(ValueError, match="No checkpoint of step 3"):
    checkpoint.restore_checkpoint(manager, state, step=3)
  manager.close()
  assert checkpoint.latest_step(str(tmp_path / "missing")) is None
  with pytest.raises(ValueError, match="max_to_keep"):
    checkpoint.checkpoint_manager(str(tmp_path / "d"), max_to_keep=0)


def test_resume_under_another_config_is_refused_naming_the_field(setup, tmp_path):
  step, fresh, batch_fn, key = setup
  ckpt = str(tmp_path / "ckpt")
  config = {"optimizer": {"lr": 0.1, "momentum": 0.9}, "batch_size": 4}
  fit(step, fresh(), batch_fn, num_steps=2, key=key, progress=False, checkpoint_dir=ckpt,
      config=config)
  other = {"optimizer": {"lr": 0.01, "momentum": 0.9}, "batch_size": 4}
  with pytest.raises(ValueError, match=r"optimizer\.lr: checkpoint 0\.1 vs this run 0\.01"):
    fit(step, fresh(), batch_fn, num_steps=4, key=key, progress=False, checkpoint_dir=ckpt,
        config=other)
  with pytest.raises(ValueError, match="records no config"):
    checkpoint.check_resume({"step": 2}, config=config, num_steps=4)
  with pytest.raises(ValueError, match=r"extra: checkpoint '<missing>'"):
    checkpoint.check_resume({"step": 2, "config": config}, config={**config, "extra": 1},
                            num_steps=4)
  assert checkpoint.latest_step(ckpt) == 2  # nothing was overwritten
  # The same config (tuples and lists alike, as JSON records them) continues the run.
  _, hist = fit(step, fresh(), batch_fn, num_steps=3, key=key, progress=False,
                checkpoint_dir=ckpt, config={**config, "batch_size": 4})
  assert [h["step"] for h in hist] == [3]


def test_fewer_steps_than_the_checkpoint_is_refused(setup, tmp_path):
  step, fresh, batch_fn, key = setup
  ckpt = str(tmp_path / "ckpt")
  fit(step, fresh(), batch_fn, num_steps=5, key=key, progress=False, checkpoint_dir=ckpt)
  with pytest.raises(ValueError, match=r"`num_steps`=4 but the checkpoint .* at step 5"):
    fit(step, fresh(), batch_fn, num_steps=4, key=key, progress=False, checkpoint_dir=ckpt)


def test_corrupted_newest_checkpoint_falls_back_to_the_previous_loudly(setup, tmp_path):
  step, fresh, batch_fn, key = setup
  full, _ = fit(step, fresh(), batch_fn, num_steps=6, key=key, progress=False)
  ckpt = tmp_path / "ckpt"
  fit(step, fresh(), batch_fn, num_steps=4, key=key, progress=False, checkpoint_dir=str(ckpt),
      checkpoint_every=2)
  assert sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) == [2, 4]
  (ckpt / "4" / "state" / "_METADATA").write_bytes(b"\x00garbage{")
  with pytest.warns(UserWarning, match=r"step 4 .* could not be read .*falling back to step 2"):
    resumed, hist = fit(step, fresh(), batch_fn, num_steps=6, key=key, progress=False,
                        checkpoint_dir=str(ckpt), checkpoint_every=2)
  assert [h["step"] for h in hist] == [3, 4, 5, 6]  # from step 2, not from scratch
  _assert_trees_equal(resumed, full)
  # Nothing readable at all: an error, not a silent fresh start.
  for name in ("2", "4", "6"):
    if (ckpt / name).is_dir():
      (ckpt / name / "state" / "_METADATA").write_bytes(b"\x00garbage{")
  with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="No checkpoint .* could be"):
    fit(step, fresh(), batch_fn, num_steps=8, key=key, progress=False, checkpoint_dir=str(ckpt))


# The checkpoint contract (docs/scale.md, "Checkpoint contract").


def _at(fresh, step, value):
  """`fresh()` at `step` with every parameter equal to `value` (distinct values per save)."""
  s = fresh()
  return s._replace(step=jnp.asarray(step, jnp.int32),
                    params=jax.tree.map(lambda x: jnp.full_like(x, value), s.params))


def _params_value(state):
  values = {float(v) for x in jax.tree.leaves(state.params) for v in np.unique(np.asarray(x))}
  assert len(values) == 1, values
  return values.pop()


def _entries(path):
  return sorted(p.name for p in path.iterdir() if p.name != ".lock")


def test_saving_the_newest_step_again_replaces_it_atomically(setup, tmp_path):
  _, fresh, _, _ = setup
  ckpt = tmp_path / "c"
  with checkpoint.checkpoint_manager(str(ckpt), max_to_keep=None) as manager:
    assert checkpoint.save_checkpoint(manager, _at(fresh, 2, 1.0)) == 2
    assert checkpoint.save_checkpoint(manager, _at(fresh, 2, 7.0), metadata={"v": 2}) == 2
    out = checkpoint.restore_checkpoint(manager, fresh())
    assert _params_value(out.state) == 7.0 and out.record["v"] == 2
    assert manager.all_steps() == [2]
  assert _entries(ckpt) == ["2"] and checkpoint.is_complete(str(ckpt / "2"))  # no leftovers
  with checkpoint.checkpoint_manager(str(ckpt)) as manager:  # and so it is on disk
    assert _params_value(checkpoint.restore_checkpoint(manager, fresh()).state) == 7.0


def test_overwrite_without_an_atomic_swap_and_its_recovery_after_a_crash(setup, tmp_path,
                                                                        monkeypatch):
  _, fresh, _, _ = setup
  ckpt = tmp_path / "c"
  monkeypatch.setattr(checkpoint, "_exchange", lambda a, b: False)  # e.g. not Linux
  with checkpoint.checkpoint_manager(str(ckpt), max_to_keep=None) as manager:
    checkpoint.save_checkpoint(manager, _at(fresh, 3, 1.0))
    checkpoint.save_checkpoint(manager, _at(fresh, 3, 2.0))
    assert _params_value(checkpoint.restore_checkpoint(manager, fresh()).state) == 2.0
  # A crash between the two renames leaves the replaced checkpoint in the staging folder and no
  # `3`: opening a manager puts the complete one back.
  stage = ckpt / ".overwrite-3-1-1"
  stage.mkdir()
  (ckpt / "3").rename(stage / "replaced")
  with pytest.warns(UserWarning, match="interrupted overwrite of the checkpoint of step 3"):
    manager = checkpoint.checkpoint_manager(str(ckpt))
  with manager:
    assert _params_value(checkpoint.restore_checkpoint(manager, fresh()).state) == 2.0


def test_saving_a_step_older_than_the_newest_raises(setup, tmp_path):
  _, fresh, _, _ = setup
  ckpt = tmp_path / "c"
  with checkpoint.checkpoint_manager(str(ckpt), max_to_keep=None) as manager:
    checkpoint.save_checkpoint(manager, _at(fresh, 5, 5.0))
    with pytest.raises(checkpoint.CheckpointOrderError, match="step 3 .*newest checkpoint is "
                       "step 5"):
      checkpoint.save_checkpoint(manager, _at(fresh, 3, 3.0))
    assert _params_value(checkpoint.restore_checkpoint(manager, fresh()).state) == 5.0
  assert _entries(ckpt) == ["5"]


def test_an_empty_or_partial_step_folder_is_not_a_checkpoint(setup, tmp_path):
  step, fresh, batch_fn, key = setup
  ckpt = tmp_path / "ckpt"
  full, _ = fit(step, fresh(), batch_fn, num_steps=6, key=key, progress=False)
  fit(step, fresh(), batch_fn, num_steps=3, key=key, progress=False, checkpoint_dir=str(ckpt),
      checkpoint_every=1, checkpoint_keep=10)
  (ckpt / "9").mkdir()  # empty
  (ckpt / "7" / "state").mkdir(parents=True)  # partial: data but no commit marks
  (ckpt / "7" / "state" / "_METADATA").write_text("{}")
  assert checkpoint.latest_step(str(ckpt)) == 3
  with pytest.warns(UserWarning, match=r"ckpt/9 is not a complete checkpoint .*moved aside to "
                    r".*9\.incomplete-1"):
    resumed, hist = fit(step, fresh(), batch_fn, num_steps=6, key=key, progress=False,
                        checkpoint_dir=str(ckpt), checkpoint_every=1, checkpoint_keep=10)
  assert [h["step"] for h in hist] == [4, 5, 6]
  _assert_trees_equal(resumed, full)
  assert checkpoint.latest_step(str(ckpt)) == 6
  assert _entries(ckpt) == ["1", "2", "3", "4", "5", "6", "7.incomplete-1", "9.incomplete-1"]
  assert (ckpt / "7.incomplete-1" / "state" / "_METADATA").read_text() == "{}"  # kept as is
  with checkpoint.checkpoint_manager(str(ckpt)) as manager:
    _assert_trees_equal(checkpoint.restore_checkpoint(manager, fresh(), step=6).state, full)


def test_a_corrupt_newest_checkpoint_is_moved_aside_and_saved_again(setup, tmp_path):
  step, fresh, batch_fn, key = setup
  ckpt = tmp_path / "ckpt"
  at4, _ = fit(step, fresh(), batch_fn, num_steps=4, key=key, progress=False)
  fit(step, fresh(), batch_fn, num_steps=4, key=key, progress=False, checkpoint_dir=str(ckpt),
      checkpoint_every=2)
  (ckpt / "4" / "state" / "_METADATA").write_bytes(b"\x00garbage{")
  with pytest.warns(UserWarning, match=r"step 4 was moved aside to .*4\.corrupt-1"):
    _, hist = fit(step, fresh(), batch_fn, num_steps=4, key=key, progress=False,
                  checkpoint_dir=str(ckpt), checkpoint_every=2)
  assert [h["step"] for h in hist] == [3, 4]
  assert _entries(ckpt) == ["2", "4", "4.corrupt-1"]
  assert (ckpt / "4.corrupt-1" / "state" / "_METADATA").read_bytes() == b"\x00garbage{"
  with checkpoint.checkpoint_manager(str(ckpt)) as manager:
    _assert_trees_equal(checkpoint.restore_checkpoint(manager, fresh()).state, at4)
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # a rerun: no warning, nothing redone
    _, hist = fit(step, fresh(), batch_fn, num_steps=4, key=key, progress=False,
                  checkpoint_dir=str(ckpt), checkpoint_every=2)
  assert hist == []


def test_unusable_checkpoint_dir_fails_before_any_step(setup, tmp_path):
  step, fresh, batch_fn, key = setup
  calls = []
  counting = lambda t: calls.append(t) or batch_fn(t)  # noqa: E731
  regular = tmp_path / "file"
  regular.write_text("not a directory")
  for path, phrase in ((regular, "exists and is not a directory"),
                       (regular / "sub", "cannot be created")):
    with pytest.raises(checkpoint.CheckpointDirectoryError, match=rf"`checkpoint_dir` {path} "
                       rf"{phrase}") as e:
      fit(step, fresh(), counting, num_steps=2, key=key, progress=False, checkpoint_dir=str(path))
    assert isinstance(e.value, OSError) and e.value.filename == str(path)
  assert calls == [] and regular.read_text() == "not a directory"


def test_a_second_writer_on_the_same_directory_is_refused(setup, tmp_path):
  step, fresh, batch_fn, key = setup
  ckpt = tmp_path / "ckpt"
  with checkpoint.checkpoint_manager(str(ckpt), max_to_keep=None) as first:
    checkpoint.save_checkpoint(first, _at(fresh, 1, 1.0))
    with pytest.raises(checkpoint.CheckpointInUseError, match=rf"{ckpt} is in use by another "
                       rf"writer \(pid {os.getpid()}\)"):
      fit(step, fresh(), batch_fn, num_steps=2, key=key, progress=False, checkpoint_dir=str(ckpt))
    checkpoint.save_checkpoint(first, _at(fresh, 2, 2.0))  # the first goes on, undisturbed
    assert _params_value(checkpoint.restore_checkpoint(first, fresh()).state) == 2.0
  assert first.closed and _entries(ckpt) == ["1", "2"]
  with checkpoint.checkpoint_manager(str(ckpt)) as again:  # closed: the lock is free
    assert again.latest_step() == 2
