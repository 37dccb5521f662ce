"""Explainers as small immutable configurations: units and baseline stated once (SPEC §9).

Each class is a frozen dataclass that carries its units (`segments`), its `baseline` and its
options, and wraps one pure function of `lime`, `kernel_shap`, `grad_cam` or `attributions`
(which keep their signatures and stay the core)::

    lime = ij.Lime(segments=ij.grid_segments(16, 16, 4), baseline=0.0, n_samples=500)
    phi = lime(model, x, target, key)                    # φ (d,), d = 16 cells
    pen, aux = ij.idexpo_penalty(predictor, xb, yb, key, explainer=lime)  # same units, baseline

`idexpo_penalty`, the hard and soft insertion/deletion curves, `sensitivity_n` and `explain` read
`explainer.segments` and `explainer.baseline` when they are not given (`units_of`).

jit: every field is static. The objects are hashable and compare by value (arrays by shape, dtype
and bytes), and are registered as pytrees without leaves (`jax.tree_util.register_static`), so an
explainer may be closed over, passed as a static argument or passed as an ordinary argument of a
jitted function; equal configurations reuse the same compilation. The baseline is therefore a
constant of the compiled function: a baseline that changes from call to call (e.g. computed from
the batch inside `jit`) belongs in a new object built inside the traced function (which is never
hashed) or in the pure functions' `baseline=` argument.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Union

import jax
import numpy as np

from idexpo_jax.explainers import gradients as attributions
from idexpo_jax.explainers.grad_cam import grad_cam
from idexpo_jax.explainers.kernel_shap import kernel_shap
from idexpo_jax.explainers.lime import lime
from idexpo_jax.core.masking import unit_sum

Array = jax.Array


def _frozen(value):
  """A hashable stand-in for a field value (arrays by shape, dtype and bytes)."""
  if isinstance(value, (np.ndarray, jax.Array, np.generic)):
    try:
      arr = np.asarray(value)
    except jax.errors.TracerArrayConversionError as err:
      raise TypeError("An explainer holding a traced array (e.g. a baseline computed inside "
                      "`jit`) cannot be hashed; build it inside the traced function and call it "
                      "there, or pass the array to the pure function.") from err
    return ("array", arr.shape, arr.dtype.str, arr.tobytes())
  return value


class Explainer:
  """Base of the explainer configurations: value hashing, `replace`, and the common fields.

  Subclasses are frozen, keyword-only dataclasses with the fields `segments` (an `(H, W)` int map
  of unit ids 0..d−1, or None for pixels / tabular features) and `baseline` (broadcastable to an
  example), and define `__call__(model, x, target, key) -> φ (d,)`.
  """

  segments: Optional[np.ndarray]
  baseline: Any

  def _key(self):
    return (type(self),) + tuple(_frozen(getattr(self, f.name)) for f in dataclasses.fields(self))

  def __hash__(self):
    return hash(self._key())

  def __eq__(self, other):
    return type(other) is type(self) and self._key() == other._key()

  def __post_init__(self):
    if self.segments is not None:
      seg = np.asarray(self.segments)
      if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f"`segments` must be an (H, W) int map of unit ids; got "
                         f"{seg.dtype} of shape {seg.shape}.")
      object.__setattr__(self, "segments", seg)

  def replace(self, **changes):
    """A copy with some fields changed (`dataclasses.replace`)."""
    return dataclasses.replace(self, **changes)


def _explainer(cls):
  cls = dataclasses.dataclass(frozen=True, kw_only=True, eq=False)(cls)
  return jax.tree_util.register_static(cls)


@_explainer
class Lime(Explainer):
  """LIME (Ribeiro et al., KDD 2016) over the explainer's units; see `lime.lime`."""

  segments: Optional[np.ndarray] = None
  baseline: Any
  n_samples: int = 1000
  kernel_width: Optional[float] = None
  distance: str = "cosine"
  ridge: float = 1.0
  chunk_size: Optional[int] = None
  output: str = "prob"

  def __call__(self, model, x: Array, target, key: Array) -> Array:
    return lime(model, x, target, key, segments=self.segments, baseline=self.baseline,
                n_samples=self.n_samples, kernel_width=self.kernel_width,
                distance=self.distance, ridge=self.ridge, chunk_size=self.chunk_size,
                output=self.output)


@_explainer
class KernelShap(Explainer):
  """KernelSHAP (Lundberg & Lee, NeurIPS 2017) over the explainer's units; see `kernel_shap`."""

  segments: Optional[np.ndarray] = None
  baseline: Any
  n_samples: int = 512
  sampler: str = "kernel"
  control_variate: Union[bool, str] = False
  paired: bool = True
  output: str = "prob"
  chunk_size: Optional[int] = None

  def __call__(self, model, x: Array, target, key: Array) -> Array:
    return kernel_shap(model, x, target, key, segments=self.segments, baseline=self.baseline,
                       n_samples=self.n_samples, sampler=self.sampler,
                       control_variate=self.control_variate, paired=self.paired,
                       output=self.output, chunk_size=self.chunk_size)


