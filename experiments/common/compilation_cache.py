"""JAX's persistent compilation cache for the experiment drivers.

Every driver calls `enable_compilation_cache()` first thing in its `main`, so a second run of the
same experiment loads its compiled steps from disk instead of compiling them again (measured in
docs/benchmarks.md, "Compile time"). The directory is `$IDEXPO_JAX_CACHE_DIR` if set (an empty
value turns the cache off), else `~/.cache/idexpo_jax/jax`. Every program is cached, however
short its compilation or small its executable: the CPU steps of the small experiments compile in
seconds, below JAX's default one-second threshold for some of their programs.
"""

from __future__ import annotations

import os
from typing import Optional

import jax

ENV_VAR = "IDEXPO_JAX_CACHE_DIR"
DEFAULT_DIR = os.path.join("~", ".cache", "idexpo_jax", "jax")


def enable_compilation_cache(cache_dir: Optional[str] = None) -> Optional[str]:
  """Turns on JAX's persistent compilation cache for this process.

  Args:
    cache_dir: the cache directory; default `$IDEXPO_JAX_CACHE_DIR`, else
      `~/.cache/idexpo_jax/jax`. An empty string leaves the cache off.

  Returns:
    The absolute cache directory, or None when the cache stays off.
  """
  if cache_dir is None:
    cache_dir = os.environ.get(ENV_VAR, DEFAULT_DIR)
  if not cache_dir:
    return None
  cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
  os.makedirs(cache_dir, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no size limit
  return cache_dir
