"""Argument checks shared by the whole library: one vocabulary, one message style, one NaN rule.

Every check names the argument, states what it expects (type, shape, range) and shows the value it
got. The rules:

* **Integer options** (sizes, counts, steps: `check_int`) accept any integral scalar: a Python
  `int`, a NumPy integer (`np.int64(16)`) or a concrete 0-d integer array. `bool` is refused (it
  is an `int` in Python, but `n_samples=True` is a mistake), and so is a float, even an integral
  one such as `16.0`: an integer option fixes shapes, and truncating `2.5` to 2 would be silent.
  They must be concrete (known before `jit` traces), since they fix array shapes.
* **Real options** (widths, scales, temperatures, penalties: `check_positive`) accept any real
  value: Python or NumPy floats and ints, and arrays of any real dtype including `bfloat16` and
  `float16` (a scalar, or one value per feature). A concrete invalid value raises; a value known
  only inside `jit`/`vmap` cannot raise, so the computation it feeds returns NaN instead
  (`poison`), in the spirit of Equinox's `error_if` (Kidger & Garcia, "Equinox: neural networks
  in JAX via callable PyTrees and filtered transformations", 2021) without a host callback.
* **Fractions** (`check_fraction`) are concrete real scalars in a stated interval.
* **Class targets** (`check_target`) are integer indices in `[0, K)`: a concrete one outside
  raises, a traced one gives NaN (`valid_target`, `poison`).
* **Batches** (`check_batch`) are non-empty, with a batch axis.

Errors are `ValueError` (a value or an option of the wrong kind) or `TypeError` (an argument of the
wrong kind of object, e.g. a float class index).
"""

from __future__ import annotations

import numbers
from typing import Literal, Optional, overload

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

Array = jax.Array


def is_traced(value) -> bool:
  """True when `value` is a JAX tracer (known only inside `jit`/`vmap`/`grad`)."""
  return isinstance(value, Tracer)


def poison(value: Array, ok) -> Array:
  """`value` where `ok` (broadcast), NaN elsewhere: the rule for invalid values known only in jit.

  `ok=None` (nothing traced to check) returns `value` unchanged. Poison the final output of a
  computation: on XLA's CPU backend (jaxlib 0.10) `exp` of a NaN computed in the same fused
  kernel can return finite garbage, so a NaN fed into a model or an `exp` need not stay NaN. The
  gradient of a poisoned value is not NaN (`where` routes it to the valid branch), so a function
  returning a gradient poisons the gradient itself.
  """
  if ok is None:
    return value
  return jnp.where(ok, value, jnp.nan)


def all_ok(*oks) -> Optional[Array]:
  """The conjunction of the traced conditions among `oks` (`None` entries are true)."""
  oks = [ok for ok in oks if ok is not None]
  if not oks:
    return None
  out = oks[0]
  for ok in oks[1:]:
    out = out & ok
  return out


def _range_text(minimum, maximum) -> str:
  if minimum is not None and maximum is not None:
    return f" in [{minimum}, {maximum}]"
  if minimum is not None:
    return f" >= {minimum}"
  if maximum is not None:
    return f" <= {maximum}"
  return ""


@overload
def check_int(value, name: str, *, minimum: Optional[int] = None, maximum: Optional[int] = None,
              none_ok: Literal[False] = False) -> int: ...


@overload
def check_int(value, name: str, *, minimum: Optional[int] = None, maximum: Optional[int] = None,
              none_ok: bool) -> Optional[int]: ...


def check_int(value, name: str, *, minimum: Optional[int] = None, maximum: Optional[int] = None,
              none_ok: bool = False) -> Optional[int]:
  """Validates an integer option and returns it as a Python `int` (`None` with `none_ok`).

  Accepts a Python `int`, a NumPy integer or a concrete 0-d integer array; refuses `bool`, floats
  (also integral ones such as `16.0`), traced values and anything outside
  `[minimum, maximum]`, with a ValueError naming `name`.
  """
  if value is None and none_ok:
    return None
  want = f"`{name}` must be an integer{_range_text(minimum, maximum)}"
  if none_ok:
    want += " or None"
  if is_traced(value):
    raise ValueError(f"{want}, known before tracing (it fixes array shapes); got a traced value "
                     f"{value}.")
  if isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{want}; got the bool {value!r} (pass an int).")
  if isinstance(value, (numbers.Integral, np.integer)):
    out = int(value)
  elif isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0 and (
      jnp.issubdtype(value.dtype, jnp.integer)):
    out = int(value)
  elif isinstance(value, (numbers.Real, np.floating)) or (
      isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0 and
      jnp.issubdtype(value.dtype, jnp.floating)):
    raise ValueError(f"{want}; got the float {value!r} (floats are not accepted, even integral "
                     f"ones: pass int(...)).")
  else:
    raise ValueError(f"{want}; got {value!r} of type {type(value).__name__}.")
  if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
    raise ValueError(f"{want}; got {out}.")
  return out


