"""Faithfulness metrics of explanations.

* `curves`: hard insertion/deletion curves of one example and their AUC (`curve_auc`);
* `scores`: `InsertionDeletion`, the batch scores with their protocol stated once;
* `soft_curves`: the soft, differentiable insertion/deletion of ID-ExpO (Yoshikawa & Iwata,
  AISTATS 2024);
* `sensitivity`: sensitivity-n (Ancona et al., ICLR 2018);
* `fidelity`: ExpO's point/neighbourhood fidelity and stability (Plumb et al., NeurIPS 2020).
"""

from idexpo_jax.metrics import curves, fidelity, scores, sensitivity, soft_curves
from idexpo_jax.metrics.curves import insertion_deletion_curves
from idexpo_jax.metrics.fidelity import expo_metrics
from idexpo_jax.metrics.scores import InsertionDeletion, InsertionDeletionScores
from idexpo_jax.metrics.sensitivity import sensitivity_n
from idexpo_jax.metrics.soft_curves import soft_insertion_deletion

__all__ = ("InsertionDeletion", "InsertionDeletionScores", "insertion_deletion_curves",
           "soft_insertion_deletion", "sensitivity_n", "expo_metrics")
