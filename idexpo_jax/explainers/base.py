"""Explainers as frozen configurations: units, baseline and options stated once.

Each class is a frozen, keyword-only dataclass whose fields are its units (`segments`), its
`baseline`, its `output` and every option of the pure function it wraps (`lime.lime`,
`kernel_shap.kernel_shap`, `grad_cam.grad_cam`, `gradients.*`), which stay the core::

    lime = ij.Lime(segments=ij.grid_segments(16, 16, 4), baseline=0.0, n_samples=500)
    phi = lime(model, x, target, key)                    # φ (d,), d = 16 cells
    penalty = ij.IdExpo(lime)                            # the same units and baseline

Every explainer has the one call `explainer(model, x, target, key) -> φ (d,)`, where `model` is
an NNX module (or any object) with `features`/`head` methods, a `Predictor`, or — for explainers
that need only logits — a logits function `xb -> (B, K)` (`core.predictor.as_predictor`).
`ij.IdExpo`, `ij.InsertionDeletion` and `ij.explain` read `explainer.segments` and
`explainer.baseline`, so the units are stated once.

jit: every field is static. The objects are hashable and compare by value (arrays by shape, dtype
and bytes); arrays given to a field are copied into read-only NumPy arrays, so editing the
caller's array later changes neither the object nor its hash. They are registered as pytrees
without leaves (`jax.tree_util.register_static`), so an explainer may be closed over, passed as a
static argument or as an ordinary argument of a jitted function; equal configurations reuse the
same compilation. The baseline is therefore a constant of the compiled function: a baseline that
changes from call to call (e.g. computed from the batch inside `jit`) belongs in a new object
built inside the traced function (which is never hashed) or in the pure functions' `baseline=`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, ClassVar, Optional

import jax
import numpy as np

from idexpo_jax.core.config import Config, config, frozen_key
from idexpo_jax.core.masking import unit_sum
from idexpo_jax.explainers import gradients
from idexpo_jax.explainers.grad_cam import grad_cam
from idexpo_jax.explainers.kernel_shap import kernel_shap
from idexpo_jax.explainers.lime import lime

Array = jax.Array


class Explainer(Config):
  """Base of the explainer configurations: value hashing, `replace`, and the one call.

  A subclass is a frozen, keyword-only dataclass (`@explainer_config`) whose fields are the
  keyword options of its pure function `function` (checked when the class is made, so the two
  cannot drift); the fields `segments` (an `(H, W)` int map of unit ids 0..d−1, or None for
  pixels / tabular features) and `baseline` (broadcastable to an example) are common to all.
  Fields in `not_passed` belong to the object but not to the function (Grad-CAM's units and
  baseline, which only the metrics read).

  Attributes:
    segments: `(H, W)` int map of unit ids `0..d−1` (e.g. `ij.grid_segments`); `None`: pixels
      (images) or features (tabular).
    baseline: the value of removed units, broadcastable to one example (a scalar, a per-channel
      `(C,)` mean, or a full example); read by `ij.IdExpo`, `ij.InsertionDeletion` and
      `ij.explain`.
  """

  function: ClassVar[Callable]
  not_passed: ClassVar[tuple[str, ...]] = ()
  segments: Optional[np.ndarray]
  baseline: Any

  def __post_init__(self):
    if self.segments is not None:
      seg = np.asarray(self.segments)
      if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f"`segments` must be an (H, W) int map of unit ids; got "
                         f"{seg.dtype} of shape {seg.shape}.")
    super().__post_init__()

  def options(self) -> dict:
    """The keyword arguments this object passes to its pure function."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name not in self.not_passed}

  def __call__(self, model, x: Array, target, key: Optional[Array] = None) -> Array:
    """`φ (d,)`: the explanation of `x` for class `target` (see the pure function)."""
    return type(self).function(model, x, target, key, **self.options())


def _keyword_options(fn: Callable) -> set[str]:
  return {name for name, p in inspect.signature(fn).parameters.items()
          if p.kind is inspect.Parameter.KEYWORD_ONLY}


def explainer_config(cls):
  """Class decorator: a frozen keyword-only dataclass registered as a static pytree.

  Raises TypeError when the fields (less `not_passed`) differ from the keyword options of
  `cls.function`: every option of the function is a field of its object and vice versa.
  """
  cls = config(cls, kw_only=True)
  fields = {f.name for f in dataclasses.fields(cls)} - set(cls.not_passed)
  wanted = _keyword_options(cls.function)
  if fields != wanted:
    raise TypeError(f"{cls.__name__}: fields {sorted(fields)} differ from the keyword options "
                    f"{sorted(wanted)} of {cls.function.__name__}.")
  return cls