def _real_array(value, name: str, want: str) -> np.ndarray:
  """`value` as a NumPy array of a real (non-bool) dtype, or a ValueError naming `name`."""
  try:
    v = np.asarray(value)
  except Exception as err:  # pylint: disable=broad-except  # e.g. a string or an object
    raise ValueError(f"`{name}` must be {want}; got {value!r}.") from err
  if v.dtype == np.bool_ or not jnp.issubdtype(v.dtype, jnp.integer) and not jnp.issubdtype(
      v.dtype, jnp.floating):
    raise ValueError(f"`{name}` must be {want}; got {value!r} of dtype {v.dtype}.")
  return v


def check_positive(value, name: str, *, allow_zero: bool = False) -> Optional[Array]:
  """Validates a positive (or non-negative) option such as a width, scale or temperature.

  Any real value is accepted (Python/NumPy floats and ints, arrays of any real dtype including
  bfloat16/float16); arrays (e.g. one scale per feature) must be positive in every entry.

  A concrete value that is not `> 0` (`>= 0` with `allow_zero`), or is NaN, raises a ValueError
  naming `name`, and a valid one gives `None`. A traced value gives the traced condition `ok`, with
  which the caller poisons its final output (`poison(out, ok)`: NaN when the value is invalid).
  """
  sign = "non-negative" if allow_zero else "positive"
  want = f"a {sign} real number (a scalar, or an array of {sign} entries)"
  if is_traced(value):
    if not (jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating)):
      raise ValueError(f"`{name}` must be {want}; got a traced value of dtype {value.dtype}.")
    return jnp.all(value >= 0 if allow_zero else value > 0)
  v = _real_array(value, name, want)
  if v.size < 1 or not np.all(v >= 0 if allow_zero else v > 0):
    raise ValueError(f"`{name}` must be {want}; got {value!r}.")
  return None


def as_operand(value, dtype):
  """A validated real option ready for arithmetic with arrays of `dtype` in any promotion mode.

  Python scalars are returned as they are (weakly typed: they take the array's dtype); arrays
  and NumPy scalars are cast to the standard promotion of their dtype with `dtype` (e.g. a
  bfloat16 temperature used with float32 attributions becomes float32), so the values are those
  of the standard promotion also under `jax_numpy_dtype_promotion="strict"`.
  """
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return value
  v = jnp.asarray(value)
  with jax.numpy_dtype_promotion("standard"):
    return v.astype(jnp.promote_types(v.dtype, dtype))


def check_fraction(value, name: str, *, low: float = 0.0, high: float = 1.0,
                   low_open: bool = True, high_open: bool = False) -> float:
  """Validates a concrete real scalar in an interval (default `(0, 1]`); returns it as a float.

  Raises a ValueError naming `name` for a non-real, non-scalar, NaN or out-of-range value.
  """
  interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
  want = f"a real number in {interval}"
  if is_traced(value):
    raise ValueError(f"`{name}` must be {want}, known before tracing; got a traced value.")
  v = _real_array(value, name, want)
  if v.ndim != 0:
    raise ValueError(f"`{name}` must be {want} (a scalar); got shape {v.shape}.")
  out = float(v)
  above = out > low if low_open else out >= low
  below = out < high if high_open else out <= high
  if not (above and below):
    raise ValueError(f"`{name}` must be {want}; got {value!r}.")
  return out


def check_batch(xb: Array, name: str = "xb", *, min_ndim: int = 2) -> None:
  """Raises ValueError unless `xb` is a non-empty batch with at least `min_ndim` axes."""
  if jnp.ndim(xb) < min_ndim or jnp.shape(xb)[0] == 0:
    raise ValueError(f"`{name}` must be a non-empty batch (B, ...) with B >= 1 and at least "
                     f"{min_ndim} axes; got shape {tuple(jnp.shape(xb))}.")


def check_target(target, n_classes: Optional[int] = None, *, name: str = "target",
                 shape: tuple = ()) -> Array:
  """Validates class indices and returns them as an integer array.

  The shape (`()` for one example, `(B,)` for a batch) and the integer dtype are checked always; the
  range `[0, n_classes)` when `target` is concrete (a named ValueError). A traced target is not
  checked here: the functions that use it return NaN where it is out of range (`valid_target`).
  """
  target = jnp.asarray(target)
  if target.shape != tuple(shape):
    what = "a scalar class index" if not shape else f"one class index per example, shape {shape}"
    raise ValueError(f"`{name}` must be {what}; got shape {target.shape}.")
  if not jnp.issubdtype(target.dtype, jnp.integer):
    raise TypeError(f"`{name}` must hold integer class indices; got dtype {target.dtype}.")
  if n_classes is not None and not is_traced(target):
    values = np.asarray(target)
    if values.size and not ((values >= 0) & (values < n_classes)).all():
      bad = values[(values < 0) | (values >= n_classes)].reshape(-1)[0]
      raise ValueError(f"`{name}` must be in [0, {n_classes}) for a model with {n_classes} "
                       f"output{'s' if n_classes != 1 else ''}; got {int(bad)}.")
  return target


def valid_target(target: Array, n_classes: int) -> Array:
  """Boolean `0 <= target < n_classes` (elementwise)."""
  return (target >= 0) & (target < n_classes)
