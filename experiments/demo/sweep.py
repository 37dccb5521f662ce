r"""The demo's validation sweep: fine-tuning variants (λ, steps, deletion, τ, ...) scored on val.

Every variant fine-tunes from the demo's CE-pretrained parameters (same data, seeds, keys and
batches as `make demo`) and is evaluated on the validation split only, with its method's
explainer (CE variants with every explainer of `eval.explainers`). A variant is a string
`"<method>[:key=value,...]"`; each key overrides the method's fine-tuning options
(`finetune` + `per_method`, e.g. `steps`, `lam`, `deletion`, `temperature`, `penalty_batch`) or
its explainer's options (e.g. `second_order`, `train_samples`). Selection (Yoshikawa & Iwata,
AISTATS 2024): per method, the largest `η·Acc + Ins + (1 − Del)` among the variants whose
validation accuracy is at least that of the CE variant with the same number of steps minus
`selection.accuracy_drop`.

  python -m experiments.demo.sweep --config=experiments/demo/configs/sweep.py:lime

Writes `<out_dir>/<sweep_file>` (every variant's validation summary, score and the choices).
"""

from __future__ import annotations

import ast
import os

from absl import app

from experiments.common.config_check import validate_config
from experiments.common import evaluation, methods, reporting
from experiments.common.compilation_cache import enable_compilation_cache
from experiments.demo import main as demo


def parse_variant(spec: str) -> tuple[str, dict]:
  """`"idexpo_lime:lam=0.1,steps=100"` -> `("idexpo_lime", {"lam": 0.1, "steps": 100})`."""
  name, _, rest = spec.partition(":")
  overrides = {}
  for item in filter(None, rest.split(",")):
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"variant {spec!r}: expected key=value, got {item!r}.")
    try:
      overrides[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      overrides[key.strip()] = value.strip()  # a bare string, e.g. deletion=direct
  methods.get_method(name)
  return name, overrides


def variant_config(cfg, name: str, overrides: dict):
  """A copy of `cfg` with `overrides` applied to the method's fine-tuning or explainer options."""
  out = cfg.copy_and_resolve_references()
  out.unlock()  # a variant may add an option to `per_method.<name>`
  explainer = methods.get_method(name).explainer
  for key, value in overrides.items():
    if explainer is not None and key in out.explainers[explainer]:
      out.explainers[explainer][key] = value
    elif key not in out.finetune:
      raise ValueError(f"variant of {name!r}: {key!r} is neither a fine-tuning option nor an "
                       f"option of explainer {explainer!r}.")
    elif explainer is None or key in demo.SHARED:
      out.finetune[key] = value
    else:
      out.per_method[name][key] = value
  return out


def run(cfg) -> dict:
  """Fine-tunes and validates every variant of `cfg.variants`; returns the written summary."""
  validate_config(cfg)
  timing = {}
  explainer_names = cfg.eval.explainers.split(",")
  variants = {spec: parse_variant(spec) for spec in cfg.variants}
  # CE variants are scored with the explainers of the sweep's ID-ExpO variants.
  used = [e for e in explainer_names
          if any(methods.get_method(n).explainer == e for n, _ in variants.values())]
  used = used or explainer_names[:1]
  data, keys, pretrained = demo.prepare(cfg, timing, progress=cfg.progress)
  val = evaluation.limit_split(data.val, cfg.eval.max_examples)
  _, eval_explainers = demo.build_explainers(cfg, data, explainer_names)
  evaluators = demo.make_evaluators(cfg, pretrained, eval_explainers)
  rows = {"pretrained": {"method": "pretrained", "steps": 0, "explainer": e,
                         **evaluators[e].evaluate(pretrained.params, val, keys["eval"]).summary}
          for e in explainer_names[:1]}
  for i, (spec, (name, overrides)) in enumerate(variants.items()):
    vcfg = variant_config(cfg, name, overrides)
    if vcfg.finetune.get("checkpoint_dir"):  # one directory per variant
      vcfg.finetune.checkpoint_dir = os.path.join(vcfg.finetune.checkpoint_dir, f"variant{i}")
    train_explainers, _ = demo.build_explainers(vcfg, data, explainer_names)
    vtiming = timing.setdefault("variants", {}).setdefault(spec, {})
    models, final = demo.finetune_all(vcfg, data, pretrained, [name], train_explainers,
                                      keys["finetune"], timing=vtiming, progress=cfg.progress)
    own = methods.get_method(name).explainer
    for e in ([own] if own else used):
      row = spec + demo.suffix(e, explainer_names) * (own is None)
      rows[row] = {"method": name, "steps": vcfg.finetune.steps, "explainer": e,
                   "overrides": overrides, "train_final": final[name],
                   **evaluators[e].evaluate(models[name].params, val, keys["eval"]).summary}
  chosen = select(rows, eta=cfg.selection.eta, accuracy_drop=cfg.selection.accuracy_drop)
  print(f"\nvalidation split ({len(val.y)} examples), score = {cfg.selection.eta}·Acc + Ins + "
        f"(1 − Del), floor = CE accuracy at the same steps − {cfg.selection.accuracy_drop}:\n"
        + reporting.format_table(rows, ("accuracy", "ins", "del", "score")))
  print("chosen:", chosen)
  out = {"variants": rows, "chosen": chosen, "timing": timing,
         "config": cfg.to_dict(), "split": "val", "n_examples": len(val.y)}
  reporting.write_json(os.path.join(cfg.out_dir, cfg.sweep_file), out)
  return out


def select(rows: dict, *, eta: float, accuracy_drop: float) -> dict:
  """Adds `score` and `floor` to every ID-ExpO row (in place); returns `{method: best row}`."""
  ce_acc = {r["steps"]: r["accuracy"] for r in rows.values() if r["method"] == "ce"}
  best = {}
  for row, r in rows.items():
    r["score"] = float("nan")
    if r["method"] in ("ce", "pretrained"):
      continue
    if r["steps"] not in ce_acc:
      raise ValueError(f"variant {row!r} has {r['steps']} steps but no CE variant has; add "
                       f"'ce:steps={r['steps']}'.")
    r["floor"] = ce_acc[r["steps"]] - accuracy_drop
    r["score"] = evaluation.selection_score(r, eta=eta, accuracy_floor=r["floor"])
    if r["score"] > best.get(r["method"], (None, float("-inf")))[1]:
      best[r["method"]] = (row, r["score"])
  return {m: row for m, (row, _) in best.items()}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  enable_compilation_cache()  # a second run loads its compiled steps from disk
  run(demo.CONFIG.value)  # the demo's `--config` flag


if __name__ == "__main__":
  app.run(main)
