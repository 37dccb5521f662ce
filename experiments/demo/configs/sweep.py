"""Validation sweeps of `make demo` (experiments/demo/sweep.py): `--config=...sweep.py:<group>`.

Groups (the tables of docs/demo.md):

* `gradcam`: λ, deletion form, τ, second order and steps of the Grad-CAM row;
* `lime`, `kernelshap`: λ of the LIME / KernelSHAP rows (4×4-pixel cells, penalty on 8 examples
  of each batch, the demo's training-time sample budgets);
* `smoke`: two tiny variants (tests).

The base is the demo's own configuration (same data, pre-training, keys and batches), evaluated on
the validation split only.
"""

import ml_collections

from experiments.demo.configs import default

_LAMS = (0.003, 0.01, 0.03)

GROUPS = {
    "gradcam": (
        "ce:steps=100",
        "idexpo_gradcam:steps=100,lam=0.1", "idexpo_gradcam:steps=100,lam=1.0",
        "idexpo_gradcam:steps=100,lam=0.003", "idexpo_gradcam:steps=100,lam=0.01",
        "idexpo_gradcam:steps=100,lam=0.03,deletion=direct",
        "ce", "idexpo_gradcam:lam=0.01", "idexpo_gradcam:lam=0.03,deletion=direct",
        "idexpo_gradcam:lam=0.01,temperature=4.0",
        "idexpo_gradcam:lam=0.01,second_order=False"),
    "lime": ("ce", *(f"idexpo_lime:lam={lam}" for lam in _LAMS)),
    "kernelshap": ("ce", *(f"idexpo_kernelshap:lam={lam}" for lam in _LAMS)),
    "smoke": ("ce", "idexpo_lime:lam=0.1"),
}


def get_config(group: str = "lime") -> ml_collections.ConfigDict:
  if group not in GROUPS:
    raise ValueError(f"sweep group must be one of {sorted(GROUPS)}; got {group!r}.")
  c = default.get_config()
  c.variants = GROUPS[group]
  c.sweep_file = f"sweep_{group}.json"
  c.progress = True
  c.eval.max_examples = 0  # the whole validation split
  c.selection = ml_collections.ConfigDict(dict(eta=2.0, accuracy_drop=0.02))
  return c
