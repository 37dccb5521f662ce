"""The one weighted-least-squares solver behind LIME, KernelSHAP and ExpO's local fits.

Everything is closed form so that it compiles into a train step and is differentiable in the
regression targets `f` (model outputs). The design `Z` and the weights `w` are data. The `d×d`
normal equations are formed after weighted centering (which removes the intercept from the
penalised system exactly as scikit-learn's `Ridge` does with `sample_weight`, and keeps float32
accurate) and solved, never by an explicit inverse, in one of two ways (`method`):

* `"eigh"` (default): through their eigendecomposition, rank-revealing: a singular system gets the
  minimum-norm solution (or NaN with `singular="nan"`).
* `"cholesky"`: one Cholesky factorisation and two triangular solves, for systems that are
  positive definite by construction (a positive ridge, or a design known to have full rank, as
  KernelSHAP's stratified coalitions); about 10× cheaper than `eigh` at `d ≈ 30` on CPU. A system
  that is not numerically positive definite gives NaN, never a silent guess.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from idexpo_jax.core.checks import as_operand, check_positive, poison

Array = jax.Array


def solve_dtype(dtype):
  """The dtype a least-squares problem is solved in: at least float32.

  Half-precision targets (bfloat16/float16 models) are solved in float32 (LAPACK has no
  half-precision `eigh`, and the normal equations square the condition number); the solution is
  returned in the targets' dtype.
  """
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
    return jnp.dtype(jnp.float32)
  return dtype


_METHODS = ("eigh", "cholesky")


def _check_method(method: str, singular: str) -> None:
  if method not in _METHODS:
    raise ValueError(f"`method` must be one of {_METHODS}; got {method!r}.")
  if singular not in ("min_norm", "nan"):
    raise ValueError(f"`singular` must be 'min_norm' or 'nan'; got {singular!r}.")


def _solve_spd(a: Array, b: Array, singular: str = "min_norm", method: str = "eigh") -> Array:
  """Solution of the symmetric positive semi-definite system `a x = b` (`method`, module doc).

  With `method="cholesky"`, `a = L Lᵀ` and two triangular solves; a factorisation that breaks
  down (`a` not numerically positive definite) gives NaN (`singular` plays no part).

  Solved through the eigendecomposition of `a` (a `d×d` matrix, cheap next to the model
  evaluations), discarding eigenvalues below `d · eps · λ_max`: a well-conditioned system gets its
  unique solution, a singular one (e.g. repeated coalitions, `ridge=0`) the least-squares
  minimum-norm solution, as `numpy.linalg.lstsq` gives, instead of NaN; with `singular="nan"`
  a singular system, or one with `λ_min ≤ sqrt(eps)·λ_max` (condition number beyond
  `1/sqrt(eps)`, where float rounding already dominates the answer), gives NaN instead (for
  callers where a minimum-norm guess would be wrong).
  """
  if method == "cholesky":
    return jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(a), True), b)
  evals, evecs = jnp.linalg.eigh(a)
  cutoff = a.shape[0] * jnp.finfo(a.dtype).eps * jnp.max(jnp.abs(evals))
  inv = jnp.where(evals > cutoff, 1.0 / jnp.where(evals > cutoff, evals, 1.0), 0.0)
  proj = evecs.T @ b
  x = evecs @ (inv[:, None] * proj if proj.ndim == 2 else inv * proj)
  if singular == "nan":  # singular, or numerically so: λ_min ≤ sqrt(eps)·λ_max
    tol = jnp.sqrt(jnp.finfo(a.dtype).eps) * jnp.max(jnp.abs(evals))
    x = jnp.where(jnp.all(evals > tol), x, jnp.nan)
  return x


def weighted_least_squares(z: Array, f: Array, w: Array, *, ridge: float = 0.0,
                           fit_intercept: bool = True, singular: str = "min_norm",
                           method: str = "eigh"):
  """Weighted ridge regression `min Σ_i w_i (f_i − c − z_i·β)² + ridge·‖β‖²`.

  The intercept `c` is not penalised: with weighted means `z̄ = Σ w z / Σ w` and `f̄`, the
  coefficients are `β = (Z̃ᵀ W Z̃ + ridge·I)⁻¹ Z̃ᵀ W f̃` on centred `Z̃ = Z − z̄`, `f̃ = f − f̄`, and
  `c = f̄ − z̄·β`. This equals `sklearn.linear_model.Ridge(alpha=ridge).fit(Z, f, sample_weight=w)`.

  Args:
    z: design `(N, d)`.
    f: targets `(N,)` or `(N, k)`.
    w: non-negative sample weights `(N,)`.
    ridge: L2 penalty on `β`, `>= 0` (0 gives weighted ordinary least squares); a traced negative
      one gives NaN.
    fit_intercept: fit `c` (otherwise `c = 0` and nothing is centred).
    singular: "min_norm" (a singular system gets the minimum-norm solution) or "nan" (NaN);
      for `method="eigh"`.
    method: "eigh" (rank-revealing) or "cholesky" (positive definite systems only: a positive
      `ridge` or a full-rank design; NaN otherwise), see the module docstring.

  Returns:
    `(coef, intercept)`: `(d,)` and `()` (or `(d, k)` and `(k,)` for 2-D `f`), in the dtype of `f`
    (half-precision `f` is solved in float32, see `solve_dtype`).
  """
  if z.ndim != 2 or w.shape != (z.shape[0],) or f.shape[0] != z.shape[0]:
    raise ValueError(f"weighted_least_squares needs `z` (N, d), `f` (N,) or (N, k), `w` (N,); "
                     f"got z {z.shape}, f {f.shape}, w {w.shape}.")
  _check_method(method, singular)
  ridge_ok = check_positive(ridge, "ridge", allow_zero=True)
  out_dtype = f.dtype
  if solve_dtype(out_dtype) != out_dtype:
    coef, intercept = weighted_least_squares(z, f.astype(solve_dtype(out_dtype)), w, ridge=ridge,
                                             fit_intercept=fit_intercept, singular=singular,
                                             method=method)
    return coef.astype(out_dtype), intercept.astype(out_dtype)
  z = z.astype(f.dtype)
  w = w.astype(f.dtype)
  d = z.shape[1]
  f2 = f if f.ndim == 2 else f[:, None]
  if fit_intercept:  # weighted means as reductions (a batched matrix-vector product is slow on CPU)
    wsum = w.sum()
    z_mean = jnp.sum(w[:, None] * z, axis=0) / wsum
    f_mean = jnp.sum(w[:, None] * f2, axis=0) / wsum
    zc, fc = z - z_mean, f2 - f_mean
  else:
    zc, fc = z, f2
  # Gram matrix and right-hand side from ONE product of the augmented design [Z̃, f̃].
  aug = jnp.concatenate([zc, fc], axis=1)
  moments = (w[:, None] * aug).T @ aug
  gram = moments[:d, :d] + as_operand(ridge, f.dtype) * jnp.eye(d, dtype=f.dtype)
  rhs = moments[:d, d:] if f.ndim == 2 else moments[:d, d]
  coef = _solve_spd(gram, rhs, singular, method)
  if fit_intercept:
    intercept = (f_mean if f.ndim == 2 else f_mean[0]) - jnp.tensordot(z_mean, coef, axes=1)
  else:
    intercept = jnp.zeros(f.shape[1:], f.dtype)
  return poison(coef, ridge_ok), poison(intercept, ridge_ok)


def constrained_least_squares(z: Array, f: Array, w: Array, *, total, offset,
                              singular: str = "min_norm", method: str = "eigh"):
  """`min Σ_i w_i (f_i − offset − z_i·φ)²` subject to `Σ_j φ_j = total`, solved exactly.

  The constraint is eliminated (`φ_d = total − Σ_{j<d} φ_j`), which leaves an unconstrained
  weighted least-squares problem in `d − 1` unknowns without intercept; no large pseudo-weights.
  This is the KernelSHAP estimator with efficiency constraint `total = v(1) − v(0)` and
  `offset = v(0)` (Lundberg & Lee, NeurIPS 2017).

  Args:
    z: binary coalitions `(N, d)`.
    f: values `(N,)`.
    w: weights `(N,)`.
    total: the required sum of `φ` (scalar, may depend on the model).
    offset: the fixed intercept (scalar).
    singular: "min_norm" or "nan", as in `weighted_least_squares`.
    method: "eigh" or "cholesky" (a full-rank design only), as in `weighted_least_squares`.

  Returns:
    `φ` of shape `(d,)`, in the dtype of `f` (half precision is solved in float32).
  """
  if z.ndim != 2 or f.shape != (z.shape[0],) or w.shape != (z.shape[0],):
    raise ValueError(f"constrained_least_squares needs `z` (N, d), `f` (N,) and `w` (N,); got z "
                     f"{tuple(z.shape)}, f {tuple(f.shape)}, w {tuple(w.shape)}.")
  if jnp.size(total) != 1 or jnp.size(offset) != 1:
    raise ValueError(f"`total` and `offset` must be scalars; got shapes {jnp.shape(total)} and "
                     f"{jnp.shape(offset)}.")
  _check_method(method, singular)
  out_dtype = f.dtype
  if solve_dtype(out_dtype) != out_dtype:
    cast = lambda a: jnp.asarray(a).astype(solve_dtype(out_dtype))
    return constrained_least_squares(z, cast(f), w, total=cast(total), offset=cast(offset),
                                     singular=singular, method=method).astype(out_dtype)
  z = z.astype(f.dtype)
  d = z.shape[1]
  if d == 1:
    return jnp.reshape(total, (1,)).astype(f.dtype)
  last = z[:, -1]
  design = z[:, :-1] - last[:, None]
  target = f - offset - last * total
  head, _ = weighted_least_squares(design, target, w, fit_intercept=False, singular=singular,
                                   method=method)
  return jnp.concatenate([head, jnp.reshape(total - head.sum(), (1,))])
