"""Smoke test of the demo driver (experiments/demo) with a tiny configuration, in-process."""

import json
import os

import numpy as np

from experiments.demo import main as demo
from experiments.demo.configs.default import get_config


def test_demo_runs_end_to_end_and_writes_outputs(tmp_path):
  cfg = get_config()
  cfg.out_dir = str(tmp_path)
  cfg.model.width = 4
  cfg.pretrain.steps = 3
  cfg.pretrain.optimizer = "sgd"  # optax.adam trips the tests' strict dtype promotion
  cfg.pretrain.lr = 0.1
  cfg.finetune.steps = 2
  cfg.finetune.batch_size = 8
  cfg.eval.splits = "test"
  cfg.eval.max_examples = 16
  cfg.eval.batch_size = 16
  cfg.plots.n_heatmaps = 2
  metrics = demo.run(cfg)

  with open(tmp_path / "metrics.json") as f:
    written = json.load(f)
  assert written["config"]["finetune"]["steps"] == 2
  for name in ("ce", "idexpo_gradcam"):
    row = written[name]
    for field in ("accuracy", "ins", "del", "ins_trapezoid", "del_trapezoid"):
      assert 0.0 <= row[field] <= 1.0, (name, field, row[field])
    assert row["train_final"]["step"] == 2
  assert "penalty" in written["idexpo_gradcam"]["train_final"]
  assert "penalty" not in written["ce"]["train_final"]
  # Per-example scores average to the table's means.
  with open(tmp_path / "per_example.json") as f:
    per = json.load(f)
  for name in ("ce", "idexpo_gradcam"):
    assert len(per[name]["ins"]) == 16
    np.testing.assert_allclose(np.mean(per[name]["del"]), metrics[name]["del"], rtol=1e-6)
    np.testing.assert_allclose(np.mean(per[name]["correct"]), metrics[name]["accuracy"],
                               rtol=1e-6)
  for png in ("heatmaps.png", "insertion.png", "deletion.png"):
    assert os.path.getsize(tmp_path / png) > 0
