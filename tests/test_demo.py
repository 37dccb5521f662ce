"""Smoke tests of the demo driver and its validation sweep (experiments/demo), tiny, in-process."""

import json
import os

import numpy as np
import pytest

from experiments.demo import main as demo
from experiments.demo import sweep
from experiments.demo.configs.default import get_config
from tolerances import F32

ROWS = {"pretrained": "gradcam", "ce": "gradcam", "idexpo_gradcam": "gradcam",
        "pretrained_lime": "lime", "ce_lime": "lime", "idexpo_lime": "lime",
        "pretrained_kernelshap": "kernel_shap", "ce_kernelshap": "kernel_shap",
        "idexpo_kernelshap": "kernel_shap"}


def _tiny(cfg, out_dir):
  cfg.out_dir = str(out_dir)
  cfg.model.width = 4
  cfg.pretrain.steps = 3
  cfg.pretrain.optimizer = "sgd"  # optax.adam trips the tests' strict dtype promotion
  cfg.pretrain.lr = 0.1
  cfg.finetune.steps = 2
  cfg.finetune.batch_size = 8
  cfg.finetune.n_steps = 4
  # 2×2 cells of 8 px: 4 units; KernelSHAP exact (all 2^4 − 2 = 14 coalitions).
  cfg.explainers.lime.update(dict(cell=8, train_samples=8, eval_samples=16))
  cfg.explainers.kernel_shap.update(dict(cell=8, train_samples=14, eval_samples=14))
  cfg.eval.max_examples = 16
  cfg.eval.batch_size = 16
  cfg.plots.n_heatmaps = 2
  return cfg


def test_demo_runs_every_explainer_end_to_end_and_writes_outputs(tmp_path):
  cfg = _tiny(get_config(), tmp_path)
  metrics = demo.run(cfg)

  with open(tmp_path / "metrics.json") as f:
    written = json.load(f)
  assert written["config"]["finetune"]["steps"] == 2
  for name, explainer in ROWS.items():
    row = written[name]
    assert row["explainer"] == explainer
    for field in ("accuracy", "ins", "del", "ins_trapezoid", "del_trapezoid"):
      assert 0.0 <= row[field] <= 1.0, (name, field, row[field])
  for name in ("ce", "idexpo_gradcam", "idexpo_lime", "idexpo_kernelshap"):
    assert written[name]["train_final"]["step"] == 2
    assert ("penalty" in written[name]["train_final"]) == (name != "ce")
  assert written["idexpo_lime"]["lam"] == cfg.per_method.idexpo_lime.lam
  # The CE model is one model: the same accuracy under every explainer, other explanations.
  assert written["ce"]["accuracy"] == written["ce_lime"]["accuracy"]
  assert written["ce_lime"]["ins"] != written["ce"]["ins"]
  assert set(written["timing"]["cpu_s"]) >= {"pretrain", "finetune_idexpo_lime", "total"}
  # Per-example scores average to the table's means.
  with open(tmp_path / "per_example.json") as f:
    per = json.load(f)
  assert set(per) == set(ROWS)
  for name in ROWS:
    assert len(per[name]["ins"]) == 16
    np.testing.assert_allclose(np.mean(per[name]["del"]), metrics[name]["del"], **F32)
    np.testing.assert_allclose(np.mean(per[name]["correct"]), metrics[name]["accuracy"],
                               **F32)
  for png in ("heatmaps.png", "insertion.png", "deletion.png", "insertion_lime.png",
              "deletion_lime.png", "insertion_kernelshap.png", "deletion_kernelshap.png"):
    assert os.path.getsize(tmp_path / png) > 0


def test_rows_and_per_method_options_are_checked():
  assert demo.plan_rows(["ce", "idexpo_lime"], ["gradcam", "lime"]) == [
      ("pretrained", "pretrained", "gradcam"), ("ce", "ce", "gradcam"),
      ("pretrained_lime", "pretrained", "lime"), ("ce_lime", "ce", "lime"),
      ("idexpo_lime", "idexpo_lime", "lime")]
  with pytest.raises(ValueError, match="eval.explainers"):
    demo.plan_rows(["ce", "idexpo_kernelshap"], ["gradcam", "lime"])
  cfg = get_config()
  assert demo.finetune_config(cfg, "idexpo_lime").lam == cfg.per_method.idexpo_lime.lam
  assert demo.finetune_config(cfg, "ce").lam == 0.0
  cfg.per_method.idexpo_lime.steps = 10
  with pytest.raises(ValueError, match="steps"):
    demo.finetune_config(cfg, "idexpo_lime")


def test_sweep_variants_override_the_right_options():
  name, over = sweep.parse_variant("idexpo_gradcam:steps=100,lam=0.03,deletion=direct,"
                                   "second_order=False")
  assert (name, over) == ("idexpo_gradcam", {"steps": 100, "lam": 0.03, "deletion": "direct",
                                             "second_order": False})
  cfg = sweep.variant_config(get_config(), name, over)
  assert cfg.finetune.steps == 100  # shared by every method: changed in `finetune`
  assert demo.finetune_config(cfg, name).lam == 0.03
  assert demo.finetune_config(cfg, name).deletion == "direct"
  assert cfg.explainers.gradcam.second_order is False
  with pytest.raises(ValueError, match="nope"):
    sweep.variant_config(get_config(), "ce", {"nope": 1})
  rows = {"ce": {"method": "ce", "steps": 200, "accuracy": 0.95, "ins": 0.3, "del": 0.5},
          "a": {"method": "idexpo_lime", "steps": 200, "accuracy": 0.90, "ins": 0.9, "del": 0.1},
          "b": {"method": "idexpo_lime", "steps": 200, "accuracy": 0.94, "ins": 0.4, "del": 0.4}}
  assert sweep.select(rows, eta=2.0, accuracy_drop=0.02) == {"idexpo_lime": "b"}
  assert rows["a"]["score"] == float("-inf")  # below the floor 0.93


def test_sweep_runs_on_validation(tmp_path):
  from experiments.demo.configs.sweep import get_config as sweep_config
  cfg = _tiny(sweep_config("smoke"), tmp_path)
  cfg.progress = False
  out = sweep.run(cfg)
  assert set(out["variants"]) == {"pretrained", "ce_lime", "idexpo_lime:lam=0.1"}
  row = out["variants"]["idexpo_lime:lam=0.1"]
  assert row["floor"] == pytest.approx(out["variants"]["ce_lime"]["accuracy"] - 0.02)
  assert out["chosen"] == ({"idexpo_lime": "idexpo_lime:lam=0.1"}
                           if row["accuracy"] >= row["floor"] else {})
  assert out["split"] == "val" and out["n_examples"] == 16
  assert os.path.getsize(tmp_path / "sweep_smoke.json") > 0
