"""A tiny MLP run with checkpoints, run as a subprocess by tests/test_checkpoint_faults.py.

`python tests/ckpt_worker.py CKPT_DIR NUM_STEPS OUT_NPZ [KEEP]` trains for NUM_STEPS steps with
a checkpoint after every step (the latest KEEP kept; 0: all), printing `batch <t>` when the batch
of step `t` is requested (all steps before `t` are done and checkpointed), and writes the final
state's leaves to OUT_NPZ. With CKPT_DIR `-`, no checkpoints: OUT_NPZ holds the leaves of the
state after every step instead (`step<s>_<i>`), the reference of an uninterrupted run. The tests
import `fresh_state` to build restore templates.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZER = optax.sgd(0.05, momentum=0.9, nesterov=True)


def fresh_state():
  """The initial `TrainState` (fixed seed) of the run."""
  from idexpo_jax.training.train import init_train_state
  k1, k2 = jax.random.split(jax.random.key(0))
  params = {"w1": 0.5 * jax.random.normal(k1, (4, 8)), "b1": jnp.zeros(8),
            "w2": 0.5 * jax.random.normal(k2, (8, 1))}
  return init_train_state(params, OPTIMIZER)


def _loss(params, batch, key):
  x, y = batch
  x = x + 0.05 * jax.random.normal(key, x.shape)  # the step key matters
  pred = jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]
  return jnp.mean((pred[:, 0] - y) ** 2), {}


def _batch_fn(t):
  rng = np.random.default_rng([7, t])
  x = rng.normal(size=(16, 4)).astype(np.float32)
  return x, np.sin(x.sum(1)).astype(np.float32)


def main(argv):
  from idexpo_jax.training.loop import fit
  from idexpo_jax.training.train import make_train_step
  ckpt_dir, num_steps, out = argv[1], int(argv[2]), argv[3]
  keep = int(argv[4]) if len(argv) > 4 else 2

  def batch_fn(t):
    print(f"batch {t}", flush=True)
    return _batch_fn(t)

  trace = {}

  def record(state):  # called after every step when there are no checkpoints
    s = int(state.step)
    trace.update({f"step{s}_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))})
    return {}

  with_ckpt = ckpt_dir != "-"
  state, _ = fit(make_train_step(_loss, OPTIMIZER), fresh_state(), batch_fn,
                 num_steps=num_steps, key=jax.random.key(1), progress=False,
                 eval_fn=None if with_ckpt else record, eval_every=1,
                 checkpoint_dir=ckpt_dir if with_ckpt else None, checkpoint_every=1,
                 checkpoint_keep=keep or None)
  if with_ckpt:
    np.savez(out, *[np.asarray(x) for x in jax.tree.leaves(state)])
  else:
    np.savez(out, **trace)
  print("done", flush=True)


if __name__ == "__main__":
  main(sys.argv)
