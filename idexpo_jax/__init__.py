"""idexpo_jax: training neural networks whose explanations are faithful (ID-ExpO, RRR, ExpO)."""

from idexpo_jax import adapters
from idexpo_jax.explainers.gradients import (gradient_times_input, integrated_gradients, smooth_grad,
                                     target_gradient)
from idexpo_jax.explainers.batch import InsertionDeletionScores, batch_insertion_deletion_scores, explain
from idexpo_jax.training.checkpoint import (Restored, checkpoint_manager, latest_step, restore_checkpoint,
                                   save_checkpoint)
from idexpo_jax.metrics.curves import (batch_insertion_deletion, curve_auc, insertion_deletion_curves,
                               insertion_deletion_scores)
from idexpo_jax.regularisers.expo import expo_fidelity, expo_fidelity_1d, expo_stability
from idexpo_jax.explainers.base import (Explainer, GradCam, GradientTimesInput, InputGradients,
                                   IntegratedGradients, KernelShap, Lime, SmoothGrad, units_of)
from idexpo_jax.metrics.fidelity import (expo_metrics, expo_metrics_batch, explanation_stability,
                                         neighborhood_fidelity, point_fidelity)
from idexpo_jax.explainers.grad_cam import grad_cam, grad_cam_batch
from idexpo_jax.explainers.input_gradients import input_gradients
from idexpo_jax.regularisers.idexpo import idexpo_penalty
from idexpo_jax.explainers.kernel_shap import kernel_shap, sample_coalitions
from idexpo_jax.explainers.lime import LimeSamples, lime, lime_samples
from idexpo_jax.explainers.local_linear import gaussian_neighbors, local_linear, model_outputs
from idexpo_jax.training.loop import epoch_batch_fn, fit
from idexpo_jax.core.lstsq import constrained_least_squares, weighted_least_squares
from idexpo_jax.core.masking import (apply_unit_mask, evaluate_masked, grid_segments, num_units,
                                unit_mask_to_input)
from idexpo_jax.training.parallel import (data_mesh, initialize_distributed, make_data_parallel_step,
                                 process_rows, replicate, shard_batch, sharded_batch_fn)
from idexpo_jax.core.predictor import Predictor, as_logits_fn, as_predictor, target_log_prob, target_prob
from idexpo_jax.regularisers.rrr import (AnotherExplanations, batch_input_gradients, explanation_mask,
                             find_another_explanation, rrr_penalty)
from idexpo_jax.metrics.sensitivity import batch_sensitivity_n, sensitivity_n
from idexpo_jax.metrics.soft_curves import soft_curves, soft_insertion_deletion, soft_keep_masks
from idexpo_jax.core.superpixels import relabel_segments, superpixel_segments
from idexpo_jax.training.train import TrainState, init_train_state, make_train_step

__version__ = "0.1.0"
