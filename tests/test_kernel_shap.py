"""KernelSHAP vs brute-force Shapley values (float64), the `shap` package and closed forms."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import shap
from jax.test_util import check_grads

from idexpo_jax.regularisers.idexpo import IdExpo
from hypothesis import given, settings, strategies as st

from idexpo_jax.explainers.kernel_shap import (coalition_plan, exact_shapley_from_table,
                                    fit_pairwise_logits, kernel_shap, logit_surrogate_shapley,
                                    sample_coalitions, shapley_kernel_weight,
                                    stratified_coalitions, uniform_subsets)
from idexpo_jax.core.masking import grid_segments
from tolerances import F32, f32


def init_params(key, d_in, n_classes=3, hidden=5):
  k1, k2, k3 = jax.random.split(key, 3)
  return {"w1": jax.random.normal(k1, (d_in, hidden)) / np.sqrt(d_in),
          "b1": jax.random.normal(k2, (hidden,)),
          "w2": jax.random.normal(k3, (hidden, n_classes))}


def logits(params, xb):
  h = jax.nn.softplus(xb.reshape(xb.shape[0], -1) @ params["w1"] + params["b1"])
  return h @ params["w2"]


def numpy_value(params, output, target):
  """The explained value in float64 NumPy (independent of the JAX model code)."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}

  def value(xb):
    out = np.logaddexp(0.0, xb.reshape(xb.shape[0], -1) @ p["w1"] + p["b1"]) @ p["w2"]
    if output == "logit":
      return out[:, target]
    out = np.exp(out - out.max(1, keepdims=True))
    return (out / out.sum(1, keepdims=True))[:, target]
  return value


def brute_force_shapley(value, x, b, unit_of):
  """Shapley values by the permutation-free subset formula, every coalition evaluated exactly."""
  d = int(unit_of.max()) + 1
  subsets = list(itertools.product([0, 1], repeat=d))
  xs = np.stack([np.where(np.asarray(s)[unit_of] > 0, x, b) for s in subsets])
  v = dict(zip(subsets, value(xs)))
  phi = np.zeros(d)
  for s in subsets:
    k = sum(s)
    for i in range(d):
      if not s[i]:
        with_i = s[:i] + (1,) + s[i + 1:]
        phi[i] += math.factorial(k) * math.factorial(d - k - 1) / math.factorial(d) * (
            v[with_i] - v[s])
  return phi


@pytest.mark.parametrize("d,output,image", [(3, "prob", False), (8, "prob", False),
                                            (6, "logit", False), (4, "prob", True)])
def test_exact_regime_equals_brute_force_shapley(d, output, image):
  shape = (4, 4, 2) if image else (d,)
  seg = grid_segments(4, 4, 2) if image else None
  params = init_params(jax.random.PRNGKey(d), int(np.prod(shape)))
  x = jax.random.normal(jax.random.PRNGKey(1), shape)
  b = jnp.full(shape, 0.3)
  phi = jax.jit(lambda x: kernel_shap(functools.partial(logits, params), x, 2,
                                      jax.random.PRNGKey(0), segments=seg, baseline=b,
                                      output=output))(x)
  unit_of = (np.broadcast_to(seg[..., None], shape) if image else np.arange(d))
  ref = brute_force_shapley(numpy_value(params, output, 2), np.asarray(x, np.float64),
                            np.asarray(b, np.float64), unit_of)
  np.testing.assert_allclose(phi, ref, **f32(scale=2))


def test_exact_regime_in_float64(x64):
  with x64():
    params = jax.tree.map(lambda a: a.astype(jnp.float64), init_params(jax.random.PRNGKey(0), 7))
    x = jax.random.normal(jax.random.PRNGKey(1), (7,), jnp.float64)
    b = jnp.zeros((7,), jnp.float64)
    phi = kernel_shap(functools.partial(logits, params), x, 0, jax.random.PRNGKey(0), baseline=b)
    ref = brute_force_shapley(numpy_value(params, "prob", 0), np.asarray(x), np.asarray(b),
                              np.arange(7))
    np.testing.assert_allclose(phi, ref, atol=1e-12)


