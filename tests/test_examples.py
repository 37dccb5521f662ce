"""The runnable examples (NNX, Linen, Equinox): explain every class, score, fine-tune."""

import pathlib
import runpy

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", ["nnx_lime", "linen_lime", "equinox_lime"])
def test_example_runs(name, capsys):
  if name == "equinox_lime":
    pytest.importorskip("equinox")
  main = runpy.run_path(str(EXAMPLES / f"{name}.py"))["main"]
  phi, scores, metrics = main(steps=1)
  assert phi.shape == (8, 10, 16)  # 8 examples, every class, 16 cells
  assert np.isfinite(np.asarray(phi)).all()
  for s in (scores.insertion, scores.deletion):
    assert s.shape == (8,) and ((np.asarray(s) >= 0) & (np.asarray(s) <= 1)).all()
  assert np.isfinite(float(metrics["loss"])) and float(metrics["cins"]) > 0
  assert "ID-ExpO steps" in capsys.readouterr().out
