"""Helpers shared by the experiments: method registry, training, evaluation, reporting."""
