"""MAPLE: local affine explanations from a random forest's supervised neighbourhoods.

Plumb, Molitor & Talwalkar, "Model Agnostic Supervised Local Explanations", NeurIPS 2018; the
second explainer of ExpO's UCI table (Plumb et al., NeurIPS 2020). To explain a model `f`:

1. A random forest is fitted to `(X_train, f(X_train))` (ExpO: 200 trees, at least 10 samples per
   leaf, half of the features tried per split; scikit-learn's `RandomForestRegressor`, imported
   only by `fit_maple`).
2. The weight of training point `j` for a query `x` is the leaf co-occurrence
   `w_j(x) = Σ_t 1[leaf_t(x_j) = leaf_t(x)] / |leaf_t(x)|`, with `|leaf_t(x)|` the number of
   training points in that leaf of tree `t` (each tree's weights sum to 1; no normalisation over
   trees).
3. The explanation is the weighted ridge fit (`ridge = 0.001`, unpenalised intercept) of
   `f(X_train)` on `X_train` with those weights, through the one solver `weighted_least_squares`:
   `e(x)(x') = x'·coef + intercept`, in input space like `local_linear`.

MAPLE is deterministic given the forest. The forest (step 1) and the leaf indices are numpy; the
weights and fits (steps 2–3) are JAX.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from idexpo_jax.core.lstsq import weighted_least_squares
from idexpo_jax.explainers.local_linear import check_tabular
from idexpo_jax.metrics.fidelity import expo_scores

Array = jax.Array


class Maple(NamedTuple):
  """A fitted MAPLE explainer.

  Attributes:
    forest: the fitted scikit-learn forest (its `apply(x)` gives leaf indices `(Q, T)`).
    x_train: `(N, D)` training inputs.
    f_train: `(N,)` model values at the training inputs (the regression targets).
    train_leaves: `(N, T)` leaf index of every training point in every tree.
  """

  forest: Any
  x_train: np.ndarray
  f_train: np.ndarray
  train_leaves: np.ndarray


def fit_maple(x_train, f_train, *, n_trees: int = 200, min_samples_leaf: int = 10,
              max_features: float = 0.5, seed: int = 0) -> Maple:
  """Fits MAPLE's forest to the model values `f_train (N,)` at `x_train (N, D)` (needs sklearn)."""
  try:
    from sklearn.ensemble import RandomForestRegressor
  except ModuleNotFoundError as e:
    raise ModuleNotFoundError("MAPLE's forest needs scikit-learn: `pip install "
                              "'idexpo_jax[experiments]'`.") from e
  x_train = np.asarray(x_train, np.float32)
  f_train = np.asarray(f_train, np.float32)
  if x_train.ndim != 2 or f_train.shape != (x_train.shape[0],):
    raise ValueError(f"`x_train` must be (N, D) and `f_train` (N,); got {x_train.shape} and "
                     f"{f_train.shape}.")
  forest = RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=min_samples_leaf,
                                 max_features=max_features, random_state=seed, n_jobs=1)
  forest.fit(x_train, f_train)
  return Maple(forest, x_train, f_train, forest.apply(x_train))


@jax.jit
def leaf_weights(train_leaves: Array, query_leaves: Array) -> Array:
  """`w[q, j] = Σ_t 1[leaf_t(x_j) = leaf_t(x_q)] / |leaf_t(x_q)|`: `(Q, N)` from `(N, T)`, `(Q, T)`.

  `|leaf|` counts the training points in the leaf; a query whose leaf holds no training point (not
  possible for a forest's own training data) contributes nothing for that tree.
  """
  same_train = train_leaves[:, None, :] == train_leaves[None, :, :]
  # (N, T): the number of training points in the leaf of point j in tree t
  size = same_train.sum(axis=0).astype(jnp.float32)

  def one(q):
    return jnp.sum(jnp.where(train_leaves == q, 1.0 / size, jnp.float32(0)), axis=-1)

  return jax.lax.map(one, query_leaves, batch_size=64)


@jax.jit
def _fit(x_train, f_train, weights, ridge):
  return jax.vmap(lambda w: weighted_least_squares(x_train, f_train, w, ridge=ridge))(weights)


def maple_explain(maple: Maple, xq, *, ridge: float = 1e-3):
  """MAPLE's local affine models at the queries `xq (Q, D)`: `(coef (Q, D), intercept (Q,))`."""
  xq = np.asarray(xq, np.float32)
  check_tabular(xq, "xq", 2)
  if xq.shape[1] != maple.x_train.shape[1]:
    raise ValueError(f"`xq` must have D = {maple.x_train.shape[1]} features; got {xq.shape}.")
  w = leaf_weights(jnp.asarray(maple.train_leaves), jnp.asarray(maple.forest.apply(xq)))
  return _fit(jnp.asarray(maple.x_train), jnp.asarray(maple.f_train), w, ridge)


def maple_metrics(logits_fn, maple: Maple, xb, key: Array, *, n_neighbors: int = 5, sigma=0.1,
                  ridge: float = 1e-3) -> dict:
  """ExpO's metrics of MAPLE's explanations of the rows of `xb (B, D)` (regression, one output).

  With `x' = x + N(0, σ²I)` (`n_neighbors` per row) the point fidelity, neighbourhood fidelity and
  stability of `idexpo_jax.metrics.fidelity` (`expo_scores`), MAPLE re-run at every `x'` (one
  batched `maple_explain` for the rows and all their neighbours; the same neighbours serve NF
  and stability).

  Returns:
    `{"pf", "nf", "stability"}`, each `(B,)` (numpy).
  """
  xb = jnp.asarray(xb, jnp.float32)
  check_tabular(xb, "xb", 2)
  b, d = xb.shape
  xs = xb[:, None] + sigma * jax.random.normal(key, (b, n_neighbors, d), xb.dtype)
  coef, intercept = maple_explain(maple, jnp.concatenate([xb, xs.reshape(-1, d)]), ridge=ridge)
  cn = coef[b:].reshape(b, n_neighbors, d)
  fx = jnp.reshape(logits_fn(xb), (b,))
  fxs = jnp.reshape(logits_fn(xs.reshape(-1, d)), (b, n_neighbors))
  out = jax.vmap(expo_scores)(xb, coef[:b], intercept[:b], fx, xs, fxs, cn)
  return {k: np.asarray(v) for k, v in out.items()}
