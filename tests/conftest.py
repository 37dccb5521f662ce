"""Test configuration: strict dtype promotion on CPU.

float32 is the default, as for users. Float64 references run inside `with jax.enable_x64(True):`
(see `x64` below) or in NumPy.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
  """Context manager factory: `with x64(): ...` computes in float64."""
  if hasattr(jax, "enable_x64"):
    return lambda: jax.enable_x64(True)
  from jax.experimental import enable_x64  # jax < 0.8 (`make test-min`)
  return enable_x64
