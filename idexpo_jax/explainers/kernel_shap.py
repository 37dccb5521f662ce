"""KernelSHAP with the efficiency constraint solved exactly, differentiable in the model.

Lundberg & Lee, "A unified approach to interpreting model predictions", NeurIPS 2017. With the
value function `v(z) = g(apply_unit_mask(x, z, baseline))` of a binary coalition `z ∈ {0,1}^d`
(a single background row `b`, as `shap.KernelExplainer` with one background sample), the Shapley
values are the solution of the weighted least-squares problem

  `min_φ Σ_z π(z) (v(z) − v(0) − z·φ)²`  s.t.  `Σ_j φ_j = v(1) − v(0)`,

with the Shapley kernel `π(z) = (d − 1) / (C(d, |z|) |z| (d − |z|))` over `0 < |z| < d`.

* Exact regime (`2^d − 2 ≤ n_samples`): all `2^d − 2` coalitions with their exact kernel weights;
  the solution equals the Shapley values exactly (up to floating point).
* Sampling regime: coalition sizes `k ∈ 1..d−1` drawn with probability `∝ (d − 1)/(k (d − k))`
  (the kernel mass of all coalitions of size `k`), then a uniform subset of that size; with
  `paired=True` every drawn coalition is followed by its complement (Covert & Lee, AISTATS 2021).
  The samples then carry equal weights, since they are drawn from the kernel itself.

The constraint is eliminated exactly by `lstsq.constrained_least_squares` (no huge weights).
`output="prob"` explains the softmax probability of the target (`g = p_target`);
`output="logit"` explains the target's logit (the pre-softmax score `l_target`), for which a linear
model `l = Wx + c` gives `φ_i = W_{target,i} (x_i − b_i)`; `"log_prob"` explains `log p_target`
and `"raw"` the model's output column `target` as it is (regression, or a model that already
returns probabilities; `predictor.OUTPUTS`). (`shap`'s `link="logit"` is the
log-odds `log(p/(1 − p))`, which equals this only for two-class logits `(0, s)`.)
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Union, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax.core import masking
from idexpo_jax.core.sampling import uniform_subsets
from idexpo_jax.explainers.lime import check_explainer_args
from idexpo_jax.core.lstsq import constrained_least_squares, weighted_least_squares
from idexpo_jax.core.checks import is_traced, poison, valid_target
from idexpo_jax.core.predictor import as_logits_fn, check_output, promote_input

Array = jax.Array

def shapley_kernel_weight(n_units: int, size) -> np.ndarray:
  """Shapley kernel `π = (d − 1) / (C(d, k) k (d − k))` for sizes `0 < k < d` (float64)."""
  size = np.asarray(size, np.int64)
  binom = np.array([math.comb(n_units, int(k)) for k in size.ravel()], np.float64)
  return (n_units - 1) / (binom.reshape(size.shape) * size * (n_units - size))


@functools.lru_cache(maxsize=32)
def exact_coalitions(n_units: int) -> tuple[np.ndarray, np.ndarray]:
  """All `2^d − 2` proper, non-empty coalitions `(M, d)` (float32) and their Shapley kernel weights.

  The weights are normalised to sum to 1 (the solution does not depend on their scale).
  """
  if not 2 <= n_units <= 20:
    raise ValueError(f"Exact enumeration needs 2 <= d <= 20 units; got d={n_units}.")
  codes = np.arange(1, 2 ** n_units - 1, dtype=np.int64)
  z = ((codes[:, None] >> np.arange(n_units)) & 1).astype(np.float32)
  w = shapley_kernel_weight(n_units, z.sum(1).astype(np.int64))
  return z, (w / w.sum()).astype(np.float32)


def sample_coalitions(key: Array, n_units: int, n_samples: int, *, paired: bool = True,
                      dtype=jnp.float32) -> Array:
  """Coalitions `(N, d)` drawn i.i.d. from the Shapley kernel (`sampler="iid"`; equal weights).

  Sizes `k ∈ 1..d−1` with probability `∝ (d − 1)/(k (d − k))`, then a uniform subset of that size
  (`uniform_subsets`).

  Args:
    key: PRNG key.
    n_units: `d >= 2`.
    n_samples: number of coalitions; with `paired=True`, `n_samples // 2` coalitions are drawn
      and each is followed by its complement (so `N = 2·(n_samples // 2)`).
    paired: add complements.
    dtype: dtype of the returned 0/1 matrix.

  Returns:
    Binary coalitions with `0 < |z| < d`.
  """
  if n_units < 2:
    raise ValueError(f"Sampling coalitions needs d >= 2 units; got d={n_units}.")
  n_draw = n_samples // 2 if paired else n_samples
  sizes = np.arange(1, n_units)
  log_p = jnp.asarray(np.log((n_units - 1) / (sizes * (n_units - sizes))), jnp.float32)
  k_size, k_perm = jax.random.split(key)
  k = 1 + jax.random.categorical(k_size, log_p, shape=(n_draw,))
  z = uniform_subsets(k_perm, n_units, k, dtype=dtype)
  if paired:
    z = jnp.stack([z, 1 - z], axis=1).reshape(2 * n_draw, n_units)
  return z


# Strata with at most this many coalition pairs are drawn without replacement from a table of
# all their subsets; larger ones (where a repeat is unlikely) with replacement, sort-free.
_TABLE_MAX = 1 << 14


def sample_without_replacement(key: Array, n_total: int, n_draw: int) -> Array:
  """`n_draw` distinct indices of `[0, n_total)`, every `n_draw`-subset equally likely.

  Floyd's algorithm (Bentley & Floyd, "Programming pearls: a sample of brilliance", CACM 1987):
  for `j = n_total − n_draw, …, n_total − 1` draw `t` uniform in `[0, j]` and keep `t`, or `j`
  when `t` is already kept. `n_draw` random integers and a scan of `n_draw` steps, instead of one
  uniform score per index and a `top_k` over all `n_total` (5× slower for a stratum of 4060
  pairs on CPU, `benchmarks.tabular`). The indices come in no particular order.
  """
  if not 0 <= n_draw <= n_total:
    raise ValueError(f"`n_draw` must be in [0, n_total={n_total}]; got {n_draw}.")
  js = jnp.arange(n_total - n_draw, n_total, dtype=jnp.int32)
  draws = jax.random.randint(key, (n_draw,), 0, js + 1, dtype=jnp.int32)
  pos = jnp.arange(n_draw)

  def step(kept, inputs):
    i, j, t = inputs
    repeat = jnp.any((kept == t) & (pos < i))
    return kept.at[i].set(jnp.where(repeat, j, t)), None

  kept, _ = jax.lax.scan(step, jnp.full((n_draw,), -1, jnp.int32), (pos, js, draws))
  return kept


class Stratum(NamedTuple):
  """One size stratum of a `CoalitionPlan`: size `k` with its complement size `d − k`.

  Attributes:
    size: `k <= d / 2`.
    n_pairs: pairs `(S, complement)` evaluated.
    n_total: pairs in the stratum: `C(d, k)` (`C(d, k) / 2` when `k = d / 2`).
    weight: regression weight of each evaluated coalition, `π(k) · n_total / n_pairs`
      (the stratum's exact kernel mass spread over its samples).
  """

  size: int
  n_pairs: int
  n_total: int
  weight: float


class Pool(NamedTuple):
  """Strata too small for one pair each, sampled together: a size, then a uniform pair.

  Attributes:
    sizes: the pooled sizes `k <= d / 2` (sorted).
    probs: probability of drawing each size (its share of the pooled mass).
    n_pairs: pairs drawn (with replacement).
    weights: regression weight of a coalition of each size (Horvitz–Thompson).
  """

  sizes: tuple
  probs: tuple
  n_pairs: int
  weights: tuple


@functools.lru_cache(maxsize=128)
def coalition_plan(n_units: int, n_samples: int, sampler: str = "kernel"
                   ) -> tuple[tuple[Stratum, ...], Optional[Pool]]:
  """How `n_samples` coalitions are spent over the size strata (static: depends on `d`, `N`).

  Strata are size pairs `{k, d − k}`, `k = 1..⌊d/2⌋`, each evaluated as coalition/complement
  pairs. Stratum `k = 1` always gets `min(d, N/2)` pairs drawn without replacement (any `d − 1`
  distinct singletons make the constrained regression full rank, so the minimum budget
  `2(d − 1)` is never singular). The others follow `shap.KernelExplainer`'s rule: in order of
  `k`, a stratum is enumerated completely while its share of the remaining budget (by mass)
  covers all of its coalitions; the budget left is split over the remaining strata in proportion
  to their mass (largest remainders; at most all of a stratum); strata whose share is below one
  pair are pooled (`Pool`: a random size, then a uniform pair) so that every size keeps its
  weight in expectation. Mass: the Shapley kernel's
  `Σ_{|S|∈{k,d−k}} π(|S|)` for `sampler="kernel"`; equal per size for `sampler="leverage"`
  (the leverage scores of the KernelSHAP regression are `∝ 1/C(d, |S|)`, Musco & Witter, ICLR
  2025, "Provably accurate Shapley value estimation via leverage score sampling").
  """
  if sampler not in ("kernel", "leverage"):
    raise ValueError(f"`sampler` must be 'kernel' or 'leverage' here; got {sampler!r}.")
  d = n_units
  budget = n_samples // 2  # pairs
  if budget < d - 1:
    raise ValueError(f"`n_samples` must be >= {2 * (d - 1)} for d={d}; got {n_samples}.")
  strata = list(range(1, d // 2 + 1))
  n_total = {k: math.comb(d, k) // (2 if 2 * k == d else 1) for k in strata}
  sizes_in = {k: 1 if 2 * k == d else 2 for k in strata}
  if sampler == "kernel":
    mass = {k: sizes_in[k] * (d - 1) / (k * (d - k)) for k in strata}
  else:
    mass = {k: float(sizes_in[k]) for k in strata}
  pairs = {1: min(n_total[1], budget)}
  left = budget - pairs[1]
  rest = strata[1:]
  while rest and left * mass[rest[0]] / sum(mass[k] for k in rest) >= n_total[rest[0]] - 1e-8:
    pairs[rest[0]] = n_total[rest[0]]
    left -= n_total[rest[0]]
    rest = rest[1:]
  pool = None
  if rest and left > 0:
    share = {k: left * mass[k] / sum(mass[j] for j in rest) for k in rest}
    pooled = [k for k in rest if share[k] < 1]
    if pooled:  # strata expecting < 1 pair share random draws, so no size goes unrepresented
      n_pool = max(1, int(round(sum(share[k] for k in pooled))))
      rest = [k for k in rest if k not in pooled]
      left -= n_pool
      if rest and left < len(rest):  # too few pairs for the others too: pool them all
        pooled, n_pool, left, rest = pooled + rest, n_pool + left, 0, []
      m_pool = sum(mass[k] for k in pooled)
      pi_k = shapley_kernel_weight(d, np.array(pooled))
      # Size k drawn with probability m_k / M, then a uniform pair: each coalition's weight is
      # π(k) · n_total_k · M / (n_pool · m_k) (Horvitz–Thompson).
      pool = Pool(tuple(pooled), tuple(mass[k] / m_pool for k in pooled), n_pool,
                  tuple(float(pi_k[i] * n_total[k] * m_pool / (n_pool * mass[k]))
                        for i, k in enumerate(sorted(pooled))))
    if rest:
      share_arr = np.array([left * mass[k] / sum(mass[j] for j in rest) for k in rest])
      caps = np.array([n_total[k] for k in rest])
      n = np.minimum(np.floor(share_arr).astype(np.int64), caps)
      order = np.argsort(-(share_arr - np.floor(share_arr)), kind="stable")
      extra = left - int(n.sum())
      for i in itertools.cycle(order):
        if extra <= 0 or np.all(n >= caps):
          break
        if n[i] < caps[i]:
          n[i] += 1
          extra -= 1
      pairs.update({k: int(c) for k, c in zip(rest, n)})
  pi = shapley_kernel_weight(d, np.array(strata))
  return (tuple(Stratum(k, pairs[k], n_total[k], float(pi[i] * n_total[k] / pairs[k]))
                for i, k in enumerate(strata) if pairs.get(k, 0) > 0), pool)


@functools.lru_cache(maxsize=64)
def _stratum_table(n_units: int, size: int) -> np.ndarray:
  """All pairs' representatives of stratum `size` as 0/1 rows (`size = d/2`: those with unit 0)."""
  rows = [c for c in itertools.combinations(range(n_units), size)
          if 2 * size != n_units or c[0] == 0]
  z = np.zeros((len(rows), n_units), np.float32)
  for i, c in enumerate(rows):
    z[i, list(c)] = 1.0
  return z


def stratified_coalitions(key: Array, n_units: int, n_samples: int, *, sampler: str = "kernel",
                          dtype=jnp.float32) -> tuple[Array, Array]:
  """Coalitions and their regression weights from `coalition_plan` (paired, per-size weights).

  A completely enumerated stratum is a constant; the others draw `n_pairs` of their pairs
  uniformly, without replacement (`sample_without_replacement` from a table of all pairs) when
  the stratum has at most `2^14` pairs, else with replacement
  (`uniform_subsets`). Each coalition is followed by its complement.

  Returns:
    `(z, w)`: `(2P, d)` 0/1 coalitions and `(2P,)` weights, `P = Σ n_pairs`.
  """
  plan, pool = coalition_plan(n_units, n_samples, sampler)
  k_table, k_size, k_sub = jax.random.split(key, 3)
  zs, ws = [], []
  # Strata drawn from their tables (complete, or without replacement).
  tabled = [s for s in plan if s.n_pairs == s.n_total or s.n_total <= _TABLE_MAX]
  for k_s, s in zip(jax.random.split(k_table, max(len(tabled), 1)), tabled):
    table = jnp.asarray(_stratum_table(n_units, s.size), dtype)
    if s.n_pairs < s.n_total:
      table = table[sample_without_replacement(k_s, s.n_total, s.n_pairs)]
    zs.append(table)
    ws.append(jnp.full((s.n_pairs,), s.weight, jnp.float32))
  # Large strata and the pool: one sort-free draw with replacement for all of them.
  big = [s for s in plan if s not in tabled]
  sizes = [jnp.asarray(np.repeat([s.size for s in big], [s.n_pairs for s in big]), jnp.int32)]
  ws += [jnp.asarray(np.repeat([s.weight for s in big], [s.n_pairs for s in big]), jnp.float32)]
  if pool is not None:
    pick = jax.random.categorical(k_size, jnp.log(jnp.asarray(pool.probs, jnp.float32)),
                                  shape=(pool.n_pairs,))
    sizes.append(jnp.asarray(pool.sizes, jnp.int32)[pick])
    ws.append(jnp.asarray(pool.weights, jnp.float32)[pick])
  sizes = jnp.concatenate(sizes)
  if sizes.shape[0]:
    zs.append(uniform_subsets(k_sub, n_units, sizes, dtype=dtype))
  z, w = jnp.concatenate(zs), jnp.concatenate(ws)
  z = jnp.stack([z, 1 - z], axis=1).reshape(2 * z.shape[0], n_units)
  w = jnp.repeat(w, 2)
  return z, (w / w.sum()).astype(dtype)


_SAMPLERS = ("kernel", "leverage", "iid")
_MAX_CV_UNITS = 16


@functools.lru_cache(maxsize=8)
def _shapley_formula_weights(n_units: int) -> np.ndarray:
  """`|S|! (d − |S| − 1)! / d!` for every coalition `S` of the other `d − 1` units, shape (2,)*(d−1)."""
  size = np.indices((2,) * (n_units - 1)).sum(0)
  fact = np.array([math.factorial(k) for k in range(n_units + 1)], np.float64)
  return fact[size] * fact[n_units - 1 - size] / fact[n_units]


def exact_shapley_from_table(values: Array) -> Array:
  """Exact Shapley values of a game given on all `2^d` coalitions (code `Σ_i z_i 2^i`).

  `φ_i = Σ_{S∌i} |S|!(d−|S|−1)!/d! · (v(S ∪ i) − v(S))`, the subset formula, vectorised.
  """
  d = int(np.log2(values.shape[0]))
  table = values.reshape((2,) * d)  # axis d − 1 − i holds unit i
  wts = jnp.asarray(_shapley_formula_weights(d), values.dtype)
  return jnp.stack([jnp.sum(wts * (jnp.take(table, 1, axis=d - 1 - i)
                                   - jnp.take(table, 0, axis=d - 1 - i))) for i in range(d)])


_CONTROL_VARIATES = (False, True, "additive", "pairwise")
_CV_RIDGE = 0.01  # relative ridge on the pairwise terms (measured, benchmarks/error_vs_budget)


def _pair_halves(a: Array) -> tuple[Array, Array]:
  """Rows `(2P, ...)` in coalition/complement order -> their odd and even halves `(P, ...)`."""
  a = a.reshape((a.shape[0] // 2, 2) + a.shape[1:])
  return (a[:, 0] - a[:, 1]) / 2, (a[:, 0] + a[:, 1]) / 2


def pairwise_features(u: Array) -> Array:
  """`u_i u_j` for `i < j` (`(N, d(d − 1)/2)`, the order of `np.triu_indices(d, 1)`)."""
  i, j = np.triu_indices(u.shape[-1], 1)
  return u[..., i] * u[..., j]


def fit_pairwise_logits(z: Array, logits: Array, w: Array, *, ridge: float):
  """Logits `l̂(u) = c + βᵀu + Σ_{i<j} B_ij u_i u_j` in `u = z − ½`, fitted on paired coalitions.

  With the rows in coalition/complement order (`u`, `−u`, equal weights), the weighted
  least-squares fit splits exactly into two independent ones: the odd halves
  `(l(u) − l(−u))/2` fix `β` (no intercept, no penalty) and the even halves `(l(u) + l(−u))/2`
  fix `c` and `B` (ridge `ridge · Σw / 16` on `B`, the `u_i u_j = ±¼` features' scale), both by
  `lstsq.weighted_least_squares`.

  Returns:
    `(beta (d, K), B (d, d) per logit as (d, d, K) symmetric with zero diagonal, c (K,))`.
  """
  d = z.shape[1]
  u_odd, _ = _pair_halves(z - 0.5)
  l_odd, l_even = _pair_halves(logits)
  w_pair = _pair_halves(w)[1]
  beta, _ = weighted_least_squares(u_odd, l_odd, w_pair, fit_intercept=False)
  coef, c = weighted_least_squares(pairwise_features(u_odd), l_even, w_pair,
                                   ridge=ridge * w_pair.sum() / 16)
  i, j = np.triu_indices(d, 1)
  b = jnp.zeros((d, d) + coef.shape[1:], coef.dtype).at[i, j].set(coef).at[j, i].set(coef)
  return beta, b, c


def logit_surrogate_shapley(z: Array, logits: Array, w: Array, target, *, prob: bool,
                            pairwise: bool = False, ridge: float = 1.0):
  """The control variate: a surrogate of the logits fitted to the samples, and its Shapley values.

  Additive (`pairwise=False`): `l̂(z) = c + Cᵀz`, the weighted least-squares fit of all `K`
  logits on the coalitions (`lstsq.weighted_least_squares`). Pairwise: `l̂` adds the terms
  `B_ij u_i u_j` (`fit_pairwise_logits`; needs the rows in coalition/complement order). The
  surrogate game is `g(z) = softmax(l̂(z))_target` (`prob`) or `l̂_target(z)`. Its exact Shapley
  values come from all `2^d` coalitions of the cheap surrogate (`d ≤ 16`; the table of logits is
  built by doubling, `O(2^d d K)`, no model evaluation).

  Why pairwise terms help: with paired coalitions KernelSHAP is exact for the even part of a
  game in `u = z − ½` and for its interactions of order ≤ 2, so only a surrogate's odd parts of
  order ≥ 3 reduce the error; `softmax` of pairwise logits has such parts, close to the model's
  when its logits are nearly quadratic in the units.

  Returns:
    `(g(z) (N,), φ(g) (d,))`.
  """
  d = z.shape[1]

  def game(lg):
    return jax.nn.softmax(lg, axis=-1)[..., target] if prob else lg[..., target]

  if not pairwise:
    coef, intercept = weighted_least_squares(z, logits, w)
    table = intercept[None]
    for i in range(d):  # logits of every coalition, code Σ z_i 2^i
      table = jnp.concatenate([table, table + coef[i]], axis=0)
    return game(z @ coef + intercept), exact_shapley_from_table(game(table))
  beta, b, c = fit_pairwise_logits(z, logits, w, ridge=ridge)
  u = z - 0.5
  fitted = c + u @ beta + 0.5 * jnp.einsum("ni,ijk,nj->nk", u, b, u)
  # Doubling over units: flipping unit i from u_i = −½ to +½ adds β_i + Σ_j B_ij u_j, where the
  # units j < i are those of the table row and the units j > i are still at −½.
  table = (c - 0.5 * beta.sum(0) + 0.125 * b.sum((0, 1)))[None]
  u_rows = jnp.full((1, d), -0.5, z.dtype)
  for i in range(d):
    table = jnp.concatenate([table, table + beta[i] + u_rows @ b[:, i]], axis=0)
    u_rows = jnp.concatenate([u_rows, u_rows.at[:, i].set(0.5)], axis=0)
  return game(fitted), exact_shapley_from_table(game(table))


def kernel_shap(logits_fn, x: Array, target, key: Array, *, segments: Optional[Array] = None,
                baseline, n_samples: int = 512, sampler: str = "kernel",
                control_variate: Union[bool, str] = False, paired: bool = True,
                output: str = "prob",
                chunk_size: Optional[int] = None) -> Array:
  """KernelSHAP attribution of one example with a single background row (module docstring).

  Args:
    logits_fn: `xb -> logits (B, K)` or a `Predictor` (`(B,)` or `(B, 1)` with `output="raw"`).
    x: one example without batch axis: tabular `(D,)` or an image `(H, W, C)`. Integer `x` is
      promoted to the float dtype of the model's output.
    target: scalar class index in `[0, K)`: a concrete one outside raises ValueError, a traced one
      outside (under `jit`/`vmap`) gives NaN.
    key: PRNG key for the coalitions (unused in the exact regime).
    segments: optional `(H, W)` int map of unit ids `0..d-1`; pixels otherwise.
    baseline: the background row, broadcastable to `x`.
    n_samples: coalition budget (model evaluations besides `v(1)` and `v(0)`); all `2^d − 2`
      coalitions are enumerated when they fit. Sampling needs at least `2(d − 1)` (`paired`) or
      `d − 1` coalitions for the `d − 1` unknowns left after the constraint; fewer raise. The
      stratified samplers are full rank at any accepted budget (stratum 1 draws distinct
      singletons); `sampler="iid"` can repeat coalitions and be singular near the minimum, which
      gives NaN (never a silent minimum-norm guess).
    sampler: "kernel" (default; complete small/large sizes, the rest stratified by kernel mass,
      without replacement, `coalition_plan`), "leverage" (the same with equal mass per size,
      Musco & Witter 2025) or "iid" (i.i.d. draws from the kernel, equal weights).
    control_variate: regress only the residual `v − g` of a surrogate game `g` whose Shapley
      values are known exactly (`logit_surrogate_shapley`): False (default), "additive" (or
      True; `softmax` of logits additive in the units) or "pairwise" (logits with pairwise
      terms, needs `paired=True`; 3–4× less error than the default at equal budget on the
      benchmark's MLP and CNN, docs/benchmarks.md). Needs `d <= 16` (the surrogate is enumerated
      over `2^d` coalitions: no model evaluation, but `O(2^d d K)` arithmetic per explanation)
      and `output` "prob" or "logit". Sum and differentiability are kept.
    paired: add the complement of every sampled coalition (the stratified samplers always do).
    output: "prob" (softmax probability of `target`), "log_prob", "logit" (its logit) or "raw"
      (the model's output as it is); "prob"/"log_prob" on a one-output model raise ValueError.
    chunk_size: optional number of masked inputs per model call (`jax.lax.map` over chunks).

  Returns:
    `φ` of shape `(d,)` with `Σφ = v(1) − v(0)` exactly (up to rounding).
  """
  check_output(output)
  if not any(control_variate is c or (isinstance(c, str) and control_variate == c)
             for c in _CONTROL_VARIATES):
    raise ValueError(f"`control_variate` must be one of {_CONTROL_VARIATES}; got "
                     f"{control_variate!r}.")
  if control_variate == "pairwise" and not paired:
    raise ValueError("`control_variate='pairwise'` needs `paired=True` (its fit splits each "
                     "coalition/complement pair into odd and even halves).")
  if control_variate and output not in ("prob", "logit"):
    raise ValueError(f"`control_variate=True` needs `output` 'prob' or 'logit' (its surrogate "
                     f"game is built from the logits); got output={output!r}.")
  if sampler not in _SAMPLERS:
    raise ValueError(f"`sampler` must be one of {_SAMPLERS}; got {sampler!r}.")
  if not paired and sampler != "iid":
    raise ValueError(f"`paired=False` needs `sampler='iid'`; the {sampler!r} sampler always "
                     f"evaluates coalition/complement pairs.")
  x = promote_input(logits_fn, x)
  d, n_samples = check_explainer_args(x, target, segments, n_samples, minimum=2)
  masking.check_baseline(x, baseline)
  needed = 2 * (d - 1) if paired else d - 1
  if n_samples < min(needed, 2 ** d - 2):
    raise ValueError(
        f"`n_samples` must be >= {needed} for d={d} units with paired={paired}: the sampled "
        f"regression has d − 1 = {d - 1} unknowns"
        f"{' and a coalition and its complement give one equation (up to sign)' if paired else ''}"
        f" (or >= 2^d − 2 = {2 ** d - 2} for exact enumeration); got {n_samples}. Fewer give an "
        f"under-determined (singular) system.")
  if d == 1:  # one unit (efficiency): its Shapley value is the whole difference v(1) − v(0)
    values = masking.evaluate_masked(as_logits_fn(logits_fn), x, jnp.asarray([[1], [0]], x.dtype),
                                     target, baseline=baseline, segments=segments,
                                     chunk_size=chunk_size, output=output)
    return (values[0] - values[1])[None]
  singular_nan = False
  if 2 ** d - 2 <= n_samples:
    z_np, w_np = exact_coalitions(d)
    z, w = jnp.asarray(z_np, x.dtype), jnp.asarray(w_np, x.dtype)
  elif sampler == "iid":
    z = sample_coalitions(key, d, n_samples, paired=paired, dtype=x.dtype)
    w = jnp.ones((z.shape[0],), x.dtype)
    singular_nan = True
  else:
    z, w = stratified_coalitions(key, d, n_samples, sampler=sampler, dtype=x.dtype)
  exact = 2 ** d - 2 <= n_samples
  if control_variate and not exact and d > _MAX_CV_UNITS:
    raise ValueError(f"`control_variate=True` needs d <= {_MAX_CV_UNITS} units (its surrogate is "
                     f"enumerated over 2^d coalitions); got d={d}.")
  z_all = jnp.concatenate([z, jnp.ones((1, d), x.dtype), jnp.zeros((1, d), x.dtype)])
  fn = as_logits_fn(logits_fn)
  # The exact and stratified designs have full rank by construction: one Cholesky solve. The
  # i.i.d. design can repeat coalitions: the rank-revealing solve, NaN when singular.
  solve = functools.partial(constrained_least_squares,
                            singular="nan" if singular_nan else "min_norm",
                            method="eigh" if singular_nan else "cholesky")
  if not control_variate or exact:
    values = masking.evaluate_masked(fn, x, z_all, target, baseline=baseline, segments=segments,
                                     chunk_size=chunk_size, output=output)
    v_full, v_empty = values[-2], values[-1]
    return solve(z, values[:-2], w, total=v_full - v_empty, offset=v_empty)
  logits = masking.evaluate_masked(fn, x, z_all, target, baseline=baseline, segments=segments,
                                   chunk_size=chunk_size, output="logits")
  values = (jax.nn.softmax(logits, axis=-1)[:, target] if output == "prob"
            else logits[:, target])
  w_all = jnp.concatenate([w, jnp.full((2,), jnp.max(w), w.dtype)])
  g, phi_g = logit_surrogate_shapley(z_all, logits, w_all, target, prob=output == "prob",
                                     pairwise=control_variate == "pairwise", ridge=_CV_RIDGE)
  r = values - g
  total = values[-2] - values[-1] - phi_g.sum()  # Σφ = v(1) − v(0) exactly
  phi = phi_g + solve(z, r[:-2], w, total=total, offset=r[-1])
  if is_traced(target):  # a traced target outside [0, K) gives NaN (module rule)
    phi = poison(phi, valid_target(target, logits.shape[-1]))
  return phi
