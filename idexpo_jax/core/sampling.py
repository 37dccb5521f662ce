"""The random designs the explainers and metrics draw: fair-coin masks and uniform k-subsets.

* `random_binary_masks`: i.i.d. Bernoulli(½) unit masks (LIME's samples), optionally antithetic.
* `uniform_subsets`: uniform random subsets of given sizes (KernelSHAP's coalitions of a size,
  sensitivity-n's removed sets).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def random_binary_masks(key: Array, n_rows: int, n_units: int, *, paired: bool = False,
                        dtype=jnp.float32) -> Array:
  """`(n_rows, n_units)` i.i.d. Bernoulli(½) 0/1 entries, unpacked from random 32-bit words.

  Every bit of `jax.random.bits` is an exact fair coin, so one word gives 32 entries (instead of
  one uniform per entry, as `jax.random.bernoulli` draws). With `paired=True`, rows come in
  antithetic pairs: rows `2i` are drawn, rows `2i + 1 = 1 − row 2i` (a last odd row is unpaired).
  """
  n_draw = -(-n_rows // 2) if paired else n_rows
  n_bits = n_draw * n_units
  words = jax.random.bits(key, (-(-n_bits // 32),), jnp.uint32)
  bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
  z = bits.reshape(-1)[:n_bits].reshape(n_draw, n_units).astype(dtype)
  if paired:
    z = jnp.stack([z, 1 - z], axis=1).reshape(2 * n_draw, n_units)[:n_rows]
  return z


def uniform_subsets(key: Array, n_units: int, sizes: Array, *, dtype=jnp.float32) -> Array:
  """Uniform random subsets of the given sizes, `(N, d)` 0/1 rows, without sorting.

  Selection sampling (Knuth, TAOCP vol. 2, Algorithm 3.4.2 S): unit `i` joins the subset with
  probability `(k − c_i) / (d − i)`, where `c_i` units are already chosen, which gives every
  `k`-subset probability `1 / C(d, k)`. One uniform per unit and a scan over the `d` units; no
  sort (XLA's CPU sort was most of the sampling time).

  Args:
    key: PRNG key.
    n_units: `d`.
    sizes: int sizes `(N,)` with `0 <= k <= d`.
    dtype: dtype of the returned matrix.
  """
  sizes = jnp.asarray(sizes)
  u = jax.random.uniform(key, (n_units, sizes.shape[0]))
  remaining = jnp.arange(n_units, 0, -1, dtype=u.dtype)

  def step(left, inputs):
    ui, rem = inputs
    take = ui * rem < left
    return left - take.astype(left.dtype), take

  _, taken = jax.lax.scan(step, sizes.astype(u.dtype), (u, remaining))
  return taken.T.astype(dtype)
