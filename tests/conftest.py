"""Test configuration: strict dtype promotion on CPU; optionally the second XLA:CPU code path.

float32 is the default, as for users. Float64 references run inside `with jax.enable_x64(True):`
(see `x64` below) or in NumPy. Tolerances follow `tests/tolerances.py`. With
`IDEXPO_SECOND_CPU_PATH=1` (the second pass of `make test`), XLA runs the numerics under
`tolerances.SECOND_CPU_PATH_XLA_FLAGS`, set here before JAX starts (subprocesses inherit it).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if os.environ.get("IDEXPO_SECOND_CPU_PATH") == "1":
  from tolerances import SECOND_CPU_PATH_XLA_FLAGS
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SECOND_CPU_PATH_XLA_FLAGS}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
  return f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
  """Context manager factory: `with x64(): ...` computes in float64."""
  if hasattr(jax, "enable_x64"):
    return lambda: jax.enable_x64(True)
  from jax.experimental import enable_x64  # jax < 0.8 (`make test-min`)
  return enable_x64
