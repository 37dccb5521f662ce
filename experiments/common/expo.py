"""What the ExpO experiments (`experiments.expo`, `experiments.expo_uci`) share: the methods, their
display names and regularisers, members of a stack of models, and the validation choice of `c`.

Plumb et al., "Regularizing Black-box Models for Improved Interpretability", NeurIPS 2020: a
regulariser's weight is `λ = c · (initial loss / initial regulariser)`, every `c` of a grid
trains as one member of a stack of models, and `c` is chosen on the validation split.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from idexpo_jax.regularisers.expo import expo_fidelity, expo_fidelity_1d, expo_stability

METHODS = ("none", "expo_fidelity", "expo_fidelity_1d", "expo_stability")
NAMES = {"none": "None", "expo_fidelity": "ExpO-Fidelity", "expo_fidelity_1d": "ExpO-1D-Fidelity",
         "expo_stability": "ExpO-Stability"}


def regulariser(cfg, method: str):
  """The regulariser of a method bound to the config's `reg` options (`None` for "none")."""
  r = cfg.reg
  if method == "none":
    return None
  if method == "expo_fidelity":
    return functools.partial(expo_fidelity, n_neighbors=r.fidelity_neighbors or None,
                             sigma=r.fidelity_sigma)
  if method == "expo_fidelity_1d":
    return functools.partial(expo_fidelity_1d, n_neighbors=r.fidelity_1d_neighbors,
                             sigma=r.fidelity_sigma)
  if method == "expo_stability":
    return functools.partial(expo_stability, radius=r.stability_radius)
  raise ValueError(f"unknown method {method!r}; expected one of {METHODS}.")


def member(params, i: int):
  """Member `i` of stacked parameters (leading axis: the members)."""
  return jax.tree.map(lambda p: p[i], params)


def select_c(cfg, val_mse, val_metric, none_val_mse) -> int:
  """Index of the chosen `c`, on validation only: the lowest `val_metric` among the members whose
  validation MSE is within `(1 + cfg.select.mse_tolerance)` of the unregularised model's, the
  lowest validation MSE when none is."""
  ok = val_mse <= (1.0 + cfg.select.mse_tolerance) * none_val_mse
  if not ok.any():
    return int(np.argmin(val_mse))
  return int(np.argmin(np.where(ok, val_metric, np.inf)))
