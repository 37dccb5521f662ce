"""Imports of optional dependencies that name the extra to install when they are missing.

The library core needs only jax, flax, optax, chex, numpy and tqdm; checkpoints (orbax), plots
(matplotlib), scikit-learn's data sets and tfds data sources come with the `experiments` extra
(`pip install 'idexpo_jax[experiments]'`). Modules import them inside the functions that use
them, through `require`, so that importing the library never needs them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The PyPI distribution of each optional module (where the names differ).
_DISTRIBUTIONS = {
    "orbax.checkpoint": "orbax-checkpoint",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "sklearn.datasets": "scikit-learn",
    "tensorflow_datasets": "tensorflow-datasets",
}


def require(module: str, extra: str, *, what: str) -> ModuleType:
  """Imports `module`, or raises an `ImportError` naming the extra that provides it.

  Args:
    module: the module to import, e.g. "orbax.checkpoint".
    extra: the idexpo_jax extra that installs it, e.g. "experiments".
    what: the feature that needs it, for the message (e.g. "checkpoints").

  Returns:
    The imported module.
  """
  try:
    return importlib.import_module(module)
  except ImportError as e:
    dist = _DISTRIBUTIONS.get(module, module.split(".")[0])
    raise ImportError(f"idexpo_jax {what} need the optional package `{dist}` (module "
                      f"`{module}`), which is not installed: pip install "
                      f"'idexpo_jax[{extra}]' (or pip install {dist}).") from e