@explainer_config
class Lime(Explainer):
  """LIME (Ribeiro, Singh & Guestrin, KDD 2016) over the explainer's units; see `lime.lime`.

  Example::

    lime = ij.Lime(segments=ij.grid_segments(32, 32, 4), baseline=0.0, n_samples=1000)
    phi = lime(model, x, target, key)   # (64,): one coefficient per 4×4 cell

  Attributes:
    segments: `(H, W)` int map of unit ids `0..d−1` (e.g. `ij.grid_segments`); `None`: pixels
      (images) or features (tabular).
    baseline: the value of removed units, broadcastable to an example (`lime_image`'s
      `hide_color`).
    n_samples: samples `N`, at least 2; row 0 is the example itself (`lime_image`'s
      `num_samples=1000`).
    kernel_width: width `w > 0` of the kernel `sqrt(exp(−D²/w²))`; `None`: `lime`'s, 0.25 for
      "cosine" and `0.75·sqrt(d)` for "euclidean".
    distance: "cosine" (images, as `lime_image`) or "euclidean" (tabular, `lime_tabular`'s width).
    ridge: L2 penalty `λ >= 0` of the weighted ridge (`lime`'s `Ridge(alpha=1)`).
    chunk_size: optional number of masked inputs per model call.
    output: the explained score of `target`: "prob" (softmax probability, `lime`'s
      `classifier_fn`), "log_prob", "logit" or "raw" (the model's output as it is).
    paired: draw the samples after row 0 as antithetic pairs `(z, 1 − z)`.
  """

  function: ClassVar[Callable] = staticmethod(lime)
  segments: Optional[np.ndarray] = None
  baseline: Any
  n_samples: int = 1000
  kernel_width: Optional[float] = None
  distance: str = "cosine"
  ridge: float = 1.0
  chunk_size: Optional[int] = None
  output: str = "prob"
  paired: bool = False


@explainer_config
class KernelShap(Explainer):
  """KernelSHAP (Lundberg & Lee, NeurIPS 2017) over the explainer's units; see
  `kernel_shap.kernel_shap`.

  `Σφ = v(1) − v(0)` exactly: the scores of the example and of the baseline.

  Attributes:
    segments: `(H, W)` int map of unit ids `0..d−1` (e.g. `ij.grid_segments`); `None`: pixels
      (images) or features (tabular).
    baseline: the single background row, broadcastable to an example (`shap`'s
      `KernelExplainer(model, data)` with one row of `data`).
    n_samples: coalition budget (model evaluations besides `v(1)` and `v(0)`); all `2^d − 2`
      coalitions are enumerated when they fit.
    sampler: "kernel" (small and large sizes complete, the rest stratified by kernel mass),
      "leverage" (equal mass per size; Musco & Witter, 2025) or "iid" (i.i.d. from the kernel).
    control_variate: False, "additive" (or True) or "pairwise": regress only the residual of a
      surrogate game whose Shapley values are known exactly (needs `d <= 16`).
    paired: add the complement of every sampled coalition (the stratified samplers always do;
      `False` needs `sampler="iid"`).
    output: the explained score of `target`: "prob", "log_prob", "logit" or "raw".
    chunk_size: optional number of masked inputs per model call.
  """

  function: ClassVar[Callable] = staticmethod(kernel_shap)
  segments: Optional[np.ndarray] = None
  baseline: Any
  n_samples: int = 512
  sampler: str = "kernel"
  control_variate: Any = False
  paired: bool = True
  output: str = "prob"
  chunk_size: Optional[int] = None


@explainer_config
class GradCam(Explainer):
  """Grad-CAM (Selvaraju et al., ICCV 2017) with its second-order term; see `grad_cam.grad_cam`.

  The model must have spatial features: an NNX module with `features`/`head` methods (the
  library's `models`) or a `Predictor`. With `segments`, the pixel map is summed over each segment
  (`masking.unit_sum`); without, the units are pixels. `baseline` is not used to explain, only by
  the curves and metrics that read it from the explainer. `output="logit"` by default: Grad-CAM
  differentiates the pre-softmax class score (the paper's definition), where the sampling
  explainers explain the probability.

  Attributes:
    segments: `(H, W)` int map of unit ids `0..d−1` (e.g. `ij.grid_segments`); `None`: pixels
      (images) or features (tabular).
    baseline: the value of removed units for the curves and metrics (not used to explain).
    upsample: "nearest" (each cell of the feature map a block of pixels, as the ID-ExpO
      reference) or "bilinear".
    second_order: keep the weights `α` (the pooled gradients) in the graph, so that a penalty
      differentiates through them (default), or stop their gradient.
    output: the differentiated score: "logit" (the paper's), "log_prob", "prob" or "raw".
  """

  function: ClassVar[Callable] = staticmethod(grad_cam)
  not_passed: ClassVar[tuple[str, ...]] = ("segments", "baseline")
  segments: Optional[np.ndarray] = None
  baseline: Any
  upsample: str = "nearest"
  second_order: bool = True
  output: str = "logit"

  def __call__(self, model, x: Array, target, key: Optional[Array] = None) -> Array:
    return unit_sum(grad_cam(model, x, target, key, **self.options()), segments=self.segments)


