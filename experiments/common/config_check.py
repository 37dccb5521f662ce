"""One validator for every driver's config: bad values fail before any work, naming the field.

Every config family (the configs of one driver, `experiments/<driver>/configs/*.py`) has a schema
below, written once: the dotted path of every field it may hold and the field's kind (type and
range). `validate_config(cfg)` finds the family (from the config's top-level fields, or
`family=`), then checks every leaf of the config: a field the schema does not know is an error
(a typo such as `finetune.lamda` is not silently ignored), and every known field must be of its
kind. Fields are optional (a config may leave one out; the driver's default applies); `None`
passes only where the kind says "or None". Every violation is reported at once, as
`ValueError("Invalid config (nothing was run): config field `finetune.lr` must be a finite
number > 0; got -0.1.")`.

A `*` in a schema path matches any key (e.g. `weights.*`: one grid per method). Each kind also
lists values it rejects (`Kind.bad`), from which the tests perturb every field of every config.
"""

from __future__ import annotations

import ast
import math
import numbers
from typing import Any, Callable, Mapping, NamedTuple, Optional

from experiments.common.expo import METHODS as _EXPO_METHODS
from idexpo_jax.core.predictor import OUTPUTS


class Kind(NamedTuple):
  """The type and range of a field: a description, a predicate and values it must reject."""

  what: str
  ok: Callable[[Any], bool]
  bad: tuple = ()


