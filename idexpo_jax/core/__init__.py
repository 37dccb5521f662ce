"""The small core every explainer, metric and regulariser stands on.

* `checks`: the argument checks (integer and real options, fractions, class targets, batches) and
  the NaN rule for invalid traced values (`poison`);
* `predictor`: the model contract (`Predictor`, `as_predictor`), output selection (`OUTPUTS`,
  `target_scores`) and input promotion;
* `masking`: units (pixels, segments, features), `grid_segments` and the one masking helper;
* `lstsq`: the one weighted least-squares solver (ridge and sum-constrained);
* `sampling`: fair-coin unit masks and uniform k-subsets;
* `superpixels`: SLIC/quickshift segments through scikit-image;
* `config`: value semantics of the frozen configuration objects;
* `jit`: models as arguments of a jitted function.
"""

from idexpo_jax.core import (checks, config, jit, lstsq, masking, predictor, sampling,
                             superpixels)

__all__ = ("checks", "config", "jit", "lstsq", "masking", "predictor", "sampling",
           "superpixels")