@pytest.mark.parametrize("output", ["prob", "logit"])
def test_matches_shap_kernel_explainer_with_one_background_row(output):
  d = 6
  params = init_params(jax.random.PRNGKey(2), d)
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (d,)), np.float64)
  b = np.linspace(-1.0, 1.0, d)
  explainer = shap.KernelExplainer(numpy_value(params, output, 1), b[None])
  ref = explainer.shap_values(x[None], silent=True)[0]
  phi = jax.jit(lambda x: kernel_shap(functools.partial(logits, params), x, 1,
                                      jax.random.PRNGKey(0), baseline=jnp.asarray(b, jnp.float32),
                                      output=output))(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(phi, ref, **f32(scale=2))


@pytest.mark.parametrize("d,n_samples", [(6, 512), (12, 256)])
def test_affine_probability_recovers_weight_times_displacement(d, n_samples):
  w = jnp.linspace(-0.03, 0.04, d)
  b = jnp.linspace(-1.0, 1.0, d)
  x = jax.random.normal(jax.random.PRNGKey(5), (d,))

  def affine(xb):  # two classes; p_1(x) = 0.5 + w·x exactly
    q = 0.5 + xb @ w
    return jnp.stack([jnp.log1p(-q), jnp.log(q)], axis=-1)

  phi = jax.jit(lambda x: kernel_shap(affine, x, 1, jax.random.PRNGKey(0), baseline=b,
                                      n_samples=n_samples))(x)
  np.testing.assert_allclose(phi, w * (x - b), **F32)


@pytest.mark.parametrize("d,n_samples", [(6, 512), (12, 256)])
def test_linear_model_logit_output_is_exact(d, n_samples):
  w = jax.random.normal(jax.random.PRNGKey(6), (d, 3))
  b = jnp.linspace(-1.0, 1.0, d)
  x = jax.random.normal(jax.random.PRNGKey(7), (d,))
  phi = jax.jit(lambda x: kernel_shap(lambda xb: xb @ w + 1.0, x, 2, jax.random.PRNGKey(0),
                                      baseline=b, n_samples=n_samples, output="logit"))(x)
  np.testing.assert_allclose(phi, w[:, 2] * (x - b), atol=1e-5)


def test_efficiency_holds_to_float32_rounding_in_the_sampling_regime():
  d = 20
  params = init_params(jax.random.PRNGKey(8), d)
  x = jax.random.normal(jax.random.PRNGKey(9), (d,))
  b = jnp.zeros((d,))
  phi = jax.jit(lambda x: kernel_shap(functools.partial(logits, params), x, 0,
                                      jax.random.PRNGKey(0), baseline=b, n_samples=128))(x)
  value = numpy_value(params, "prob", 0)
  total = value(np.asarray(x, np.float64)[None])[0] - value(np.zeros((1, d)))[0]
  eps = np.finfo(np.float32).eps
  assert abs(float(jnp.sum(phi)) - total) <= 4 * d * eps * max(1.0, float(jnp.abs(phi).sum()))


def test_sampled_coalitions_follow_the_shapley_kernel():
  d, n = 7, 40000
  z = np.asarray(jax.jit(lambda k: sample_coalitions(k, d, n))(jax.random.PRNGKey(0)))
  assert z.shape == (n, d)
  np.testing.assert_array_equal(z[0::2] + z[1::2], 1.0)  # paired complements
  sizes = z[0::2].sum(1).astype(int)
  assert sizes.min() >= 1 and sizes.max() <= d - 1
  k = np.arange(1, d)
  expected = (d - 1) / (k * (d - k))
  expected /= expected.sum()
  freq = np.bincount(sizes, minlength=d)[1:] / len(sizes)
  assert np.all(np.abs(freq - expected) < 5 * np.sqrt(expected * (1 - expected) / len(sizes)))
  # Given its size, a coalition is a uniform subset: every unit is in it with probability k/d.
  for size in (1, 3):
    rows = z[0::2][sizes == size]
    np.testing.assert_allclose(rows.mean(0), size / d, atol=5 * np.sqrt(1 / (4 * len(rows))))


def test_sampling_regime_approaches_exact_shapley_values():
  d = 8
  params = init_params(jax.random.PRNGKey(10), d)
  x = 2.0 * jax.random.normal(jax.random.PRNGKey(11), (d,))
  b = jnp.zeros((d,))
  ref = brute_force_shapley(numpy_value(params, "prob", 1), np.asarray(x, np.float64),
                            np.zeros(d), np.arange(d))
  keys = jax.random.split(jax.random.PRNGKey(0), 8)
  phis = jax.jit(jax.vmap(lambda k: kernel_shap(functools.partial(logits, params), x, 1, k,
                                                baseline=b, n_samples=200)))(keys)
  err = np.abs(np.asarray(phis) - ref).max(1)
  assert np.all(err < 0.1 * np.abs(ref).max()), (err, np.abs(ref).max())
  # The mean over independent keys is closer still (the estimator is nearly unbiased).
  assert np.abs(np.asarray(phis).mean(0) - ref).max() < 0.5 * err.mean()


@pytest.mark.parametrize("sampler,cv", [("kernel", False), ("iid", False), ("kernel", True),
                                        ("kernel", "pairwise")])
def test_gradients_match_finite_differences(x64, sampler, cv):
  d = 9  # sampling regime (the exact regime differs only in the constant Z and weights)
  with x64():
    params = jax.tree.map(lambda a: a.astype(jnp.float64), init_params(jax.random.PRNGKey(0), d))
    x = jax.random.normal(jax.random.PRNGKey(1), (d,), jnp.float64)
    r = jax.random.normal(jax.random.PRNGKey(2), (d,), jnp.float64)

    def loss(params):
      phi = kernel_shap(functools.partial(logits, params), x, 0, jax.random.PRNGKey(3),
                        baseline=jnp.zeros((d,), jnp.float64), n_samples=64, sampler=sampler,
                        control_variate=cv)
      return jnp.sum(phi * r)

    check_grads(jax.jit(loss), (params,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_same_key_vmap_loop_and_chunks_agree():
  seg = grid_segments(8, 8, 2)  # 16 units: sampling regime
  params = init_params(jax.random.PRNGKey(0), 64)
  fn = functools.partial(logits, params)
  xb = jax.random.normal(jax.random.PRNGKey(12), (3, 8, 8, 1))
  yb = jnp.array([0, 2, 1])
  keys = jax.random.split(jax.random.PRNGKey(13), 3)

  def one(x, y, k, c=None, output="prob"):
    return kernel_shap(fn, x, y, k, segments=seg, baseline=0.0, n_samples=64, output=output,
                       chunk_size=c)

  jitted = jax.jit(one)
  np.testing.assert_array_equal(jitted(xb[0], yb[0], keys[0]), jitted(xb[0], yb[0], keys[0]))
  assert not np.array_equal(jitted(xb[0], yb[0], keys[0]), jitted(xb[0], yb[0], keys[1]))
  def both(c):  # prob and logit outputs of a batch, in one compilation
    return jax.jit(jax.vmap(lambda x, y, k: jnp.stack([one(x, y, k, c, out)
                                                       for out in ("prob", "logit")])))
  batched = both(None)(xb, yb, keys)
  looped = jnp.stack([jitted(xb[i], yb[i], keys[i]) for i in range(3)])
  np.testing.assert_allclose(batched[:, 0], looped, **F32)
  np.testing.assert_allclose(both(5)(xb, yb, keys), batched, atol=1e-5)


def test_plugs_into_idexpo_penalty_with_finite_gradients():
  seg = grid_segments(8, 8, 4)
  params = init_params(jax.random.PRNGKey(0), 64)
  xb = jax.random.normal(jax.random.PRNGKey(14), (2, 8, 8, 1))
  explainer = functools.partial(kernel_shap, segments=seg, baseline=0.0)

  def penalty(params):
    return IdExpo(explainer, baseline=0.0, segments=seg, n_steps=4)(functools.partial(logits, params), xb, jnp.array([1, 0]), jax.random.PRNGKey(0))[0]

  value, grads = jax.jit(jax.value_and_grad(penalty))(params)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("kwargs,name", [
    (dict(segments=np.zeros((4, 4), np.int32)), "segments"),
    (dict(target=jnp.array([0, 1])), "target"),
    (dict(n_samples=1), "n_samples"),
    (dict(output="log_odds"), "output"),
    (dict(baseline=jnp.zeros((3, 3, 1))), "baseline"),
])
def test_bad_arguments_raise_naming_them(kwargs, name):
  params = init_params(jax.random.PRNGKey(0), 64)
  args = dict(segments=grid_segments(8, 8, 2), baseline=0.0, target=0) | kwargs
  target = args.pop("target")
  with pytest.raises(ValueError, match=name):
    kernel_shap(functools.partial(logits, params), jnp.zeros((8, 8, 1)), target,
                jax.random.PRNGKey(0), **args)


@pytest.mark.parametrize("paired,n_samples,minimum", [(True, 16, 24), (True, 23, 24),
                                                      (False, 11, 12)])
def test_too_few_coalitions_for_the_unknowns_raise_naming_the_minimum(paired, n_samples, minimum):
  # d = 13 leaves 12 unknowns; a coalition and its complement give one equation (up to sign), so
  # 16 paired samples (8 equations) used to give an all-NaN φ.
  with pytest.raises(ValueError, match=rf"`n_samples` must be >= {minimum} .* got {n_samples}"):
    kernel_shap(lambda xb: xb @ jnp.ones((13, 2)), jnp.ones(13), 0, jax.random.PRNGKey(0),
                baseline=0.0, n_samples=n_samples, paired=paired, sampler="iid")


@pytest.mark.parametrize("kwargs,name", [
    (dict(sampler="sobol"), "sampler"),
    (dict(paired=False), "paired"),
    (dict(control_variate=True), "control_variate"),  # d = 17 > 16
    (dict(control_variate="cubic"), "control_variate"),
    (dict(control_variate="pairwise", sampler="iid", paired=False), "paired"),
])
def test_bad_estimator_options_raise_naming_them(kwargs, name):
  with pytest.raises(ValueError, match=name):
    kernel_shap(lambda xb: xb @ jnp.ones((17, 2)), jnp.ones(17), 0, jax.random.PRNGKey(0),
                baseline=0.0, n_samples=64, **kwargs)


@pytest.mark.parametrize("d,n_samples,sampler", [(16, 64, "kernel"), (16, 512, "leverage"),
                                                 (12, 512, "kernel"), (30, 1000, "kernel"),
                                                 (64, 256, "kernel"), (13, 24, "leverage")])
def test_plan_spends_the_budget_and_its_weights_carry_the_kernel_mass(d, n_samples, sampler):
  strata, pool = coalition_plan(d, n_samples, sampler)
  used = 2 * sum(s.n_pairs for s in strata) + (2 * pool.n_pairs if pool else 0)
  assert n_samples - 1 <= used <= n_samples
  assert strata[0].size == 1 and strata[0].n_pairs >= d - 1  # full rank at any budget
  # Horvitz–Thompson: each stratum's weights add up to its exact kernel mass, and the pool's
  # expected weight per draw to the pooled mass.
  def mass(k):  # Σ π(|S|) over the stratum's coalitions, sizes k and d − k
    return (1 if 2 * k == d else 2) * math.comb(d, k) * shapley_kernel_weight(d, k)

  for s in strata:
    np.testing.assert_allclose(2 * s.n_pairs * s.weight, mass(s.size), rtol=1e-12)
  if pool:
    expected = pool.n_pairs * sum(p * 2 * w for p, w in zip(pool.probs, pool.weights))
    np.testing.assert_allclose(expected, sum(mass(k) for k in pool.sizes), rtol=1e-12)
  covered = {s.size for s in strata} | set(pool.sizes if pool else ())
  if n_samples // 2 > d:  # budget beyond the singletons: every size keeps its weight
    assert covered == set(range(1, d // 2 + 1))
  else:
    assert covered == {1}


def test_stratified_coalitions_are_paired_distinct_and_of_the_planned_sizes():
  d, n = 12, 300
  z, w = jax.jit(lambda k: stratified_coalitions(k, d, n))(jax.random.PRNGKey(3))
  z, w = np.asarray(z), np.asarray(w)
  np.testing.assert_array_equal(z[0::2] + z[1::2], 1.0)
  assert len({tuple(r) for r in z}) == len(z)  # without replacement (all strata tabled here)
  strata, _ = coalition_plan(d, n, "kernel")
  sizes = np.minimum(z.sum(1), d - z.sum(1)).astype(int)
  for s in strata:
    assert np.sum(sizes == s.size) == 2 * s.n_pairs
    np.testing.assert_allclose(w[sizes == s.size] / w.sum(),
                               s.weight / (2 * sum(t.n_pairs * t.weight for t in strata)),
                               rtol=1e-5)


def test_uniform_subsets_have_the_sizes_and_uniform_marginals():
  d, n = 9, 20000
  sizes = jnp.asarray(np.arange(n) % d + 1)
  z = np.asarray(jax.jit(lambda k: uniform_subsets(k, d, sizes))(jax.random.PRNGKey(0)))
  np.testing.assert_array_equal(z.sum(1), np.asarray(sizes))
  for k in (1, 4, 8):
    rows = z[np.asarray(sizes) == k]
    np.testing.assert_allclose(rows.mean(0), k / d, atol=5 * np.sqrt(0.25 / len(rows)))
    # pairs too (uniform subsets, not just uniform marginals): P(i, j ∈ S) = k(k−1)/(d(d−1))
    np.testing.assert_allclose((rows[:, 0] * rows[:, 5]).mean(), k * (k - 1) / (d * (d - 1)),
                               atol=5 * np.sqrt(0.25 / len(rows)))


def test_exact_shapley_from_table_matches_brute_force():
  rng = np.random.default_rng(0)
  d = 5
  table = rng.normal(size=2 ** d)
  unit_of = np.arange(d)
  ref = brute_force_shapley(
      lambda xs: table[(xs.astype(int) << np.arange(d)).sum(1)], np.ones(d), np.zeros(d), unit_of)
  np.testing.assert_allclose(exact_shapley_from_table(jnp.asarray(table, jnp.float32)), ref,
                             atol=1e-5)


def _mlp_game(d, seed=10):
  params = init_params(jax.random.PRNGKey(seed), d)
  x = 2.0 * jax.random.normal(jax.random.PRNGKey(seed + 1), (d,))
  ref = brute_force_shapley(numpy_value(params, "prob", 1), np.asarray(x, np.float64),
                            np.zeros(d), np.arange(d))
  return functools.partial(logits, params), x, ref


@pytest.mark.parametrize("sampler,cv", [("kernel", False), ("leverage", False), ("iid", False),
                                        ("kernel", True), ("kernel", "pairwise")])
def test_each_estimator_converges_to_the_exact_shapley_values(sampler, cv):
  d = 9
  fn, x, ref = _mlp_game(d)
  keys = jax.random.split(jax.random.PRNGKey(0), 16)
  mse = []
  for n in (80, 480):  # 2^9 − 2 = 510: all sampled
    phis = jax.jit(jax.vmap(lambda k: kernel_shap(fn, x, 1, k, baseline=jnp.zeros(d),
                                                  n_samples=n, sampler=sampler,
                                                  control_variate=cv)))(keys)
    phis = np.asarray(phis)
    np.testing.assert_allclose(phis.sum(1), ref.sum(), atol=1e-5)  # efficiency, every key
    mse.append(np.mean((phis - ref) ** 2))
  assert mse[1] < 0.35 * mse[0], mse  # 6× the budget: ≤ 1/6 the variance, less when enumerating
  assert np.sqrt(mse[1]) < 0.05 * np.abs(ref).max(), (mse, np.abs(ref).max())


def test_control_variate_is_exact_for_a_logistic_model_at_the_minimum_budget():
  # Logits linear in x: the surrogate is the model itself, so only rounding is left, at any
  # budget and key (the plain regression is not exact for the probability of this game).
  d = 10
  w = jax.random.normal(jax.random.PRNGKey(4), (d, 3))
  x = jax.random.normal(jax.random.PRNGKey(5), (d,))
  model = lambda xb: xb @ w
  ref = brute_force_shapley(lambda xs: np.asarray(jax.nn.softmax(
      jnp.asarray(xs, jnp.float32) @ w), np.float64)[:, 2], np.asarray(x, np.float64),
      np.zeros(d), np.arange(d))
  keys = jax.random.split(jax.random.PRNGKey(1), 8)
  run = jax.jit(jax.vmap(lambda k, cv: kernel_shap(model, x, 2, k, baseline=0.0, n_samples=18,
                                                   control_variate=cv), in_axes=(0, None)),
                static_argnums=1)
  # Rounding of a float32 solve: the minimum-budget design has condition number κ ≈ 98, so
  # κ·eps·|φ| ≈ 2e-6 (tolerance rule 3); the error the CV removes is 500× that.
  np.testing.assert_allclose(run(keys, True), np.broadcast_to(ref, (8, d)), atol=5e-6)
  assert np.abs(np.asarray(run(keys, False)) - ref).max() > 1e-3  # what the CV removes


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1))
def test_minimum_budget_is_right_for_every_key(seed):
  # Issue 13: at the accepted minimum (d = 13, 24 samples) i.i.d. draws repeat coalitions and the
  # regression was singular, its minimum-norm answer off by up to 1.1. The stratified default
  # draws distinct singletons (full rank); i.i.d. now gives NaN where singular, never a guess.
  d = 13
  key = jax.random.PRNGKey(seed)
  phi = np.asarray(_MIN_BUDGET(key, "kernel"))
  np.testing.assert_allclose(phi, _W13[:, 1] * _X13, atol=1e-4)
  phi = np.asarray(_MIN_BUDGET(key, "iid"))
  assert np.all(np.isnan(phi)) or np.allclose(phi, _W13[:, 1] * _X13, atol=2e-3), phi
  assert phi.shape == (d,)


_W13 = jax.random.normal(jax.random.PRNGKey(9), (13, 2))
_X13 = jax.random.normal(jax.random.PRNGKey(10), (13,))
_MIN_BUDGET = jax.jit(lambda k, s: kernel_shap(lambda xb: xb @ _W13, _X13, 1, k, baseline=0.0,
                                               n_samples=24, sampler=s, output="logit"),
                      static_argnums=1)


def test_iid_singular_design_gives_nan():
  d = 13
  found = [s for s in range(40)
           if np.all(np.isnan(np.asarray(_MIN_BUDGET(jax.random.PRNGKey(s), "iid"))))]
  assert found  # most keys at this budget repeat coalitions (84 % measured before)
  z = np.asarray(sample_coalitions(jax.random.PRNGKey(found[0]), d, 24))
  design = z[:, :-1] - z[:, -1:]
  assert np.linalg.matrix_rank(design) < d - 1  # NaN exactly where the system is singular


def test_sampling_regime_just_above_the_minimum_is_exact_for_a_linear_logit():
  # Any full-rank set of coalitions recovers W·(x − b) exactly for a linear model's logit.
  d = 13
  w = jax.random.normal(jax.random.PRNGKey(9), (d, 2))
  x = jax.random.normal(jax.random.PRNGKey(10), (d,))
  phi = jax.jit(lambda x: kernel_shap(lambda xb: xb @ w, x, 1, jax.random.PRNGKey(0),
                                      baseline=0.0, n_samples=64, output="logit"))(x)
  np.testing.assert_allclose(phi, w[:, 1] * x, atol=1e-5)


# --- Loud edges (issue 13): outputs, targets, integer inputs, half precision.


@pytest.mark.parametrize("columns", [0, 1])
@pytest.mark.parametrize("n_samples", [None, 40])  # exact enumeration, sampling
def test_raw_output_of_a_linear_regression_is_weight_times_displacement(columns, n_samples):
  d = 5
  w = np.random.default_rng(1).normal(size=(d,))
  model = lambda b: (b @ jnp.asarray(w, b.dtype)).reshape((-1,) + (1,) * columns)
  x, base = jnp.linspace(-1.0, 2.0, d), jnp.linspace(0.5, -0.5, d)
  kw = {} if n_samples is None else dict(n_samples=n_samples)
  phi = kernel_shap(model, x, 0, jax.random.PRNGKey(0), baseline=base, output="raw", **kw)
  np.testing.assert_allclose(phi, w * (np.asarray(x, np.float64) - np.asarray(base)), atol=1e-5)
  with pytest.raises(ValueError, match=r"`output='prob'`.*output='raw'"):
    kernel_shap(model, x, 0, jax.random.PRNGKey(0), baseline=base)


def test_log_prob_output_equals_brute_force_shapley_of_log_p():
  params = init_params(jax.random.PRNGKey(3), 4)
  x, base = jnp.linspace(-1.0, 1.0, 4), jnp.zeros(4)
  value = numpy_value(params, "prob", 2)
  ref = brute_force_shapley(lambda xb: np.log(value(xb)), np.asarray(x, np.float64),
                            np.asarray(base, np.float64), np.arange(4))
  phi = kernel_shap(functools.partial(logits, params), x, 2, jax.random.PRNGKey(0), baseline=base,
                    output="log_prob")
  np.testing.assert_allclose(phi, ref, atol=1e-5)


@pytest.mark.parametrize("target", [-1, 3])
def test_target_out_of_range_raises_eagerly_and_gives_nan_under_jit(target):
  fn = functools.partial(logits, init_params(jax.random.PRNGKey(0), 6))
  x = jnp.linspace(-1.0, 1.0, 6)
  with pytest.raises(ValueError, match="`target`"):
    kernel_shap(fn, x, target, jax.random.PRNGKey(0), baseline=0.0)
  for n_samples in (20, 512):  # sampling and exact regimes
    phi = jax.jit(lambda t: kernel_shap(fn, x, t, jax.random.PRNGKey(0), baseline=0.0,
                                        n_samples=n_samples))(target)
    assert np.isnan(phi).all()


def test_integer_input_is_explained_as_the_same_float_input():
  fn = functools.partial(logits, init_params(jax.random.PRNGKey(0), 6))
  x = jnp.arange(6) - 2
  phi = kernel_shap(fn, x, 1, jax.random.PRNGKey(0), baseline=0.5)
  assert phi.dtype == jnp.float32
  np.testing.assert_array_equal(phi, kernel_shap(fn, x.astype(jnp.float32), 1,
                                                 jax.random.PRNGKey(0), baseline=0.5))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_model_is_solved_in_float32(dtype):
  d = 5
  w = np.random.default_rng(2).normal(size=(d, 2))
  x = jnp.linspace(-1.0, 1.0, d)
  model = lambda b: b.astype(dtype) @ jnp.asarray(w, dtype)
  phi = kernel_shap(model, x, 1, jax.random.PRNGKey(0), baseline=0.0, output="logit")
  assert phi.dtype == dtype
  np.testing.assert_allclose(np.asarray(phi, np.float64), w[:, 1] * np.asarray(x), rtol=3e-2,
                             atol=3e-2)


def _pairwise_logits(d, k, seed):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  dtype = jnp.result_type(float)  # float64 under x64
  beta = jax.random.normal(keys[0], (d, k), dtype)
  b = jax.random.normal(keys[1], (d, d, k), dtype) / 2
  b = (b + b.transpose(1, 0, 2)) * (1 - jnp.eye(d, dtype=dtype))[:, :, None]
  c = jax.random.normal(keys[2], (k,), dtype)
  return beta, b, c, lambda u: c + u @ beta + 0.5 * jnp.einsum("ni,ijk,nj->nk", u, b, u)


def test_pairwise_fit_recovers_pairwise_logits_exactly(x64):
  # Logits exactly of the fitted form, more pairs than even unknowns (1 + 28), no ridge: the fit
  # on the odd and even halves of the pairs returns the generating coefficients.
  d = 8
  with x64():
    beta, b, c, fn = _pairwise_logits(d, 3, 0)
    z, w = stratified_coalitions(jax.random.PRNGKey(1), d, 120, dtype=jnp.float64)
    fit = jax.jit(lambda z, w: fit_pairwise_logits(z, fn(z - 0.5), w, ridge=0.0))(z, w)
    for got, want in zip(fit, (beta, b, c)):
      np.testing.assert_allclose(got, want, atol=1e-9)


def test_pairwise_surrogate_shapley_values_match_enumeration(x64):
  # Its Shapley values (logit table built by doubling) vs the subset formula over explicitly
  # evaluated coalitions of softmax(l(u)) in float64.
  d, target = 7, 1
  with x64():
    _, _, _, fn = _pairwise_logits(d, 3, 2)
    z, w = stratified_coalitions(jax.random.PRNGKey(3), d, 100, dtype=jnp.float64)
    z = jnp.concatenate([z, jnp.ones((1, d)), jnp.zeros((1, d))])
    w = jnp.concatenate([w, jnp.full((2,), w.max())])
    g, phi = jax.jit(lambda z, w: logit_surrogate_shapley(z, fn(z - 0.5), w, target, prob=True,
                                                          pairwise=True, ridge=0.0))(z, w)
    game = lambda zs: np.asarray(jax.nn.softmax(fn(jnp.asarray(zs) - 0.5), -1)[:, target])
    ref = brute_force_shapley(game, np.ones(d), np.zeros(d), np.arange(d))
    np.testing.assert_allclose(phi, ref, atol=1e-10)
    np.testing.assert_allclose(g, game(z), atol=1e-10)  # exact fit: the surrogate is the model


def test_pairwise_control_variate_is_near_exact_when_the_logits_are_pairwise():
  # Logits with pairwise interactions of the units: the fitted surrogate is the model up to the
  # small ridge, so the sampled estimate is within 1e-3 of the exact values, where the additive
  # surrogate is not (the softmax makes odd order-3 interactions of the pairwise logits).
  d = 10
  beta, b, c, fn = _pairwise_logits(d, 3, 4)
  scale = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, d), jnp.float32)
  model = lambda xb: fn(xb / scale[None] - 0.5).astype(jnp.float32)
  x = scale  # unit i present: x_i / scale_i − ½ = +½; baseline 0 gives −½
  ref = brute_force_shapley(lambda xs: np.asarray(jax.nn.softmax(fn(
      jnp.asarray(xs) / scale - 0.5), -1), np.float64)[:, 0], np.asarray(x, np.float64),
      np.zeros(d), np.arange(d))
  keys = jax.random.split(jax.random.PRNGKey(5), 4)
  run = jax.jit(jax.vmap(lambda k, cv: kernel_shap(model, x, 0, k, baseline=0.0, n_samples=400,
                                                   control_variate=cv), in_axes=(0, None)),
                static_argnums=1)
  err = {cv: np.abs(np.asarray(run(keys, cv)) - ref).max() for cv in ("additive", "pairwise")}
  assert err["pairwise"] < 1e-3 < err["additive"], err


def test_sample_without_replacement_is_uniform_over_subsets():
  """Floyd's algorithm: distinct indices, each of the C(6, 3) = 20 subsets equally likely."""
  from idexpo_jax.explainers.kernel_shap import sample_without_replacement
  n = 20000
  keys = jax.random.split(jax.random.PRNGKey(5), n)
  idx = np.asarray(jax.jit(jax.vmap(lambda k: sample_without_replacement(k, 6, 3)))(keys))
  assert np.all(np.sort(idx, 1)[:, 1:] > np.sort(idx, 1)[:, :-1])  # distinct
  counts = np.bincount((1 << idx).sum(1), minlength=64)[[c for c in range(64)
                                                         if bin(c).count("1") == 3]]
  p = 1 / 20  # each subset: Binomial(n, 1/20), within 5 standard deviations
  assert np.all(np.abs(counts - n * p) < 5 * np.sqrt(n * p * (1 - p)))
  full = np.asarray(sample_without_replacement(jax.random.PRNGKey(6), 9, 9))
  np.testing.assert_array_equal(np.sort(full), np.arange(9))
  with pytest.raises(ValueError, match="`n_draw`"):
    sample_without_replacement(jax.random.PRNGKey(6), 3, 4)
