"""A seconds-long smoke run of the UCI ExpO experiment (tiny sizes; numbers are meaningless)."""

from experiments.expo_uci.configs import default


def get_config():
  c = default.get_config()
  c.datasets = ("autompgs",)
  c.trials = 2
  c.model.hidden.autompgs = (16,)
  c.train.min_epochs = 1
  c.train.patience = 1
  c.train.max_epochs = 4
  c.train.chunk_epochs = 2
  c.reg.c_grid = (0.1, 0.01)
  c.select.val_points = 8
  c.eval.lime_samples = 40
  c.eval.maple_trees = 5
  c.out_dir = "/tmp/expo_uci_smoke"
  return c