@explainer_config
class IntegratedGradients(Explainer):
  """Integrated gradients (Sundararajan, Taly & Yan, ICML 2017); see
  `gradients.integrated_gradients`. The path starts at the explainer's `baseline`, which is also
  the curves' baseline.

  Attributes:
    segments: `(H, W)` int map of unit ids `0..d−1` (e.g. `ij.grid_segments`); `None`: pixels
      (images) or features (tabular).
    baseline: the start `b` of the straight path to `x` (completeness:
      `Σφ ≈ f(x) − f(b)`), broadcastable to an example.
    n_steps: points on the path, i.e. model gradients per explanation.
    method: the quadrature rule: "trapezoid", "left", "right", "middle" or "gausslegendre".
    output: the explained score of `target`: "prob", "log_prob", "logit" or "raw".
    chunk_size: optional number of path points per model call.
  """

  function: ClassVar[Callable] = staticmethod(gradients.integrated_gradients)
  segments: Optional[np.ndarray] = None
  baseline: Any
  n_steps: int = 32
  method: str = "trapezoid"
  output: str = "prob"
  chunk_size: Optional[int] = None


@explainer_config
class SmoothGrad(Explainer):
  """SmoothGrad (Smilkov et al., 2017); see `gradients.smooth_grad`. `baseline` is not used to
  explain, only by the curves and metrics.

  Attributes:
    segments: `(H, W)` int map of unit ids `0..d−1` (e.g. `ij.grid_segments`); `None`: pixels
      (images) or features (tabular).
    baseline: the value of removed units for the curves and metrics (not used to explain).
    n_samples: noisy copies `x + σ·ε` whose gradients are averaged.
    sigma: standard deviation `σ >= 0` of the Gaussian noise, in input units (0: the gradient).
    output: the explained score of `target`: "prob", "log_prob", "logit" or "raw".
    chunk_size: optional number of noisy copies per model call.
  """

  function: ClassVar[Callable] = staticmethod(gradients.smooth_grad)
  not_passed: ClassVar[tuple[str, ...]] = ("baseline",)
  segments: Optional[np.ndarray] = None
  baseline: Any
  n_samples: int = 50
  sigma: float = 0.15
  output: str = "prob"
  chunk_size: Optional[int] = None


@explainer_config
class GradientTimesInput(Explainer):
  """`(x − b) ⊙ ∇f(x)` with the explainer's baseline `b`; see `gradients.gradient_times_input`.

  Gradient × input (Shrikumar et al., 2016) for `b = 0`.

  Attributes:
    segments: `(H, W)` int map of unit ids `0..d−1` (e.g. `ij.grid_segments`); `None`: pixels
      (images) or features (tabular).
    baseline: the reference `b` subtracted from `x` (also the curves' baseline).
    output: the differentiated score of `target`: "prob", "log_prob", "logit" or "raw".
  """

  function: ClassVar[Callable] = staticmethod(gradients.gradient_times_input)
  segments: Optional[np.ndarray] = None
  baseline: Any
  output: str = "prob"


@explainer_config
class InputGradients(Explainer):
  """The signed gradient `∇f(x)` summed to units; see `gradients.target_gradient`. `baseline` is
  not used to explain, only by the curves and metrics.

  The saliency map of Simonyan, Vedaldi & Zisserman (ICLR 2014 workshop), without its absolute
  value.

  Attributes:
    segments: `(H, W)` int map of unit ids `0..d−1` (e.g. `ij.grid_segments`); `None`: pixels
      (images) or features (tabular).
    baseline: the value of removed units for the curves and metrics (not used to explain).
    output: the differentiated score of `target`: "prob", "log_prob", "logit" or "raw".
  """

  function: ClassVar[Callable] = staticmethod(gradients.target_gradient)
  not_passed: ClassVar[tuple[str, ...]] = ("baseline",)
  segments: Optional[np.ndarray] = None
  baseline: Any
  output: str = "prob"


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
    if frozen_key(np.asarray(segments)) != frozen_key(np.asarray(e_seg)):
      raise ValueError(f"`{where}`: the `segments` given differ from the explainer's; state the "
                       f"units once, on the explainer.")
  if baseline is None:
    if e_base is _MISSING or e_base is None:
      raise ValueError(f"`{where}` needs a `baseline`: pass `baseline=` or an explainer that "
                       f"carries one (e.g. `ij.Lime(segments=..., baseline=...)`).")
    baseline = e_base
  return segments, baseline
