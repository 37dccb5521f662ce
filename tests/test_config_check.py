"""Driver configs are validated before any work: a bad value is a ValueError naming the field."""

import copy
import glob
import importlib
import math
import os
import re
import subprocess
import sys

import pytest

from experiments.common.config_check import SCHEMAS, validate_config
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


def test_every_error_is_reported_at_once_and_unknown_fields_are_refused():
  cfg = demo_default.get_config().to_dict()
  cfg["finetune"].update({"lr": -1.0, "optimizer": "rmsprop", "momentum": 1.0, "lamda": 0.1})
  cfg["seed"] = True
  cfg["eval"]["max_examples"] = None  # not optional here: None is an error too
  with pytest.raises(ValueError) as e:
    validate_config(cfg)
  msg = str(e.value)
  for field in ("`finetune.lr`", "`finetune.optimizer`", "`finetune.momentum`", "`seed`",
                "`eval.max_examples`", "`finetune.lamda` is not a field of a demo config"):
    assert field in msg, field
  assert "`finetune.steps`" not in msg  # valid fields are not reported
  with pytest.raises(ValueError, match="match no config family"):
    validate_config({"unrelated": -5})
  with pytest.raises(ValueError, match="`family` must be one of"):
    validate_config(demo_default.get_config(), family="bogus")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Arguments of the configs that take one (`--config=FILE:ARG`); the others take none.
CONFIG_ARGS = {
    "demo/configs/sweep.py": ("gradcam", "lime", "kernelshap", "smoke"),
    "image/configs/cifar10.py": ("gradcam", "lime", "kernel_shap"),
    "image/configs/stl10.py": ("gradcam", "lime", "kernel_shap"),
    "image/configs/smoke.py": ("cifar10,gradcam", "cifar10,lime", "stl10,kernel_shap"),
    "study/configs/base.py": ("gradcam", "lime", "kernel_shap"),
    "study/configs/digits.py": ("gradcam", "lime", "kernel_shap"),
    "study/configs/mnist.py": ("gradcam", "lime", "kernel_shap"),
    "study/configs/smoke.py": ("gradcam", "lime", "kernel_shap", "wine,lime",
                               "breast_cancer,kernel_shap"),
    "study/configs/tabular.py": ("breast_cancer,lime", "wine,kernel_shap", "iris,lime"),
}
FAMILY = {"demo/configs/default.py": "demo", "demo/configs/sweep.py": "demo_sweep",
          "rrr/configs/mnist.py": "rrr_mnist", "rrr/configs/mnist_unit.py": "rrr_mnist"}


def _config_files():
  files = sorted(os.path.relpath(f, os.path.join(ROOT, "experiments")) for f in glob.glob(
      os.path.join(ROOT, "experiments", "*", "configs", "*.py")))
  return [f for f in files if not f.endswith("__init__.py")]


def _load(rel, arg):
  module = importlib.import_module("experiments." + rel[:-3].replace(os.sep, "."))
  get = getattr(module, "get_config", None) or module.base_config
  return get() if arg is None else get(arg)


def _family(rel):
  driver = rel.split(os.sep)[0]
  return FAMILY.get(rel, {"image": "study"}.get(driver, driver))


ALL_CONFIGS = [(rel, arg) for rel in _config_files() for arg in CONFIG_ARGS.get(rel, (None,))]


def test_the_config_list_covers_every_config_file():
  assert len(_config_files()) == 20 and set(CONFIG_ARGS) <= set(_config_files())
  assert {_family(rel) for rel in _config_files()} == set(SCHEMAS)


@pytest.mark.parametrize("rel,arg", ALL_CONFIGS)
def test_every_shipped_config_validates_as_its_family(rel, arg):
  assert validate_config(_load(rel, arg)) == _family(rel)


def _concrete(tree, pattern):
  """`pattern` with each `*` replaced by a key the config has there (else "any")."""
  parts, node = [], tree
  for p in pattern.split("."):
    if p == "*":
      p = next(iter(node), "any") if isinstance(node, dict) else "any"
    parts.append(p)
    node = node.get(p, {}) if isinstance(node, dict) else {}
  return ".".join(parts)


def _perturbations():
  """(config, arg, field, bad value) for every field of every family's schema and every value
  its kind rejects, on a shipped config of the family (the field added where it is absent)."""
  first = {}
  for rel, arg in ALL_CONFIGS:
    first.setdefault(_family(rel), (rel, arg))
  out = []
  for family, schema in SCHEMAS.items():
    rel, arg = first[family]
    tree = _load(rel, arg).to_dict()
    for pattern, kind in schema.items():
      field = _concrete(tree, pattern)
      out += [pytest.param(rel, arg, field, bad, id=f"{family}:{field}={bad!r}")
              for bad in kind.bad]
  return out


PERTURBATIONS = _perturbations()


def test_every_kind_lists_values_it_rejects():
  assert all(kind.bad for schema in SCHEMAS.values() for kind in schema.values())
  assert len(PERTURBATIONS) > 3 * sum(len(schema) for schema in SCHEMAS.values())


def _put(tree, path, value):
  *parents, leaf = path.split(".")
  for p in parents:
    if not isinstance(tree.get(p), dict):
      tree[p] = {}
    tree = tree[p]
  tree[leaf] = value


@pytest.mark.parametrize("rel,arg,field,bad", PERTURBATIONS)
def test_an_invalid_value_of_any_field_raises_naming_it(rel, arg, field, bad):
  tree = copy.deepcopy(_load(rel, arg).to_dict())
  _put(tree, field, bad)
  shown = "nan" if isinstance(bad, float) and math.isnan(bad) else repr(bad)
  with pytest.raises(ValueError, match=rf"config field `{field}` must be .*; got "
                     rf"{re.escape(shown)}\."):
    validate_config(tree, family=_family(rel))


@pytest.mark.parametrize("rel,arg", ALL_CONFIGS[::3])
def test_an_unknown_field_anywhere_raises_naming_it(rel, arg):
  tree = _load(rel, arg).to_dict()
  group = next(k for k, v in tree.items() if isinstance(v, dict) and v)
  for path in ("bogus_field", f"{group}.bogus_field"):
    t = copy.deepcopy(tree)
    _put(t, path, 1)
    with pytest.raises(ValueError, match=rf"config field `{re.escape(path)}` is not a field"):
      validate_config(t, family=_family(rel))


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
