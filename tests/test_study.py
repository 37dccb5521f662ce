"""Tests of the study driver: the smoke config end to end, and the validation-only selection."""

import json
import math

import numpy as np
import pytest

from experiments.study import figures, study
from experiments.study.configs import smoke


def test_select_uses_validation_scores_and_floor():
  grid = {("ce", 0.0): {"val": {"accuracy": 0.90, "ins": 0.3, "del": 0.2}},
          ("idexpo", 0.1): {"val": {"accuracy": 0.80, "ins": 0.9, "del": 0.0}},  # below floor
          ("idexpo", 0.01): {"val": {"accuracy": 0.89, "ins": 0.5, "del": 0.1}},
          ("idexpo", 0.03): {"val": {"accuracy": 0.885, "ins": 0.52, "del": 0.1}},
          ("gradient", 1.0): {"val": {"accuracy": 0.5, "ins": 0.9, "del": 0.0}}}
  chosen = study.select(grid, methods=["ce", "idexpo", "gradient"], etas=[0.5, 20.0], floor=0.88)
  # η = 0.5: 0.5·0.885 + 0.52 + 0.9 = 1.8625 beats 0.5·0.89 + 0.5 + 0.9 = 1.845.
  assert chosen[0.5]["idexpo"]["weight"] == 0.03
  assert math.isclose(chosen[0.5]["idexpo"]["val_score"], 1.8625)
  # η = 20: accuracy dominates.
  assert chosen[20.0]["idexpo"]["weight"] == 0.01
  # No weight reaches the floor: the most accurate one, flagged.
  assert chosen[0.5]["gradient"] == {"weight": 1.0, "val_score": None, "below_floor": True}
  assert chosen[0.5]["ce"]["weight"] == 0.0


def test_quadrants_count_signs():
  d_ins = np.array([1.0, 1.0, -1.0, -1.0, 0.5])
  d_del = np.array([-1.0, 1.0, -1.0, 1.0, -0.5])
  q = study.quadrants(d_ins, d_del)
  assert q == {"both_better": 40.0, "ins_only": 20.0, "del_only": 20.0, "both_worse": 20.0}


def test_gradcam_on_tabular_raises():
  cfg = smoke.get_config("gradcam")
  cfg.data.name = "wine"
  with pytest.raises(ValueError, match="Grad-CAM"):
    study.run_study(cfg, progress=False)


@pytest.fixture(scope="module")
def smoke_run():
  """One tiny digits × LIME study with every method (compiled once for the whole module)."""
  cfg = smoke.get_config("lime")
  results, artefacts = study.run_study(cfg, progress=False)
  return cfg, results, artefacts


def test_smoke_study_end_to_end(smoke_run, tmp_path):
  cfg, results, artefacts = smoke_run
  # Every configuration and metric is reported, finite, for every seed.
  assert {g["method"] for g in results["grid"]} == set(study.METHOD_NAMES)
  for g in results["grid"]:
    for split in ("val", "test"):
      for metric in study.METRICS[:-1] if split == "val" else study.METRICS:
        assert len(g[split][metric]["per_seed"]) == len(cfg.seeds)
        assert np.isfinite(g[split][metric]["mean"])
  # Selection is reproducible from the validation numbers alone.
  grid = {(g["method"], g["weight"]): {"val": {k: v["mean"] for k, v in g["val"].items()}}
          for g in results["grid"]}
  again = study.select(grid, methods=list(cfg.methods), etas=[float(e) for e in cfg.selection.etas],
                       floor=results["accuracy_floor"])
  for eta, sel in again.items():
    for m, c in sel.items():
      assert results["selection"][str(eta)][m]["weight"] == c["weight"]
  assert results["units"] == 4  # 4×4 cells of the 8×8 digits
  assert results["sensitivity_n"]["n"] == max(1, round(0.3 * results["units"]))
  assert results["config"]["finetune"]["explainer"]["n_samples"] == 24
  # Figures and JSON.
  paths = figures.write_all(results, artefacts, str(tmp_path / "smoke"))
  assert len(paths) == 7 and all((tmp_path / p.split("/")[-1]).stat().st_size > 0 for p in paths)
  json.dumps(results)
  assert "| ID-ExpO |" in figures.markdown_table(results)


def test_figure5_draws_pixel_maps_and_tabular_rows(smoke_run, tmp_path):
  """The heatmap branches the digits × LIME run does not reach: Grad-CAM maps, tabular rows."""
  _, results, artefacts = smoke_run
  fig = artefacts["figure"]
  n = len(fig["x"])
  pixel = {k: (v | {"phi": np.random.default_rng(0).normal(size=(n, 8, 8))}
               if isinstance(v, dict) else v) for k, v in fig.items()}
  tabular = {k: (v | {"phi": np.arange(n * 13.0).reshape(n, 13)} if isinstance(v, dict) else v)
             for k, v in fig.items()} | {"x": np.linspace(-2.0, 2.0, n * 13).reshape(n, 13)}
  for name, data, cell in (("pixel", pixel, None), ("tabular", tabular, None)):
    res = results | {"config": results["config"] | {"explainer": {"cell": cell}}}
    paths = figures.plot_examples(res, artefacts | {"figure": data}, str(tmp_path / name))
    assert all((tmp_path / p.split("/")[-1]).stat().st_size > 0 for p in paths)


def test_display_scales_each_example_to_unit_range():
  x = np.array([[[1.0, 3.0, 2.0]], [[5.0, 5.0, 5.0]]])
  np.testing.assert_allclose(figures._display(x), [[[0.0, 1.0, 0.5]], [[0.0, 0.0, 0.0]]])


def test_feature_names_of_sklearn_sets():
  assert figures.feature_names("wine", 13)[0] == "alcohol"
  assert figures.feature_names("digits8", 3) == ["x0", "x1", "x2"]


