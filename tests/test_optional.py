"""A missing optional dependency is named with the extra that installs it (`_optional.require`)."""

import os
import sys
import tomllib

import numpy as np
import pytest

from idexpo_jax import plotting
from idexpo_jax.training import checkpoint
from idexpo_jax.data import sklearn_data, tfds_data

# (module made unimportable, the call that needs it, the distribution named in the message)
CASES = [
    ("orbax.checkpoint", lambda tmp: checkpoint.checkpoint_manager(str(tmp)), "orbax-checkpoint"),
    ("matplotlib", lambda tmp: plotting.plot_curves(np.linspace(0, 1, 3), {"a": np.ones(3)},
                                                    str(tmp / "c.png")), "matplotlib"),
    ("sklearn.datasets", lambda tmp: sklearn_data.load_digits_images(), "scikit-learn"),
    ("tensorflow_datasets", lambda tmp: tfds_data.open_source("cifar10", "train"),
     "tensorflow-datasets"),
]


@pytest.mark.parametrize("module,call,dist", CASES, ids=[c[0] for c in CASES])
def test_missing_optional_dependency_names_the_extra(module, call, dist, monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
  with pytest.raises(ImportError, match=rf"`{dist}`.*pip install 'idexpo_jax\[experiments\]'"):
    call(tmp_path)


def test_progress_bar_dependency_is_in_the_base_install():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  assert any(d.startswith("tqdm") for d in project["dependencies"])  # fit(progress=True)
