"""idexpo_jax: training neural networks whose explanations are faithful (ID-ExpO, RRR, ExpO).

The public names, by concept (each subpackage holds the pure functions behind them):

* models and units (`core`): `Predictor`, `as_predictor`, `grid_segments`,
  `superpixel_segments`, `apply_unit_mask`;
* explainers (`explainers`): `Lime`, `KernelShap`, `GradCam`, `IntegratedGradients`,
  `SmoothGrad`, `GradientTimesInput`, `InputGradients` (all `Explainer`s, called as
  `explainer(model, x, target, key) -> φ (d,)`), `LocalLinear` (ExpO's local affine explainer,
  `(model, x, key) -> (coef, intercept)`), and `explain` for a batch;
* metrics (`metrics`): `InsertionDeletion` (→ `InsertionDeletionScores`),
  `insertion_deletion_curves`, `soft_insertion_deletion`, `sensitivity_n`, `expo_metrics`;
* regularisers (`regularisers`): `IdExpo`, `rrr_penalty`, `find_another_explanation`,
  `expo_fidelity`, `expo_fidelity_1d`, `expo_stability`;
* training (`training`): `TrainState`, `init_train_state`, `make_train_step`, `fit`,
  `epoch_batch_fn`, `checkpoint_manager`, `save_checkpoint`, `restore_checkpoint`, `latest_step`,
  `data_mesh`, `make_data_parallel_step`, `shard_batch`.

`idexpo_jax.models` (Flax NNX models with `features`/`head`), `idexpo_jax.adapters` (Linen and
Equinox models), `idexpo_jax.data` and `idexpo_jax.plotting` are submodules.
"""

# First: `conv` sets the CPU convolution flags before anything can start a JAX backend.
from idexpo_jax import conv  # isort: skip
from idexpo_jax import adapters, core, explainers, metrics, models, regularisers, training
from idexpo_jax.core.masking import apply_unit_mask, grid_segments
from idexpo_jax.core.predictor import Predictor, as_predictor
from idexpo_jax.core.superpixels import superpixel_segments
from idexpo_jax.explainers.base import (Explainer, GradCam, GradientTimesInput, InputGradients,
                                        IntegratedGradients, KernelShap, Lime, SmoothGrad)
from idexpo_jax.explainers.batch import explain
from idexpo_jax.explainers.local_linear import LocalLinear
from idexpo_jax.metrics.curves import insertion_deletion_curves
from idexpo_jax.metrics.fidelity import expo_metrics
from idexpo_jax.metrics.scores import InsertionDeletion, InsertionDeletionScores
from idexpo_jax.metrics.sensitivity import sensitivity_n
from idexpo_jax.metrics.soft_curves import soft_insertion_deletion
from idexpo_jax.regularisers.expo import expo_fidelity, expo_fidelity_1d, expo_stability
from idexpo_jax.regularisers.idexpo import IdExpo
from idexpo_jax.regularisers.rrr import find_another_explanation, rrr_penalty
from idexpo_jax.training.checkpoint import (checkpoint_manager, latest_step, restore_checkpoint,
                                            save_checkpoint)
from idexpo_jax.training.loop import epoch_batch_fn, fit
from idexpo_jax.training.parallel import data_mesh, make_data_parallel_step, shard_batch
from idexpo_jax.training.train import TrainState, init_train_state, make_train_step

__version__ = "0.2.0"

__all__ = (
    # Models and units.
    "Predictor",
    "as_predictor",
    "grid_segments",
    "superpixel_segments",
    "apply_unit_mask",
    # Explainers.
    "Explainer",
    "Lime",
    "KernelShap",
    "GradCam",
    "IntegratedGradients",
    "SmoothGrad",
    "GradientTimesInput",
    "InputGradients",
    "LocalLinear",
    "explain",
    # Metrics.
    "InsertionDeletion",
    "InsertionDeletionScores",
    "insertion_deletion_curves",
    "soft_insertion_deletion",
    "sensitivity_n",
    "expo_metrics",
    # Regularisers.
    "IdExpo",
    "rrr_penalty",
    "find_another_explanation",
    "expo_fidelity",
    "expo_fidelity_1d",
    "expo_stability",
    # Training and sharding.
    "TrainState",
    "init_train_state",
    "make_train_step",
    "fit",
    "epoch_batch_fn",
    "checkpoint_manager",
    "save_checkpoint",
    "restore_checkpoint",
    "latest_step",
    "data_mesh",
    "make_data_parallel_step",
    "shard_batch",
)