def _number(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


_NAN = float("nan")
POSITIVE = Kind("a finite number > 0", lambda v: _number(v) and v > 0, (0.0, -0.1, _NAN, "1"))
NONNEGATIVE = Kind("a finite number >= 0", lambda v: _number(v) and v >= 0, (-0.01, _NAN, "0"))
UNIT_INTERVAL = Kind("a number in (0, 1]", lambda v: _number(v) and 0 < v <= 1, (0.0, 1.5, "x"))
PROBABILITY = Kind("a number in [0, 1]", lambda v: _number(v) and 0 <= v <= 1, (-0.1, 1.5, "x"))
MOMENTUM = Kind("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1, (1.0, -0.5, "x"))
COUNT = Kind("an integer >= 1", lambda v: _int(v) and v >= 1, (0, -3, 1.5, True))
NONNEG_INT = Kind("an integer >= 0", lambda v: _int(v) and v >= 0, (-3, 1.5, True))
BOOL = Kind("True or False", lambda v: isinstance(v, bool), (1, "yes", None))
DIGITS_SIZE = Kind("a multiple of 8 >= 8 (the side of the upsampled 8×8 digits)",
                   lambda v: _int(v) and v >= 8 and v % 8 == 0, (12, 0, 16.0, True))
TEXT = Kind("a non-empty string", lambda v: isinstance(v, str) and v != "", ("", 3, None))


def choice(*values) -> Kind:
  """One of `values` (compared with `==`, never a bool for a string)."""
  return Kind(f"one of {list(values)}", lambda v: isinstance(v, str) and v in values,
              ("bogus", 3, None))


def optional(kind: Kind) -> Kind:
  """`kind`, or `None` (unset: the driver's default)."""
  return Kind(f"{kind.what} or None", lambda v: v is None or kind.ok(v),
              tuple(b for b in kind.bad if b is not None))


def each(kind: Kind) -> Kind:
  """A non-empty tuple or list of `kind` values."""
  what = kind.what.removeprefix("a ").removeprefix("an ")
  return Kind(f"a non-empty sequence of {what} values",
              lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and all(kind.ok(x) for x in v),
              ((), kind.bad[0], (kind.bad[0],)))


def names(known: Callable[[], Any], what: str, *, csv: bool = False) -> Kind:
  """Names from `known()` (evaluated when checking: registries may grow); `csv`: one string
  `"a,b"`, else a non-empty tuple or list of names."""

  def ok(v):
    items = v.split(",") if csv and isinstance(v, str) else v
    if csv and not isinstance(v, str) or not csv and not isinstance(v, (tuple, list)):
      return False
    return len(items) > 0 and all(isinstance(x, str) and x in known() for x in items)

  form = "a comma-separated string" if csv else "a non-empty sequence"
  return Kind(f"{form} of {what}", ok, ("bogus", ("bogus",), 3) if not csv else ("bogus", "", 3))


def _demo_methods():
  from experiments.common import methods
  return methods.METHODS


_STUDY_METHODS = ("ce", "idexpo", "expo_fidelity", "expo_stability", "gradient")
_EXPLAINERS = ("gradcam", "lime", "kernel_shap")
_DELETION = choice("ratio", "direct")
_OUTPUT = choice(*OUTPUTS)
_OPTIMIZER = choice("sgd", "adam")
_CHECKPOINT = {"checkpoint_dir": optional(TEXT), "checkpoint_every": NONNEG_INT}
_SGD = {"optimizer": _OPTIMIZER, "lr": POSITIVE, "momentum": MOMENTUM, "nesterov": BOOL,
        "weight_decay": NONNEGATIVE, "steps": COUNT, "batch_size": COUNT, "seed": NONNEG_INT}
# ID-ExpO's soft curves and loss weights (the fine-tuning of demo, tabular and study).
_SOFT = {"lam": NONNEGATIVE, "lam2": NONNEGATIVE, "n_steps": NONNEG_INT, "fraction": UNIT_INTERVAL,
         "temperature": POSITIVE, "deletion": _DELETION, "log_softmax": BOOL,
         "chunk_size": optional(COUNT), "eval_every": NONNEG_INT, "penalty_batch": NONNEG_INT}
_LIME = {"cell": COUNT, "distance": choice("cosine", "euclidean"), "ridge": NONNEGATIVE,
         "kernel_width": optional(POSITIVE), "train_samples": COUNT, "eval_samples": COUNT}
_KERNEL_SHAP = {"cell": COUNT, "output": _OUTPUT, "paired": BOOL, "train_samples": COUNT,
                "eval_samples": COUNT}
_SELECTION = {"eta": POSITIVE, "accuracy_drop": PROBABILITY}


def _under(prefix: str, fields: Mapping[str, Kind]) -> dict[str, Kind]:
  return {f"{prefix}.{k}": v for k, v in fields.items()}


_DEMO = {
    "seed": NONNEG_INT, "out_dir": TEXT,
    "methods": names(_demo_methods, "registered fine-tuning methods", csv=True),
    "data.size": DIGITS_SIZE, "data.seed": NONNEG_INT,
    "model.name": choice("small_cnn", "mlp", "resnet18"), "model.width": COUNT,
    **_under("pretrain", {**_SGD, **_CHECKPOINT}),
    **_under("finetune", {**_SGD, **_SOFT, **_CHECKPOINT}),
    # Each ID-ExpO method's options over `finetune` (never its steps, batches or optimizer).
    **_under("per_method.*", _SOFT),
    "explainers.gradcam.upsample": choice("nearest", "bilinear"),
    "explainers.gradcam.second_order": BOOL,
    **_under("explainers.lime", _LIME), **_under("explainers.kernel_shap", _KERNEL_SHAP),
    "eval.explainers": names(lambda: _EXPLAINERS, "explainers", csv=True),
    "eval.n_steps": COUNT, "eval.fraction": UNIT_INTERVAL, "eval.batch_size": COUNT,
    "eval.splits": names(lambda: ("train", "val", "test"), "splits", csv=True),
    "eval.max_examples": NONNEG_INT, "plots.n_heatmaps": NONNEG_INT,
}


def _variant_kind() -> Kind:
  """The demo sweep's variants: `"method:key=value,..."` with keys of `finetune`/explainers."""
  explainer_of = {"idexpo_gradcam": "gradcam", "idexpo_lime": "lime",
                  "idexpo_kernelshap": "kernel_shap"}

  def ok(specs):
    if not isinstance(specs, (tuple, list)) or not specs:
      return False
    for spec in specs:
      if not isinstance(spec, str):
        return False
      name, _, rest = spec.partition(":")
      if name not in _demo_methods():
        return False
      for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
          return False
        try:
          value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
          value = value.strip()
        kind = (_DEMO.get(f"explainers.{explainer_of.get(name)}.{key.strip()}")
                or _DEMO.get(f"finetune.{key.strip()}"))
        if kind is None or not kind.ok(value):
          return False
    return True

  return Kind("a non-empty sequence of 'method:key=value,...' strings (registered methods, keys "
              "of `finetune` or of the method's explainer, valid values)", ok,
              ((), ("bogus",), ("ce:steps=0",), ("idexpo_lime:lamda=0.1",)))


_DEMO_SWEEP = {**_DEMO, "variants": _variant_kind(), "sweep_file": TEXT, "progress": BOOL,
               **_under("selection", _SELECTION)}

_EXPO = {
    "datasets": names(lambda: ("diabetes", "friedman1", "california_like"), "data sets"),
    "n_samples": COUNT, "seeds": each(NONNEG_INT),
    "methods": names(lambda: _EXPO_METHODS, "ExpO methods"),
    "model.hidden": each(COUNT), "model.leaky_slope": NONNEGATIVE,
    "train.lr": POSITIVE, "train.batch_size": COUNT, "train.reg_batch_size": COUNT,
    "train.max_steps": COUNT, "train.eval_every": COUNT, "train.patience": COUNT,
    "reg.c_grid": each(POSITIVE), "reg.fidelity_sigma": POSITIVE,
    "reg.fidelity_neighbors": NONNEG_INT, "reg.fidelity_1d_neighbors": COUNT,
    "reg.stability_radius": POSITIVE,
    "eval.lime_samples": COUNT, "eval.lime_sigma": POSITIVE, "eval.lime_ridge": NONNEGATIVE,
    "eval.neighbors": COUNT, "eval.sigma": POSITIVE, "eval.chunk": COUNT,
    "select.mse_tolerance": NONNEGATIVE, "select.max_points": COUNT,
    "select.metric.*": choice("nf", "stability"),
    "out_dir": TEXT, "progress": BOOL,
}

_EXPO_UCI = {
    "datasets": names(lambda: ("autompgs", "housing"), "UCI data sets"), "trials": COUNT,
    "methods": names(lambda: _EXPO_METHODS, "ExpO methods"), "out_dir": TEXT, "machine": TEXT,
    "model.hidden.*": each(COUNT), "model.leaky_slope": NONNEGATIVE,
    "model.init": choice("xavier", "default"),
    "train.lr": POSITIVE, "train.batch_size": COUNT, "train.reg_batch_size": COUNT,
    "train.patience": COUNT, "train.min_epochs": COUNT, "train.max_epochs": COUNT,
    "train.chunk_epochs": COUNT, "train.val_reg_rows": NONNEG_INT,
    "reg.fidelity_sigma": POSITIVE, "reg.fidelity_neighbors": NONNEG_INT,
    "reg.fidelity_1d_neighbors": COUNT, "reg.stability_radius": POSITIVE,
    "reg.c_grid": each(POSITIVE),
    "select.mse_tolerance": NONNEGATIVE, "select.val_points": COUNT,
    "select.report_paper_c": BOOL,
    "eval.sigma": POSITIVE, "eval.neighbors": COUNT, "eval.lime_samples": COUNT,
    "eval.lime_ridge": NONNEGATIVE, "eval.instance_stability": BOOL, "eval.chunk": COUNT,
    "eval.maple_trees": COUNT, "eval.maple_min_samples_leaf": COUNT,
    "eval.maple_max_features": UNIT_INTERVAL, "eval.maple_ridge": NONNEGATIVE,
}

_RRR = {
    "seed": NONNEG_INT, "cutoff": UNIT_INTERVAL, "batch_size": COUNT, "out_dir": TEXT,
    "progress": BOOL, "model.name": choice("mlp"), "model.hidden": each(COUNT),
    "optim.optimizer": _OPTIMIZER, "optim.lr": POSITIVE, "optim.weight_decay": NONNEGATIVE,
    "decoy.patch": COUNT, "decoy.epochs": COUNT, "decoy.lam_rule_of_thumb": BOOL,
    "decoy.lam": NONNEGATIVE, "decoy.seeds": each(NONNEG_INT), "decoy.lambdas": each(NONNEGATIVE),
    "toy.n_train": COUNT, "toy.n_val": COUNT, "toy.n_test": COUNT, "toy.n_probe": COUNT,
    "toy.epochs": COUNT, "toy.lam": NONNEGATIVE, "toy.lam_both": NONNEGATIVE,
    "toy.n_models": COUNT, "toy.sweep_rule": choice("corners", "top_middle"),
    "toy.lambdas": each(NONNEGATIVE),
    "lime.n_examples": COUNT, "lime.n_samples": COUNT, "lime.top_k": each(COUNT),
    "lime.timing_repeats": COUNT,
}

_RRR_MNIST = {
    "seeds": each(NONNEG_INT), "hidden": each(COUNT), "init_scale": POSITIVE, "lr": POSITIVE,
    "batch_size": COUNT, "epochs": COUNT, "patch": COUNT, "raw": BOOL,
    "scaling": choice("sum", "mean"), "lam": NONNEGATIVE, "weight_penalty": NONNEGATIVE,
    "lambdas": each(NONNEGATIVE), "repeat_mean_scaling": BOOL, "out_dir": TEXT, "progress": BOOL,
}

_TABULAR = {
    "seed": NONNEG_INT, "out_dir": TEXT,
    "datasets": names(lambda: ("breast_cancer", "wine", "iris", "digits16"), "data sets",
                      csv=True),
    "units": TEXT, "data_seed": NONNEG_INT,
    "model.name": choice("small_cnn", "mlp"), "model.hidden": each(COUNT), "model.width": COUNT,
    **_under("pretrain", _SGD), **_under("finetune", {**_SGD, **_SOFT}),
    "lams": each(NONNEGATIVE), **_under("selection", _SELECTION),
    "explainers.lime.name": choice("lime"), **_under("explainers.lime", _LIME),
    "explainers.kernel_shap.name": choice("kernel_shap"),
    **_under("explainers.kernel_shap", _KERNEL_SHAP),
    "eval.fraction": UNIT_INTERVAL, "eval.batch_size": COUNT, "eval.max_val": NONNEG_INT,
    "eval.max_test": NONNEG_INT,
}

# The study driver (experiments/study) and the image configs that run it (experiments/image).
_STUDY_EXPLAINER = {"name": choice(*_EXPLAINERS), "cell": COUNT, "n_samples": COUNT,
                    "distance": choice("cosine", "euclidean"), "chunk_size": optional(COUNT),
                    "upsample": choice("nearest", "bilinear"), "second_order": BOOL}
_STUDY = {
    "seeds": each(NONNEG_INT), "methods": names(lambda: _STUDY_METHODS, "study methods"),
    "output_dir": TEXT, "output_name": TEXT,
    "data.name": choice("digits", "mnist5k", "breast_cancer", "wine", "iris", "cifar10", "stl10",
                        "mnist"),
    "data.size": DIGITS_SIZE, "data.seed": NONNEG_INT, "data.data_dir": optional(TEXT),
    "data.image_size": optional(COUNT), "data.val_size": optional(COUNT),
    "data.max_train": optional(COUNT), "data.max_test": optional(COUNT),
    "model.name": choice("small_cnn", "mlp", "resnet18"), "model.width": COUNT,
    "model.hidden": each(COUNT), "model.pool": COUNT, "model.stem_stride": COUNT,
    **_under("explainer", _STUDY_EXPLAINER),
    **_under("pretrain", {**_SGD, **_CHECKPOINT}),
    **_under("finetune", {**_SGD, **_CHECKPOINT, "n_steps": COUNT, "fraction": UNIT_INTERVAL,
                          "temperature": POSITIVE, "deletion": _DELETION, "lam2": NONNEGATIVE,
                          "ce_from_penalty": BOOL, "expo_sigma": POSITIVE,
                          "expo_n_neighbors": optional(COUNT), "expo_radius": POSITIVE,
                          "expo_reg_batch": optional(COUNT),
                          "expo_output": choice("prob", "logits_mean"),
                          "expo_sigma_relative": BOOL, "explainer.n_samples": optional(COUNT)}),
    "weights.*": each(NONNEGATIVE),
    "eval.n_steps": COUNT, "eval.fraction": UNIT_INTERVAL, "eval.batch_size": COUNT,
    "eval.sens_fraction": UNIT_INTERVAL, "eval.n_subsets": COUNT,
    "eval.max_val": optional(COUNT), "eval.max_test": optional(COUNT),
    "eval.max_sens": optional(COUNT),
    "selection.etas": each(POSITIVE), "selection.main_eta": POSITIVE,
    "selection.accuracy_drop": PROBABILITY, "figures.n_examples": COUNT,
}

#: The schema of each config family: dotted field path (`*`: any key) -> `Kind`.
SCHEMAS: dict[str, dict[str, Kind]] = {
    "demo": _DEMO, "demo_sweep": _DEMO_SWEEP, "expo": _EXPO, "expo_uci": _EXPO_UCI,
    "rrr": _RRR, "rrr_mnist": _RRR_MNIST, "tabular": _TABULAR, "study": _STUDY,
}


def _leaves(tree, prefix: str = ""):
  """`(path, value)` of every leaf of a nested mapping (an empty mapping is a leaf too)."""
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, Mapping) and value:
      yield from _leaves(value, path + ".")
    else:
      yield path, value


def kind_of(schema: Mapping[str, Kind], path: str) -> Optional[Kind]:
  """The kind of the field `path` in `schema` (exact, else through `*` keys), or `None`."""
  if path in schema:
    return schema[path]
  parts = path.split(".")
  for pattern, kind in schema.items():
    p = pattern.split(".")
    if len(p) == len(parts) and all(a in ("*", b) for a, b in zip(p, parts)):
      return kind
  return None


def family_of(tree: Mapping[str, Any]) -> str:
  """The config family whose schema's top-level fields best match those of `tree`."""
  top = set(tree)

  def score(name):
    theirs = {k.split(".")[0] for k in SCHEMAS[name]}
    return len(top & theirs) / len(top | theirs), -len(theirs - top)

  best = max(SCHEMAS, key=score)
  if score(best)[0] < 0.5:
    raise ValueError(f"Invalid config (nothing was run): its fields {sorted(top)} match no "
                     f"config family ({sorted(SCHEMAS)}); pass `family=`.")
  return best


def _as_tree(cfg) -> dict:
  return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def validate_config(cfg, family: Optional[str] = None) -> str:
  """Checks every field of `cfg` (a `ConfigDict` or dict) against its family's schema.

  Args:
    cfg: a driver's config.
    family: one of `SCHEMAS` (default: `family_of(cfg)`).

  Returns:
    The family the config was checked as.

  Raises:
    ValueError: naming each unknown field and each field whose value is not of its kind (with
      the expected kind and the value), all at once.
  """
  tree = _as_tree(cfg)
  if family is None:
    family = family_of(tree)
  elif family not in SCHEMAS:
    raise ValueError(f"`family` must be one of {sorted(SCHEMAS)}; got {family!r}.")
  schema = SCHEMAS[family]
  errors = []
  for path, value in _leaves(tree):
    kind = kind_of(schema, path)
    if kind is None and isinstance(value, Mapping) and any(
        kind_of({k.rsplit(".", 1)[0]: v}, path) for k, v in schema.items() if "." in k):
      continue  # an empty group of known fields (e.g. no explainer options)
    if kind is None:
      near = [k for k in schema if k.rsplit(".", 1)[0] == path.rsplit(".", 1)[0]]
      errors.append(f"config field `{path}` is not a field of a {family} config"
                    + (f" (fields there: {', '.join(sorted(near))})" if near else ""))
    elif not kind.ok(value):
      errors.append(f"config field `{path}` must be {kind.what}; got {value!r}")
  if errors:
    raise ValueError("Invalid config (nothing was run): " + "; ".join(errors) + ".")
  return family

