"""Regularisers: each a plain term `(...) -> (scalar, aux)` to add to a loss.

* `idexpo.IdExpo`: the soft insertion/deletion penalty of ID-ExpO (Yoshikawa & Iwata, AISTATS
  2024), for any explainer;
* `rrr`: input-gradient penalties and "find another explanation" (Ross, Hughes & Doshi-Velez,
  IJCAI 2017);
* `expo`: ExpO's fidelity and stability regularisers (Plumb et al., NeurIPS 2020).
"""

from idexpo_jax.regularisers import expo, idexpo, rrr
from idexpo_jax.regularisers.expo import expo_fidelity, expo_fidelity_1d, expo_stability
from idexpo_jax.regularisers.idexpo import IdExpo
from idexpo_jax.regularisers.rrr import find_another_explanation, rrr_penalty

__all__ = ("IdExpo", "rrr_penalty", "find_another_explanation", "expo_fidelity",
           "expo_fidelity_1d", "expo_stability")
