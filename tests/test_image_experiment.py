"""Tests for experiments/image: the paper's settings and the smoke config end to end (mock data)."""

import json

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from experiments.image.configs import cifar10, smoke, stl10  # noqa: E402


@pytest.mark.parametrize("explainer", ["gradcam", "lime", "kernel_shap"])
def test_configs_carry_the_reference_settings(explainer):
  # REFERENCES.md (ID-ExpO): SGD 1e-4, momentum 0.9, Nesterov, wd 5e-4, batch 128, λ = 0.01,
  # λ₂ = 1e-4, 64 soft steps to 50 %, τ = 1, 64 px per hard point to 50 %, η = 2, 8×8×128 CAM.
  for c, side in ((cifar10.get_config(explainer), 32), (stl10.get_config(explainer), 96)):
    f = c.finetune
    assert (f.optimizer, f.lr, f.momentum, f.nesterov, f.weight_decay, f.batch_size) == (
        "sgd", 1e-4, 0.9, True, 5e-4, 128)
    assert c.weights.idexpo == (0.01,) and f.lam2 == 1e-4
    assert (f.n_steps, f.fraction, f.temperature, f.deletion) == (64, 0.5, 1.0, "ratio")
    assert (c.eval.n_steps, c.eval.fraction, c.selection.main_eta) == (16, 0.5, 2.0)
    assert side * side // c.eval.n_steps == 64 * (side // 32) ** 2  # 64 px per point on 32×32
    assert (c.model.name, c.model.width, c.model.stem_stride) == ("resnet18", 64, 2)
    if explainer != "gradcam":
      assert (side // c.explainer.cell) ** 2 == 64  # 64 grid segments


def test_smoke_config_runs_end_to_end_on_mock_cifar10(tmp_path):
  from experiments.study.study import run_study
  cfg = smoke.get_config("cifar10,gradcam")
  with tfds.testing.mock_data(num_examples=96, policy=tfds.testing.MockPolicy.USE_CODE):
    results, artefacts = run_study(cfg, progress=False)
  assert results["dataset"] == "cifar10" and results["units"] == 32 * 32
  assert results["n_val"] == 16 and results["n_test"] == 16
  # Grad-CAM of the stride-2-stem ResNet-18, upsampled to the 32×32 input.
  assert artefacts["figure"]["pretrained"]["phi"].shape == (2, 32, 32)
  for method in ("ce", "idexpo"):
    test = results["selection"]["2.0"][method]["test"]
    assert 0.0 <= test["accuracy"]["mean"] <= 1.0
    for score in ("ins", "del", "sensitivity_n"):
      assert np.isfinite(test[score]["mean"]), (method, score)
  json.dumps(results)  # the driver writes it as JSON
