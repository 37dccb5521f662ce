"""The ID-ExpO study driver: one data set, one explainer, every method, model selection on val.

  python -m experiments.study.main --config=experiments/study/configs/digits.py:gradcam

Writes `results/study/<dataset>_<explainer>.json` (every number of the tables) and the figures
`<dataset>_<explainer>_fig{2,3,4,5}*.png` (see `experiments/study/study.py` for the protocol).
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from experiments.common.compilation_cache import enable_compilation_cache
from experiments.study import figures
from experiments.study.study import run_study

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file.",
                                          lock_config=True)
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  enable_compilation_cache()  # a second run loads its compiled steps from disk
  cfg = _CONFIG.value
  results, artefacts = run_study(cfg)
  os.makedirs(cfg.output_dir, exist_ok=True)
  stem = os.path.join(cfg.output_dir, f"{cfg.data.name}_{cfg.explainer.name}")
  for with_figures in (False, True):  # the numbers are saved even if a figure fails
    if with_figures:
      results["figures"] = figures.write_all(results, artefacts, stem)
    with open(f"{stem}.json", "w") as f:
      json.dump(results, f, indent=1)
  print(figures.markdown_table(results))
  print(f"wrote {stem}.json in {results['seconds']:.0f} s")


if __name__ == "__main__":
  app.run(main)
