"""The method registry shared by the experiments: explainers and fine-tuning losses by name.

An *explainer factory* `factory(cfg, *, baseline, segments_of) -> Explainer` builds an
`Explainer(fn, segments)` where `fn(predictor, x, target, key) -> φ` (one score per unit, the
interface of `idexpo_penalty`) and `segments` is the unit map it scores (`None`: pixels, or
tabular features). `segments_of(cell)` returns a `grid_segments` map of the experiment's images
(or `None` for tabular data), so segment-based explainers pick their own cell size from `cfg`.

A *method* names a fine-tuning objective: `Method(explainer=None)` is cross-entropy only;
`Method(explainer="gradcam")` is ID-ExpO with that explainer,
`CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)` (Yoshikawa & Iwata, AISTATS 2024).

Registered here: explainers `gradcam` (pixels, or grid cells with `cfg.cell`), `lime` and `kernel_shap` (`segment_explainer`s:
grid cells of `cfg.cell` pixels on images, the features on tabular data) and methods `ce`,
`idexpo_gradcam`, `idexpo_lime`, `idexpo_kernelshap`. Other modules extend the registry without
editing these tables, e.g.::

  register_explainer("my_lime", segment_explainer(lime, "n_samples", "kernel_width"))
  register_method("idexpo_my_lime", Method(explainer="my_lime"))
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import numpy as np

from idexpo_jax.explainers.grad_cam import grad_cam
from idexpo_jax.explainers.kernel_shap import kernel_shap
from idexpo_jax.explainers.lime import lime
from idexpo_jax.core.masking import unit_sum


class Explainer(NamedTuple):
  """An explainer bound to its options: `fn(predictor, x, target, key) -> φ` over `segments`."""

  fn: Callable
  segments: Optional[np.ndarray] = None


class Method(NamedTuple):
  """A fine-tuning objective: cross-entropy (`explainer=None`) or ID-ExpO with an explainer."""

  explainer: Optional[str] = None


def gradcam_explainer(cfg, *, baseline, segments_of) -> Explainer:
  """Grad-CAM (`cfg.upsample`, `cfg.second_order`); the baseline is not used.

  Units are pixels, or with `cfg.cell` set, grid cells of `cell × cell` pixels scored by the sum
  of the (upsampled) map over the cell.
  """
  del baseline
  explain = functools.partial(grad_cam, upsample=cfg.get("upsample", "nearest"),
                              second_order=cfg.get("second_order", True))
  if cfg.get("cell", None) is None:
    return Explainer(explain)
  segments = segments_of(cfg["cell"])
  n_units = int(segments.max()) + 1

  def cells(predictor, x, target, key=None):
    return unit_sum(explain(predictor, x, target, key), segments=segments, n_units=n_units)

  return Explainer(cells, segments)


def segment_explainer(explain: Callable, *option_names: str) -> Callable:
  """Factory for an explainer `explain(logits_fn, x, target, key, *, segments, baseline, ...)`.

  The units are `segments_of(cfg.cell)` (grid cells of `cfg.cell` pixels on images; features on
  tabular data when `segments_of` gives `None`), and every name in `option_names` present in
  `cfg` is passed on as a keyword (e.g. `n_samples`).
  """

  def factory(cfg, *, baseline, segments_of) -> Explainer:
    segments = segments_of(cfg.get("cell", 1))
    options = {name: cfg[name] for name in option_names if name in cfg}
    return Explainer(functools.partial(explain, segments=segments, baseline=baseline, **options),
                     segments)

  return factory


LIME_OPTIONS = ("n_samples", "kernel_width", "distance", "ridge", "chunk_size")
KERNEL_SHAP_OPTIONS = ("n_samples", "paired", "output", "chunk_size")

EXPLAINERS: dict[str, Callable] = {
    "gradcam": gradcam_explainer,
    "lime": segment_explainer(lime, *LIME_OPTIONS),
    "kernel_shap": segment_explainer(kernel_shap, *KERNEL_SHAP_OPTIONS)}
METHODS: dict[str, Method] = {
    "ce": Method(), "idexpo_gradcam": Method(explainer="gradcam"),
    "idexpo_lime": Method(explainer="lime"), "idexpo_kernelshap": Method(explainer="kernel_shap")}


def register_explainer(name: str, factory: Callable) -> None:
  """Adds (or replaces) an explainer factory under `name`."""
  EXPLAINERS[name] = factory


def register_method(name: str, method: Method) -> None:
  """Adds (or replaces) a fine-tuning method under `name`."""
  if method.explainer is not None and method.explainer not in EXPLAINERS:
    raise ValueError(f"`method.explainer` must be one of {sorted(EXPLAINERS)}; got "
                     f"{method.explainer!r}.")
  METHODS[name] = method


def get_method(name: str) -> Method:
  """The registered method `name`, with a clear error for unknown names."""
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; registered: {sorted(METHODS)}.")
  return METHODS[name]


def make_explainer(name: str, cfg, *, baseline, image_shape=None) -> Explainer:
  """Builds the registered explainer `name` with options `cfg` (a ConfigDict or dict).

  Args:
    name: a key of `EXPLAINERS`.
    cfg: the explainer's options.
    baseline: the value of removed units, broadcastable to one example.
    image_shape: `(H, W, C)` of image inputs (grid segments are built for it), or `None` for
      tabular inputs (units are the features).
  """
  from idexpo_jax.core.masking import grid_segments
  if name not in EXPLAINERS:
    raise ValueError(f"Unknown explainer {name!r}; registered: {sorted(EXPLAINERS)}.")

  def segments_of(cell: int):
    if image_shape is None:
      return None
    return grid_segments(image_shape[0], image_shape[1], cell)

  return EXPLAINERS[name](cfg, baseline=baseline, segments_of=segments_of)


def make_train_eval_explainers(name: str, cfg, *, baseline, image_shape=None
                               ) -> tuple[Explainer, Explainer]:
  """`(train, eval)` explainers of `make_explainer(name, ...)` with different sample budgets.

  Explainers inside the train step may use fewer samples than the evaluated ones: the optional
  `cfg.train_samples` and `cfg.eval_samples` become `n_samples` of each (both are dropped from the
  options; explainers without samples, e.g. Grad-CAM, give the same explainer twice).
  """
  options = {k: v for k, v in cfg.items() if k not in ("train_samples", "eval_samples")}

  def build(n_samples):
    extra = {} if n_samples is None else {"n_samples": n_samples}
    return make_explainer(name, {**options, **extra}, baseline=baseline, image_shape=image_shape)

  return build(cfg.get("train_samples", None)), build(cfg.get("eval_samples", None))
