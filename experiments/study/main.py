"""The ID-ExpO study driver: one data set, one explainer, every method, model selection on val.

  python -m experiments.study.main --config=experiments/study/configs/digits.py:gradcam

Writes `results/study/<dataset>_<explainer>.json` (every number of the tables; `<dataset>` is
`cfg.output_name` when set), the arrays behind Figs. 4 and 5 (`<dataset>_<explainer>_figures.npz`)
and the figures
`<dataset>_<explainer>_fig{2,3,4,5}*.png` (see `experiments/study/study.py` for the protocol).
`--replot` redraws the figures from the JSON and the npz without training (Figs. 2 and 3 only
when the npz is missing).
"""

import json
import os

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from experiments.common.compilation_cache import enable_compilation_cache
from experiments.study import figures
from experiments.study.study import run_study

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file.",
                                          lock_config=True)
_REPLOT = flags.DEFINE_bool("replot", False, "Only redraw the figures from the saved results.")
flags.mark_flags_as_required(["config"])


def replot(stem: str) -> list[str]:
  """Redraws the figures of `<stem>.json` (+ `<stem>_figures.npz` if present)."""
  with open(f"{stem}.json") as f:
    results = json.load(f)
  results["main_eta"] = float(results["main_eta"])
  artefacts = None
  if os.path.exists(f"{stem}_figures.npz"):
    with np.load(f"{stem}_figures.npz") as z:
      artefacts = figures.load_artefacts(results, {k: z[k] for k in z.files})
  else:
    print(f"{stem}_figures.npz not found: only Figs. 2 and 3 are redrawn.")
  return figures.write_all(results, artefacts, stem)


def main(argv):
  del argv
  enable_compilation_cache()  # a second run loads its compiled steps from disk
  cfg = _CONFIG.value
  name = cfg.get("output_name", None) or cfg.data.name  # e.g. "mnist" for the mnist5k data
  stem = os.path.join(cfg.output_dir, f"{name}_{cfg.explainer.name}")
  if _REPLOT.value:
    print("wrote", *replot(stem), sep="\n  ")
    return
  results, artefacts = run_study(cfg)
  os.makedirs(cfg.output_dir, exist_ok=True)
  np.savez_compressed(f"{stem}_figures.npz", **figures.figure_arrays(results, artefacts))
  for with_figures in (False, True):  # the numbers are saved even if a figure fails
    if with_figures:
      results["figures"] = figures.write_all(results, artefacts, stem)
    with open(f"{stem}.json", "w") as f:
      json.dump(results, f, indent=1)
  print(figures.markdown_table(results))
  print(f"wrote {stem}.json in {results['seconds']:.0f} s")


if __name__ == "__main__":
  app.run(main)
