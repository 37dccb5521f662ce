"""Driver configs are validated before any work: a bad value is a ValueError naming the field."""

import os
import subprocess
import sys

import pytest

from experiments.common.config_check import RULES, validate_config
from experiments.demo import main as demo_main
from experiments.demo import sweep as demo_sweep
from experiments.demo.configs import default as demo_default
from experiments.demo.configs import sweep as sweep_config
from experiments.study.configs import smoke as study_smoke
from experiments.study.study import run_study

DRIVERS = {
    "demo": (demo_default.get_config, demo_main.run),
    "demo_sweep": (lambda: sweep_config.get_config("gradcam"), demo_sweep.run),
    "study": (lambda: study_smoke.get_config("gradcam"), run_study),
}

# (driver, field, bad value, expected phrase): the cases and siblings.
CASES = [
    ("demo", "finetune.lr", -0.1, "> 0"),
    ("demo", "pretrain.steps", 0, "integer >= 1"),
    ("demo", "finetune.fraction", 1.5, r"in \(0, 1\]"),
    ("demo", "finetune.temperature", -1.0, "> 0"),
    ("demo", "per_method.idexpo_lime.lam", -0.01, ">= 0"),
    ("demo_sweep", "finetune.steps", -3, "integer >= 1"),
    ("study", "finetune.temperature", 0.0, "> 0"),
    ("study", "pretrain.batch_size", 0, "integer >= 1"),
]


def _set(cfg, path, value):
  *parents, leaf = path.split(".")
  node = cfg
  for p in parents:
    node = node[p]
  assert leaf in node, f"{path} is not a field of this config"
  node[leaf] = value


@pytest.mark.parametrize("driver,field,value,phrase", CASES)
def test_bad_config_fails_before_any_work_naming_the_field(driver, field, value, phrase,
                                                           tmp_path):
  get_config, run = DRIVERS[driver]
  cfg = get_config()
  validate_config(cfg)  # the shipped config is valid
  with cfg.unlocked():
    for out in ("out_dir", "output_dir"):
      if out in cfg:
        cfg[out] = str(tmp_path / "out")
    _set(cfg, field, value)
  with pytest.raises(ValueError, match=rf"`{field}` must be .*{phrase}"):
    run(cfg)
  assert not (tmp_path / "out").exists()  # nothing was written


def test_every_error_is_reported_and_none_is_not_checked():
  cfg = {"lr": -1.0, "opt": {"optimizer": "rmsprop", "momentum": 1.0}, "seed": True,
         "n_samples": None, "unrelated": -5}
  with pytest.raises(ValueError) as e:
    validate_config(cfg)
  msg = str(e.value)
  for field in ("`lr`", "`opt.optimizer`", "`opt.momentum`", "`seed`"):
    assert field in msg
  assert "n_samples" not in msg and "unrelated" not in msg
  assert set(RULES) >= {"lr", "steps", "fraction", "temperature", "batch_size"}


# Drivers whose `main` reads the `--config` flag (each defines it; one per process): run as
# commands, as a user would, with a bad value on the command line.
@pytest.mark.parametrize("module,config,override,field", [
    ("experiments.expo.main", "experiments/expo/configs/smoke.py", "train.lr=-0.001", "train.lr"),
    ("experiments.rrr.main", "experiments/rrr/configs/smoke.py", "cutoff=1.5", "cutoff"),
    ("experiments.tabular.main", "experiments/tabular/configs/default.py", "finetune.steps=0",
     "finetune.steps"),
    ("experiments.expo_uci.main", "experiments/expo_uci/configs/smoke.py", "eval.sigma=-0.1",
     "eval.sigma"),
])
def test_flag_driven_drivers_refuse_a_bad_config(module, config, override, field, tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-m", module, f"--config={config}",
                        f"--config.{override}", f"--config.out_dir={tmp_path / 'out'}"],
                       cwd=root, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode != 0
  assert f"config field `{field}` must be" in out.stderr, out.stderr[-2000:]
  assert not (tmp_path / "out").exists()