def test_replot_from_saved_arrays_round_trips(smoke_run, tmp_path):
  """`figure_arrays` -> npz -> `load_artefacts` gives back what Figs. 4 and 5 draw."""
  _, results, artefacts = smoke_run
  np.savez_compressed(tmp_path / "a.npz", **figures.figure_arrays(results, artefacts))
  reloaded = json.loads(json.dumps(results))  # as `--replot` reads it
  reloaded["main_eta"] = float(reloaded["main_eta"])
  with np.load(tmp_path / "a.npz") as z:
    back = figures.load_artefacts(reloaded, {k: z[k] for k in z.files})
  eta = results["main_eta"]
  assert list(back["chosen"][eta]) == list(results["per_example_change"])
  for m, c in artefacts["chosen"][eta].items():
    key = (m, c["weight"])
    np.testing.assert_array_equal(back["figure"][key]["phi"], artefacts["figure"][key]["phi"])
    np.testing.assert_array_equal(np.stack(back["per_seed"][key]["test_del"]),
                                  np.stack(artefacts["per_seed"][key]["test_del"]))
  np.testing.assert_array_equal(back["figure"]["pretrained"]["ins_all"],
                                artefacts["figure"]["pretrained"]["ins_all"])
  paths = figures.write_all(reloaded, back, str(tmp_path / "re"))
  assert len(paths) == 7 and all((tmp_path / p.split("/")[-1]).stat().st_size > 0 for p in paths)
  assert len(figures.write_all(reloaded, None, str(tmp_path / "json_only"))) == 3


def test_expo_penalties_on_the_reference_conventions():
  """`logits_mean`: the logits' squared errors averaged over classes; σ, radius × input scale."""
  import jax
  import ml_collections
  from idexpo_jax.regularisers.expo import expo_fidelity, expo_stability
  w = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
  f = lambda xb: jax.numpy.tanh(xb.reshape(xb.shape[0], -1)) @ w
  x = np.random.default_rng(1).normal(size=(4, 3, 4)).astype(np.float32)
  key = jax.random.key(0)
  cfg = ml_collections.ConfigDict({"expo_sigma": 0.5, "expo_radius": 0.05, "expo_n_neighbors": 30,
                                   "expo_output": "logits_mean", "expo_input_scale": 2.0})
  xf = x.reshape(4, -1)
  got = study.make_penalty("expo_stability", cfg)(f, x, None, key)[0]
  want = expo_stability(f, xf, key, radius=0.1, output="raw")[0] / 3
  np.testing.assert_allclose(got, want, rtol=1e-5)
  got = study.make_penalty("expo_fidelity", cfg)(f, x, None, key)[0]
  want = expo_fidelity(f, xf, key, n_neighbors=30, sigma=1.0, output="raw")[0] / 3
  np.testing.assert_allclose(got, want, rtol=1e-5)
  cfg.expo_output, cfg.expo_input_scale = "prob", 1.0  # the convention before 2026-11-30
  got = study.make_penalty("expo_stability", cfg)(f, x, None, key)[0]
  np.testing.assert_allclose(got, expo_stability(f, xf, key, radius=0.05, output="probs")[0],
                             rtol=1e-5)
  cfg.expo_output = "logits"
  with pytest.raises(ValueError, match="expo_output"):
    study.make_penalty("expo_stability", cfg)


def test_ce_from_penalty_is_the_same_step_with_one_model_pass_fewer():
  """`ce_from_penalty`: CE and accuracy from the penalty's clean row give the same step (loss,
  metrics, updated parameters) as a CE of its own, and the step holds exactly the convolutions of
  one forward and backward pass of the model fewer."""
  import jax
  import jax.numpy as jnp
  import ml_collections
  import optax
  from flax import nnx

  from experiments.common import methods, training
  from idexpo_jax.models import SmallCNN, functional, predictor_fn
  from idexpo_jax.training.train import init_train_state
  from tolerances import F32, f32
  graphdef, params, rest = functional(SmallCNN(1, 3, width=2, rngs=nnx.Rngs(0)))
  x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
  y = jnp.asarray([0, 1, 2, 1], jnp.int32)
  batch = training.Batch(x, y, jnp.asarray(0.5), rest)
  model = training.Model(graphdef, params, rest)
  explainer = methods.make_explainer("gradcam", {}, baseline=0.0, image_shape=(8, 8, 1))
  runs, convs = [], []
  for shared in (False, True):
    cfg = ml_collections.ConfigDict(dict(optimizer="sgd", lr=0.1, n_steps=8, fraction=0.5,
                                         temperature=1.0, lam2=1e-3, ce_from_penalty=shared))
    step = study.make_finetune_step("idexpo", model, cfg, explainer=explainer)
    state = init_train_state(jax.tree.map(jnp.copy, params), training.make_optimizer(cfg))
    convs.append(str(step.trace(state, batch, jax.random.key(1)).jaxpr).count("conv_general"))
    runs.append(step(state, batch, jax.random.key(1)))
  (old, old_m), (new, new_m) = runs
  for name in ("loss", "ce", "acc", "penalty", "grad_norm"):
    np.testing.assert_allclose(new_m[name], old_m[name], **F32)
  np.testing.assert_allclose(new_m["ce"], new_m["clean_ce"], **F32)
  for a, b in zip(jax.tree.leaves(old.params), jax.tree.leaves(new.params)):
    np.testing.assert_allclose(b, a, **f32(scale=float(np.abs(a).max())))
  ce = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      predictor_fn(graphdef, p, rest)(x), y).mean()
  one_pass = str(jax.make_jaxpr(jax.grad(ce))(params)).count("conv_general")
  assert one_pass > 0 and convs[0] - convs[1] == one_pass
