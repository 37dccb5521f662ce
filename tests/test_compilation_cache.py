"""experiments/common/compilation_cache: a second process loads the compiled program from disk."""

import os
import subprocess
import sys

_PROGRAM = """
import sys
import jax, jax.numpy as jnp
from experiments.common.compilation_cache import enable_compilation_cache
path = enable_compilation_cache({cache!r})
assert path == {cache!r}, path
# A small program (well under JAX's default 1 s / size thresholds): it must be cached all the same.
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum() * 3.0)
print(float(f(jnp.arange(12.0).reshape(3, 4))))
"""


def _run(code, env=None):
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env)
  return out.stdout.strip()


def _entries(path):
  return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path)
                for f in fs)


def test_second_process_hits_the_cache(tmp_path):
  cache = str(tmp_path / "jax_cache")
  code = _PROGRAM.format(cache=cache)
  first = _run(code)
  written = _entries(cache)
  assert written, "the first run wrote no cache entry"
  second = _run(code)
  assert second == first
  assert _entries(cache) == written  # a hit: nothing compiled, nothing new written


def test_env_var_and_off_switch(tmp_path, monkeypatch):
  from experiments.common import compilation_cache as cc
  code = ("from experiments.common.compilation_cache import enable_compilation_cache as e; "
          "import jax; p = e(); print(p, jax.config.jax_compilation_cache_dir)")
  env = dict(os.environ, **{cc.ENV_VAR: str(tmp_path / "c")})
  assert _run(code, env).split() == [str(tmp_path / "c")] * 2
  env[cc.ENV_VAR] = ""
  assert _run(code, env).split()[0] == "None"