@_explainer
class GradCam(Explainer):
  """Grad-CAM (Selvaraju et al., ICCV 2017) with its second-order term; see `grad_cam`.

  The model must be a `Predictor` (or expose `features`/`head`). With `segments`, the pixel map
  is summed over each segment (`masking.unit_sum`); without, the units are pixels. `baseline` is
  not used to explain, only by the curves and metrics that read it from the explainer.
  """

  segments: Optional[np.ndarray] = None
  baseline: Any
  upsample: str = "nearest"
  second_order: bool = True
  output: str = "logit"

  def __call__(self, model, x: Array, target, key: Optional[Array] = None) -> Array:
    cam = grad_cam(model, x, target, key, upsample=self.upsample, second_order=self.second_order,
                   output=self.output)
    return unit_sum(cam, segments=self.segments)


@_explainer
class IntegratedGradients(Explainer):
  """Integrated gradients (Sundararajan et al., ICML 2017); see `attributions`.

  The path starts at the explainer's `baseline`, which is also the curves' baseline.
  """

  segments: Optional[np.ndarray] = None
  baseline: Any
  n_steps: int = 32
  method: str = "trapezoid"
  output: str = "prob"
  chunk_size: Optional[int] = None

  def __call__(self, model, x: Array, target, key: Optional[Array] = None) -> Array:
    return attributions.integrated_gradients(
        model, x, target, key, baseline=self.baseline, segments=self.segments,
        n_steps=self.n_steps, method=self.method, output=self.output, chunk_size=self.chunk_size)


@_explainer
class SmoothGrad(Explainer):
  """SmoothGrad (Smilkov et al., 2017); see `attributions.smooth_grad`.

  `baseline` is not used to explain, only by the curves and metrics.
  """

  segments: Optional[np.ndarray] = None
  baseline: Any
  n_samples: int = 50
  sigma: float = 0.15
  output: str = "prob"
  chunk_size: Optional[int] = None

  def __call__(self, model, x: Array, target, key: Array) -> Array:
    return attributions.smooth_grad(model, x, target, key, segments=self.segments,
                                    n_samples=self.n_samples, sigma=self.sigma,
                                    output=self.output, chunk_size=self.chunk_size)


@_explainer
class GradientTimesInput(Explainer):
  """`(x − b) ⊙ ∇f(x)` with the explainer's baseline `b`; see `attributions`."""

  segments: Optional[np.ndarray] = None
  baseline: Any
  output: str = "prob"

  def __call__(self, model, x: Array, target, key: Optional[Array] = None) -> Array:
    return attributions.gradient_times_input(model, x, target, key, baseline=self.baseline,
                                             segments=self.segments, output=self.output)


@_explainer
class InputGradients(Explainer):
  """The signed gradient `∇f(x)` summed to units; see `attributions.target_gradient`.

  `baseline` is not used to explain, only by the curves and metrics.
  """

  segments: Optional[np.ndarray] = None
  baseline: Any
  output: str = "prob"

  def __call__(self, model, x: Array, target, key: Optional[Array] = None) -> Array:
    return attributions.target_gradient(model, x, target, key, segments=self.segments,
                                        output=self.output)


_MISSING = object()


def units_of(explainer: Optional[Callable]) -> tuple[Any, Any]:
  """`(segments, baseline)` carried by an explainer, `_MISSING` where it carries none.

  Reads the attributes of an `Explainer`, or the keywords of a `functools.partial` of a pure
  function (e.g. `partial(ij.lime, segments=s, baseline=b)`).
  """
  if explainer is None:
    return _MISSING, _MISSING
  if isinstance(explainer, functools.partial):
    kw = explainer.keywords
    return kw.get("segments", _MISSING), kw.get("baseline", _MISSING)
  return getattr(explainer, "segments", _MISSING), getattr(explainer, "baseline", _MISSING)


def resolve_units(explainer, segments, baseline, *, where: str) -> tuple[Any, Any]:
  """The units and baseline a function uses: its own arguments, else the explainer's.

  Raises:
    ValueError: when no baseline is given anywhere, or when `segments` given to the function
      differ from the explainer's (the attribution would score other units).
  """
  e_seg, e_base = units_of(explainer)
  if segments is None and e_seg is not _MISSING:
    segments = e_seg
  elif segments is not None and e_seg is not _MISSING and e_seg is not None:
    if _frozen(np.asarray(segments)) != _frozen(np.asarray(e_seg)):
      raise ValueError(f"`{where}`: the `segments` given differ from the explainer's; state the "
                       f"units once, on the explainer.")
  if baseline is None:
    if e_base is _MISSING or e_base is None:
      raise ValueError(f"`{where}` needs a `baseline`: pass `baseline=` or an explainer that "
                       f"carries one (e.g. `ij.Lime(segments=..., baseline=...)`).")
    baseline = e_base
  return segments, baseline
