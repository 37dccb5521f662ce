"""The ExpO regulariser of a method name, bound to a config's `reg` options (shared by the
`expo` and `expo_uci` experiments)."""

from __future__ import annotations

import functools

from idexpo_jax.regularisers.expo import expo_fidelity, expo_fidelity_1d, expo_stability

METHODS = ("none", "expo_fidelity", "expo_fidelity_1d", "expo_stability")


def regulariser(cfg, method: str):
  """The bound regulariser of a method (`None` for "none")."""
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
