"""The small core every explainer, metric and regulariser stands on.

* `predictor`: the model contract (`Predictor`, `as_predictor`), output selection (`OUTPUTS`,
  `target_scores`), target and input checks, and the NaN rule for invalid traced values;
* `masking`: units (pixels, segments, features), `grid_segments` and the one masking helper;
* `lstsq`: the one weighted least-squares solver (ridge and sum-constrained);
* `sampling`: fair-coin unit masks and uniform k-subsets;
* `superpixels`: SLIC/quickshift segments through scikit-image;
* `config`: value semantics of the frozen configuration objects;
* `jit`: models as arguments of a jitted function.
"""

from idexpo_jax.core import config, jit, lstsq, masking, predictor, sampling, superpixels

__all__ = ("config", "jit", "lstsq", "masking", "predictor", "sampling", "superpixels")
