"""Fault injection on checkpoint directories: kill -9, two writers, unusable and full disks.

Runs of `tests/ckpt_worker.py` (a tiny MLP, a checkpoint after every step) are killed at random
points and resumed; the resumed run must end bit-identical to an uninterrupted one, and no
complete checkpoint may be lost. Unusable directories must fail within seconds, before training.
"""

import errno
import os
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from idexpo_jax.training import checkpoint
from ckpt_worker import fresh_state  # tests/ is on sys.path under pytest's default import mode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "ckpt_worker.py")
NUM_STEPS = 30
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}


def _start(ckpt_dir, out, num_steps=NUM_STEPS, keep=2):
  return subprocess.Popen([sys.executable, WORKER, str(ckpt_dir), str(num_steps), str(out),
                           str(keep)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _run(ckpt_dir, out, num_steps=NUM_STEPS, keep=2, timeout=120):
  """Runs the worker to its end; returns (returncode, stdout, stderr, seconds)."""
  t0 = time.monotonic()
  p = _start(ckpt_dir, out, num_steps, keep)
  stdout, stderr = p.communicate(timeout=timeout)
  return p.returncode, stdout, stderr, time.monotonic() - t0


def _leaves(npz):
  with np.load(npz) as f:
    return [f[f"arr_{i}"] for i in range(len(f.files))]


def _restore_all(ckpt_dir):
  """{step: leaves} of every complete checkpoint in `ckpt_dir`."""
  out = {}
  with checkpoint.checkpoint_manager(str(ckpt_dir), max_to_keep=None) as manager:
    for s in manager.all_steps():
      state = checkpoint.restore_checkpoint(manager, fresh_state(), step=s).state
      out[s] = [np.asarray(x) for x in jax.tree.leaves(state)]
  return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The state after every step of an uninterrupted run (no checkpoints): {step: leaves}."""
  d = tmp_path_factory.mktemp("reference")
  rc, _, stderr, _ = _run("-", d / "trace.npz")
  assert rc == 0, stderr[-3000:]
  with np.load(d / "trace.npz") as f:
    n = len(jax.tree.leaves(fresh_state()))
    steps = {s: [f[f"step{s}_{i}"] for i in range(n)] for s in range(1, NUM_STEPS + 1)}
  return steps


def _assert_same(a, b, what):
  assert len(a) == len(b), what
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y, err_msg=what)


def test_kill_9_at_random_points_then_resume_is_bit_identical(reference, tmp_path):
  ref_steps = reference
  ckpt, rng = tmp_path / "ckpt", np.random.default_rng(0)
  newest, kills = 0, 0
  for i in range(5):  # 5 kills
    if newest == NUM_STEPS:  # (only on a much faster machine)
      break
    p = _start(ckpt, tmp_path / "final.npz")
    line = p.stdout.readline()  # the first batch: the manager is open, training has begun
    assert line.startswith("batch"), p.stderr.read()[-3000:]
    if i == 0:  # two writers: a second manager on a directory in use fails loudly
      with pytest.raises(checkpoint.CheckpointInUseError, match=rf"{ckpt}.*in use.*pid {p.pid}"):
        checkpoint.checkpoint_manager(str(ckpt))
    first = int(line.split()[1])
    while p.stdout.readline().strip() not in (f"batch {first + 1}", "done"):  # one more step
      assert p.poll() is None, p.stderr.read()[-3000:]
    time.sleep(rng.uniform(0.0, 0.4))  # then a random point: in a step, a save or a rename
    p.kill()  # SIGKILL: no cleanup of any kind
    p.communicate()
    kills += p.returncode == -9
    # No complete checkpoint is lost: the newest never goes back, and every checkpoint on disk
    # (opening a manager also shows the killed run left no stale lock) is the reference's state.
    latest = checkpoint.latest_step(str(ckpt))
    assert latest is not None and latest > newest, (i, latest, newest)
    newest = latest
    for s, leaves in _restore_all(ckpt).items():
      _assert_same(leaves, ref_steps[s], f"checkpoint of step {s} after kill {i}")
  assert kills >= 3  # killed mid-run (SIGKILL), not after the end
  rc, stdout, stderr, _ = _run(ckpt, tmp_path / "final.npz")
  assert rc == 0, stderr[-3000:]
  assert stdout.splitlines()[0] == (f"batch {newest}" if newest < NUM_STEPS else "done")
  _assert_same(_leaves(tmp_path / "final.npz"), ref_steps[NUM_STEPS], "final state")
  assert checkpoint.latest_step(str(ckpt)) == NUM_STEPS
  assert not [n for n in os.listdir(ckpt) if ".corrupt-" in n]  # no kill left a torn checkpoint


def _assert_fails_fast_naming(path, rc, stdout, stderr, seconds):
  assert rc != 0
  assert seconds < 20, f"the process lingered {seconds:.0f} s after the error"
  assert "CheckpointDirectoryError" in stderr and str(path) in stderr, stderr[-3000:]
  assert "batch" not in stdout  # not a single step was trained


def test_checkpoint_dir_that_is_a_regular_file_fails_within_seconds(tmp_path):
  target = tmp_path / "not_a_dir"
  target.write_bytes(b"my notes")
  rc, stdout, stderr, seconds = _run(target, tmp_path / "final.npz")
  _assert_fails_fast_naming(target, rc, stdout, stderr, seconds)
  assert "is not a directory" in stderr
  assert target.read_bytes() == b"my notes"


def _mount(*args):
  out = subprocess.run(["mount", *args], capture_output=True, text=True)
  if out.returncode != 0:
    pytest.skip(f"mount {' '.join(args)} is not permitted here: {out.stderr.strip()}")


def test_read_only_checkpoint_dir_on_resume_fails_within_seconds(tmp_path):
  ckpt = tmp_path / "ckpt"
  rc, _, stderr, _ = _run(ckpt, tmp_path / "a.npz", num_steps=2)
  assert rc == 0, stderr[-3000:]
  before = sorted(os.listdir(ckpt))
  # Read-only for root too (permission bits are not): a read-only bind mount over the folder.
  _mount("--bind", "-o", "ro", str(ckpt), str(ckpt))
  try:
    rc, stdout, stderr, seconds = _run(ckpt, tmp_path / "b.npz", num_steps=4)
  finally:
    subprocess.run(["umount", str(ckpt)], check=True)
  _assert_fails_fast_naming(ckpt, rc, stdout, stderr, seconds)
  assert "is not writable" in stderr and "Read-only file system" in stderr
  assert sorted(os.listdir(ckpt)) == before and checkpoint.latest_step(str(ckpt)) == 2


def _non_daemon_threads(wait_for=None, timeout=10.0):
  """The non-daemon threads besides the main one (which keep a process alive at its exit).

  With `wait_for`, polls up to `timeout` seconds until they are those of `wait_for`.
  """
  deadline = time.monotonic() + timeout
  while True:
    threads = [t for t in threading.enumerate()
               if not t.daemon and t is not threading.main_thread()]
    if wait_for is None or threads == wait_for or time.monotonic() > deadline:
      return threads
    time.sleep(0.05)


def _state_at(step, value):
  s = fresh_state()
  return s._replace(step=jax.numpy.asarray(step, jax.numpy.int32),
                    params=jax.tree.map(lambda x: x * 0 + value, s.params))


def _fill(path):
  """Writes zeros to `path` until its file system is full (unbuffered: no flush error later)."""
  fd = os.open(path, os.O_WRONLY | os.O_CREAT)
  try:
    while True:
      os.write(fd, b"\0" * 65536)
  except OSError as e:
    assert e.errno == errno.ENOSPC
  finally:
    os.close(fd)


def test_full_disk_fails_loudly_and_keeps_the_previous_checkpoints(tmp_path):
  mnt = tmp_path / "tmpfs"
  mnt.mkdir()
  _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt))
  threads = _non_daemon_threads()
  try:
    ckpt = mnt / "ckpt"
    manager = checkpoint.checkpoint_manager(str(ckpt), max_to_keep=None)
    try:
      for s in (1, 2):
        checkpoint.save_checkpoint(manager, _state_at(s, float(s)))
      _fill(mnt / "filler")
      t0 = time.monotonic()
      with pytest.raises(OSError) as e:
        checkpoint.save_checkpoint(manager, _state_at(3, 3.0))
      assert time.monotonic() - t0 < 20
      assert "No space left on device" in str(e.value) or e.value.errno == errno.ENOSPC
    finally:
      try:
        manager.close()
      except OSError:
        pass  # orbax may report the failed save again; the manager is closed regardless
    assert manager.closed and _non_daemon_threads(wait_for=threads) == threads  # none lingers
    # A new manager on the full disk fails at once, naming the path.
    with pytest.raises(checkpoint.CheckpointDirectoryError, match=rf"{ckpt} is not writable"):
      checkpoint.checkpoint_manager(str(ckpt))
    os.remove(mnt / "filler")
    assert checkpoint.latest_step(str(ckpt)) == 2
    with checkpoint.checkpoint_manager(str(ckpt), max_to_keep=None) as manager:
      for s in (1, 2):
        out = checkpoint.restore_checkpoint(manager, fresh_state(), step=s)
        for x in jax.tree.leaves(out.state.params):
          np.testing.assert_array_equal(np.asarray(x), float(s))
      checkpoint.save_checkpoint(manager, _state_at(3, 3.0))  # space again: the run goes on
    assert checkpoint.latest_step(str(ckpt)) == 3
  finally:
    subprocess.run(["umount", str(mnt)], check=True)


def test_simulated_write_error_keeps_the_previous_checkpoints(tmp_path, monkeypatch):
  """The same without a tmpfs: orbax's writer raises ENOSPC (runs wherever mount is refused)."""
  from orbax.checkpoint import CheckpointManager as OrbaxManager
  ckpt = tmp_path / "ckpt"
  with checkpoint.checkpoint_manager(str(ckpt), max_to_keep=None) as manager:
    checkpoint.save_checkpoint(manager, _state_at(1, 1.0))

    def full(self, *a, **k):
      raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(OrbaxManager, "save", full)
    with pytest.raises(OSError, match="No space left"):
      checkpoint.save_checkpoint(manager, _state_at(2, 2.0))
    monkeypatch.undo()
    out = checkpoint.restore_checkpoint(manager, fresh_state())
  assert int(out.state.step) == 1 and checkpoint.latest_step(str(ckpt)) == 1
  for x in jax.tree.leaves(out.state.params):
    np.testing.assert_array_equal(np.asarray(x), 1.0)
