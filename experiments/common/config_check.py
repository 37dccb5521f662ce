"""One validator for every driver's config: bad values fail before any work, naming the field.

`validate_config(cfg)` walks the whole `ConfigDict` and checks every entry whose name has a rule
below, wherever it sits (`pretrain.lr`, `finetune.lr`, `per_method.idexpo_lime.lam`, ...).
`None` means "unset / default" and is not checked; names without a rule are left to the code that
reads them. Every violation is reported at once, as `ValueError("config field `finetune.lr` must
be > 0; got -0.1. ...")`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

_Rule = tuple[str, Callable[[Any], bool]]


def _number(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


_POSITIVE: _Rule = ("a finite number > 0", lambda v: _number(v) and v > 0)
_NONNEGATIVE: _Rule = ("a finite number >= 0", lambda v: _number(v) and v >= 0)
_UNIT_INTERVAL: _Rule = ("a number in (0, 1]", lambda v: _number(v) and 0 < v <= 1)
_MOMENTUM: _Rule = ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1)
_COUNT: _Rule = ("an integer >= 1", lambda v: _int(v) and v >= 1)
_NONNEG_INT: _Rule = ("an integer >= 0", lambda v: _int(v) and v >= 0)
_BOOL: _Rule = ("True or False", lambda v: isinstance(v, bool))


def _each(rule: _Rule) -> _Rule:
  what, ok = rule
  return (f"a non-empty sequence of {what.removeprefix('a ').removeprefix('an ')}s",
          lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and all(ok(x) for x in v))


RULES: dict[str, _Rule] = {
    # Optimisation.
    "lr": _POSITIVE, "momentum": _MOMENTUM, "weight_decay": _NONNEGATIVE,
    "optimizer": ("'sgd' or 'adam'", lambda v: v in ("sgd", "adam")),
    "steps": _COUNT, "max_steps": _COUNT, "epochs": _COUNT, "batch_size": _COUNT,
    "reg_batch_size": _COUNT, "patience": _COUNT,
    "checkpoint_every": _NONNEG_INT, "eval_every": _NONNEG_INT, "penalty_batch": _NONNEG_INT,
    "ce_from_penalty": _BOOL,
    "seed": _NONNEG_INT, "data_seed": _NONNEG_INT, "seeds": _each(_NONNEG_INT),
    # Loss weights and soft curves (SPEC §2).
    "lam": _NONNEGATIVE, "lam2": _NONNEGATIVE, "lam_both": _NONNEGATIVE,
    "lams": _each(_NONNEGATIVE), "lambdas": _each(_NONNEGATIVE),
    "temperature": _POSITIVE, "fraction": _UNIT_INTERVAL, "sens_fraction": _UNIT_INTERVAL,
    "cutoff": _UNIT_INTERVAL, "n_steps": _NONNEG_INT,
    # Explainers and ExpO neighbourhoods.
    "n_samples": _COUNT, "train_samples": _COUNT, "eval_samples": _COUNT, "lime_samples": _COUNT,
    "n_subsets": _COUNT, "cell": _COUNT, "ridge": _NONNEGATIVE, "lime_ridge": _NONNEGATIVE,
    "sigma": _POSITIVE, "expo_sigma": _POSITIVE, "fidelity_sigma": _POSITIVE,
    "lime_sigma": _POSITIVE, "expo_radius": _POSITIVE, "stability_radius": _POSITIVE,
    "eta": _POSITIVE, "main_eta": _POSITIVE, "etas": _each(_POSITIVE),
    # Data and evaluation sizes.
    "size": _COUNT, "width": _COUNT, "n_examples": _COUNT, "n_models": _COUNT,
    "timing_repeats": _COUNT, "max_examples": _NONNEG_INT, "n_heatmaps": _NONNEG_INT,
}


def _walk(tree, prefix: str = ""):
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if hasattr(value, "items"):
      yield from _walk(value, path + ".")
    else:
      yield path, key, value


def validate_config(cfg) -> None:
  """Checks every entry of `cfg` (a `ConfigDict` or dict) that has a rule in `RULES`.

  Raises:
    ValueError: naming each offending field, the expected range and the value.
  """
  tree = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
  errors = [f"config field `{path}` must be {RULES[key][0]}; got {value!r}"
            for path, key, value in _walk(tree)
            if key in RULES and value is not None and not RULES[key][1](value)]
  if errors:
    raise ValueError("Invalid config (nothing was run): " + "; ".join(errors) + ".")
