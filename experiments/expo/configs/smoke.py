"""A seconds-long smoke run of the ExpO experiment (tiny sizes; numbers are meaningless)."""

from experiments.expo.configs import default


def get_config():
  c = default.get_config()
  c.datasets = ("diabetes",)
  c.seeds = (0,)
  c.train.max_steps = 100
  c.reg.c_grid = (0.1, 0.01)
  c.eval.lime_samples = 100
  c.select.max_points = 20
  c.out_dir = "/tmp/expo_smoke"
  return c
