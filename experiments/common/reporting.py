"""Tables and JSON output of the experiments."""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import numpy as np

COLUMNS = ("accuracy", "ins", "del", "ins_trapezoid", "del_trapezoid")


def format_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str] = COLUMNS) -> str:
  """A Markdown table with one row per method and one column per metric (4 decimals)."""
  head = "| method | " + " | ".join(columns) + " |"
  sep = "|---|" + "---:|" * len(columns)
  body = [f"| {name} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |"
          for name, row in rows.items()]
  return "\n".join([head, sep, *body])


def protocol(*, units: str, step_units: int, fraction: float, baseline: str,
             explainer: str | None = None) -> dict:
  """The evaluation protocol recorded beside the metrics (see `evaluation`)."""
  info = {"target": "predicted class at the clean input", "baseline": baseline, "units": units,
          "step_units": int(step_units),
          "ins_del": f"mean of the curve points 0 < k <= {fraction}·U (k = 0 excluded)",
          "ins_del_trapezoid": "trapezoid rule over the perturbed fraction [0, 1], both ends"}
  if explainer is not None:
    info["explainer"] = explainer
  return info


def _plain(obj):
  """Converts NumPy/JAX scalars and arrays (nested in dicts/lists) to JSON types."""
  if isinstance(obj, Mapping):
    return {str(k): _plain(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_plain(v) for v in obj]
  if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
    arr = np.asarray(obj)
    return arr.item() if arr.ndim == 0 else arr.tolist()
  return obj


def write_json(path: str, obj) -> None:
  """Writes `obj` as indented JSON, creating the directory."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    json.dump(_plain(obj), f, indent=2)
    f.write("\n")
