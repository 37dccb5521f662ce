"""Training: the jitted optax step, the loop, checkpoints and data-parallel sharding.

* `train`: `TrainState`, `init_train_state`, `make_train_step`;
* `loop`: `fit` (progress bar, checkpoints, bit-identical resume) and `epoch_batch_fn`;
* `checkpoint`: orbax checkpoints of a `TrainState` with the data position and the run's config;
* `parallel`: a data mesh, sharded batches and the data-parallel step.
"""

from idexpo_jax.training import checkpoint, loop, parallel, train
from idexpo_jax.training.checkpoint import (checkpoint_manager, latest_step, restore_checkpoint,
                                            save_checkpoint)
from idexpo_jax.training.loop import epoch_batch_fn, fit
from idexpo_jax.training.parallel import data_mesh, make_data_parallel_step, shard_batch
from idexpo_jax.training.train import TrainState, init_train_state, make_train_step

__all__ = ("TrainState", "init_train_state", "make_train_step", "fit", "epoch_batch_fn",
           "checkpoint_manager", "save_checkpoint", "restore_checkpoint", "latest_step",
           "data_mesh", "make_data_parallel_step", "shard_batch")
