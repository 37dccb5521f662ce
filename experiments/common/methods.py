"""The explainers and fine-tuning methods of the experiments, by name.

An explainer of a driver config is the library's object: the config's name picks the class of
`EXPLAINERS` (`gradcam` → `ij.GradCam`, Selvaraju et al., ICCV 2017; `lime` → `ij.Lime`,
Ribeiro et al., KDD 2016; `kernel_shap` → `ij.KernelShap`, Lundberg & Lee, NeurIPS 2017) and
every other entry of the config is a field of that object (`n_samples`, `distance`, `upsample`,
...), except the driver-level entries of `DRIVER_OPTIONS`:

* `cell`: the units are grid cells of `cell × cell` pixels on images (`ij.grid_segments`). LIME
  and KernelSHAP default to `cell = 1` (pixels as segments); Grad-CAM without `cell` scores
  pixels, with it the sum of its pixel map over each cell. Tabular inputs: the features.
* `train_samples`, `eval_samples`: `n_samples` of the explainer inside the train step and of the
  evaluated one (`make_train_eval_explainers`).
* `name`: the explainer's name, where a config carries it.

A method names a fine-tuning objective: `Method(explainer=None)` is cross-entropy only;
`Method(explainer="gradcam")` is ID-ExpO with that explainer,
`CE + λ·mean(cIns + cDel) + λ₂·mean(φ²)` (Yoshikawa & Iwata, AISTATS 2024). Other modules extend
both tables, e.g.::

  register_explainer("smoothgrad", ij.SmoothGrad)
  register_method("idexpo_smoothgrad", Method(explainer="smoothgrad"))
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import idexpo_jax as ij

#: Config entries read by the drivers, not fields of the explainer object.
DRIVER_OPTIONS = ("name", "cell", "train_samples", "eval_samples")


class Method(NamedTuple):
  """A fine-tuning objective: cross-entropy (`explainer=None`) or ID-ExpO with an explainer."""

  explainer: Optional[str] = None


EXPLAINERS: dict[str, type] = {"gradcam": ij.GradCam, "lime": ij.Lime,
                               "kernel_shap": ij.KernelShap}
METHODS: dict[str, Method] = {
    "ce": Method(), "idexpo_gradcam": Method(explainer="gradcam"),
    "idexpo_lime": Method(explainer="lime"), "idexpo_kernelshap": Method(explainer="kernel_shap")}


def register_explainer(name: str, cls: type) -> None:
  """Adds (or replaces) an explainer class (a subclass of `ij.Explainer`) under `name`."""
  if not (isinstance(cls, type) and issubclass(cls, ij.Explainer)):
    raise TypeError(f"`cls` must be a subclass of `idexpo_jax.Explainer`; got {cls!r}.")
  EXPLAINERS[name] = cls


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


def make_explainer(name: str, cfg, *, baseline, image_shape=None) -> ij.Explainer:
  """The explainer object `EXPLAINERS[name]` with the options of `cfg` (a ConfigDict or dict).

  Args:
    name: a key of `EXPLAINERS`.
    cfg: the explainer's fields, plus the driver entries of `DRIVER_OPTIONS`.
    baseline: the value of removed units, broadcastable to one example.
    image_shape: `(H, W, C)` of image inputs (grid segments are built for it), or `None` for
      tabular inputs (units are the features).
  """
  if name not in EXPLAINERS:
    raise ValueError(f"Unknown explainer {name!r}; registered: {sorted(EXPLAINERS)}.")
  cls = EXPLAINERS[name]
  options = {k: v for k, v in cfg.items() if k not in DRIVER_OPTIONS}
  cell = cfg.get("cell", None if cls is ij.GradCam else 1)
  segments = None
  if image_shape is not None and cell is not None:
    segments = ij.grid_segments(image_shape[0], image_shape[1], cell)
  try:
    return cls(segments=segments, baseline=baseline, **options)
  except TypeError as e:  # an option that is no field of the class
    raise ValueError(f"explainer {name!r}: options {sorted(options)} are not all fields of "
                     f"{cls.__name__} ({e}).") from e


def make_train_eval_explainers(name: str, cfg, *, baseline, image_shape=None
                               ) -> tuple[ij.Explainer, ij.Explainer]:
  """`(train, eval)` explainers of `make_explainer(name, ...)` with different sample budgets.

  Explainers inside the train step may use fewer samples than the evaluated ones: the optional
  `cfg.train_samples` and `cfg.eval_samples` become `n_samples` of each (explainers without
  samples, e.g. Grad-CAM, give the same explainer twice).
  """

  def build(n_samples):
    extra = {} if n_samples is None else {"n_samples": n_samples}
    return make_explainer(name, {**dict(cfg.items()), **extra}, baseline=baseline,
                          image_shape=image_shape)

  return build(cfg.get("train_samples", None)), build(cfg.get("eval_samples", None))
