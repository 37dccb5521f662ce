"""A seconds-long smoke run of the RRR experiment (tiny sizes; numbers are meaningless)."""

from experiments.rrr.configs import default


def get_config():
  c = default.get_config()
  c.decoy.epochs = 3
  c.decoy.seeds = (0,)
  c.decoy.lambdas = (10.0, 1e3)
  c.toy.n_train = 512
  c.toy.n_val = 256
  c.toy.n_test = 256
  c.toy.n_probe = 128
  c.toy.epochs = 2
  c.toy.n_models = 2
  c.toy.lambdas = (10.0, 1e3)
  c.lime.n_examples = 8
  c.lime.n_samples = 64
  c.lime.timing_repeats = 2
  c.out_dir = "/tmp/rrr_smoke"
  c.progress = False
  return c
