"""Tests of the benchmark harness (`benchmarks/`): the PyTorch copies, the results writer and tiny
runs of `make bench`'s sections."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmarks import explainers as ex
from benchmarks import run as bench_run
from benchmarks.common import (jitted_masked_prob, jitted_predict_proba, make_problem, md_table,
                               save_section)
from benchmarks.run import explainer_ratios
from benchmarks.train_steps import _time_step, ce_loss
from idexpo_jax.models import MLP, SmallCNN, functional, predictor_fn
from tolerances import F32

_TORCH_REASON = ("torch is not installed: `make bench` installs torch==2.13.0 (CPU) and the "
                 "`bench` extra; `make test` installs only the `test` extra")


def _torch():
  """The torch module, or a skip (with the reason) where only the `test` extra is installed."""
  return pytest.importorskip("torch", reason=_TORCH_REASON)


@pytest.mark.parametrize("channels,size", [(1, 16), (3, 8)])
def test_torch_copy_equals_jax_model(channels, size):
  torch = _torch()
  from benchmarks.torch_cnn import torch_small_cnn
  model = SmallCNN(channels, 7, width=6, rngs=nnx.Rngs(3))
  graphdef, params, rest = functional(model)
  x = np.random.default_rng(0).normal(size=(5, size, size, channels)).astype(np.float32)
  want = np.asarray(jax.jit(lambda p, xb: predictor_fn(graphdef, p, rest)(xb))(params, x))
  copy = torch_small_cnn(params)
  with torch.no_grad():
    got = copy(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # Distinct weights per layer: a transposed kernel would change the output.
  assert np.abs(want).max() > 1e-3


@pytest.mark.parametrize("hidden", [(50, 30), (7,), ()])
def test_torch_mlp_copy_equals_jax_model(hidden):
  torch = _torch()
  from benchmarks.torch_mlp import torch_mlp
  model = MLP(30, 3, hidden=hidden, rngs=nnx.Rngs(1))
  graphdef, params, rest = functional(model)
  x = np.random.default_rng(0).normal(size=(6, 30)).astype(np.float32)
  want = np.asarray(jax.jit(lambda p, xb: predictor_fn(graphdef, p, rest)(xb))(params, x))
  with torch.no_grad():
    got = torch_mlp(params)(torch.from_numpy(x)).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert np.abs(want).max() > 1e-3


def test_matched_lime_base_setting_solves_our_problem():
  """The matched `LimeBase` setting solves our problem: same samples give the same φ."""
  from lime.lime_base import LimeBase

  from benchmarks.tabular import lime_width, make_tabular_problem
  from idexpo_jax.explainers.lime import lime_distances
  from idexpo_jax.core.lstsq import weighted_least_squares
  problem = make_tabular_problem(n_rows=1)
  d, w = problem.x.shape[1], lime_width(problem)
  z = np.random.default_rng(0).integers(0, 2, (200, d)).astype(np.float64)
  z[0] = 1
  f = np.random.default_rng(1).uniform(size=(200, 2))
  dist = np.sqrt(d - z.sum(1))
  np.testing.assert_allclose(np.asarray(lime_distances(jnp.asarray(z, jnp.float32),
                                                       distance="euclidean")), dist, **F32)
  base = LimeBase(lambda di: np.sqrt(np.exp(-(di ** 2) / w ** 2)), random_state=0)
  got = dict(base.explain_instance_with_data(z, f, dist, 1, d, feature_selection="none")[1])
  pi = np.sqrt(np.exp(-(dist ** 2) / w ** 2)).astype(np.float32)
  coef, _ = jax.jit(lambda *a: weighted_least_squares(*a, ridge=1.0, fit_intercept=True))(
      jnp.asarray(z, jnp.float32), jnp.asarray(f[:, 1], jnp.float32), jnp.asarray(pi))
  np.testing.assert_allclose(np.asarray(coef), [got[j] for j in range(d)], atol=1e-4)


def test_masked_prob_matches_predict_proba():
  problem = make_problem(n_images=2, width=4)
  segments = problem.segments(16)
  masked = jitted_masked_prob(problem, segments)
  proba = jitted_predict_proba(problem)
  x, t = problem.x[0], int(problem.targets[0])
  z = np.stack([np.ones(16), np.zeros(16)])
  base = np.broadcast_to(problem.baseline, x.shape)
  np.testing.assert_allclose(masked(x, z, t), proba(np.stack([x, base]))[:, t], rtol=1e-5)


def test_tiny_bench_runs_and_reports(tmp_path):
  _torch()  # the run includes captum on the PyTorch copy
  pytest.importorskip("captum", reason="captum is in the `bench` extra (`make bench`)")
  problem = make_problem(n_images=2, width=4)
  common = dict(n_segments=16, n_samples=16)
  row = {"width": 4, "n_segments": 16, "n_samples": 16, "n_images": 2, "ours": {},
         "packages": {}}
  row["floor"] = ex.bench_floor(problem, batch=2, repeats=1, **common)
  assert row["floor"]["n_forward"] == 2 * 16
  row["ours"]["lime"] = ex.bench_ours(problem, "lime", batch=2, repeats=1, **common)
  row["packages"] = {
      "lime_package": ex.bench_lime_package(problem, n_images=1, **common),
      "shap_package": ex.bench_shap_package(problem, n_images=1, **common),
      "captum_lime": ex.bench_captum(problem, "lime", n_images=1, **common),
      "captum_kernel_shap": ex.bench_captum(problem, "kernel_shap", n_images=1, **common),
  }
  for r in [row["floor"], *row["packages"].values()] + ([row["ours"]["lime"]]
                                                        if row["ours"]["lime"] else []):
    assert r["per_explanation_s"] > 0
  row["ratios"] = explainer_ratios(row)
  assert row["ratios"]["shap_package_over_floor"] == pytest.approx(
      row["packages"]["shap_package"]["per_explanation_s"] / row["floor"]["per_explanation_s"])

  ce = _time_step(problem, ce_loss(problem),
                  (jnp.asarray(problem.x), jnp.asarray(problem.y)), repeats=1)
  n_params = sum(a.size for a in jax.tree.leaves(problem.params))
  assert ce["memory"]["peak_bytes"] is None or ce["memory"]["peak_bytes"] >= 4 * n_params
  text = "\n".join(ex.markdown({"rows": [row], "args": {"images": 2}}))
  for label in ("`lime` package", "shap.KernelExplainer", "captum `Lime`", "captum `KernelShap`",
                "`lime` ≤ 1.3× floor"):
    assert label in text


def test_md_table_and_save_section_keep_the_other_sections_and_the_prose(tmp_path):
  assert md_table(["a", "b"], [[1, "x"], ["y", 2.5]]) == [
      "| a | b |", "| --- | ---: |", "| 1 | x |", "| y | 2.5 |"]
  out, doc = tmp_path / "r.json", tmp_path / "b.md"
  out.write_text(json.dumps({"other": {"v": 1}, "conv": {"old": True}}))
  doc.write_text("# T\n\nprose before\n<!-- bench:conv -->\nold table\n<!-- /bench:conv -->\n"
                 "prose after\n")
  machine = {"cpu": "test cpu", "cores": 3, "jax_device": "cpu", "versions": {"jax": "9"},
             "load_average": [1.0], "load_average_end": [2.0]}
  for _ in range(2):  # the second save replaces the first, it does not add another copy
    save_section("conv", {"new": 1, "machine": machine}, ["| new table |"], out=str(out),
                 doc=str(doc))
  assert json.loads(out.read_text()) == {"other": {"v": 1}, "conv": {"new": 1, "machine": machine}}
  want = ("# T\n\nprose before\n<!-- bench:conv -->\n| new table |\nMeasured on test cpu, 3 cores, "
          "cpu, jax 9, torch ?; load average 1.0 at start, 2.0 at end.\n\n<!-- /bench:conv -->\n"
          "prose after\n")
  assert doc.read_text() == want
  save_section("fresh", {}, ["t"], out=str(out), doc=str(doc))  # no markers yet: appended
  assert doc.read_text() == want + "\n## fresh\n\n<!-- bench:fresh -->\nt\n<!-- /bench:fresh -->\n"
  with pytest.raises(ValueError, match="name"):
    save_section("a b", {}, [], out=str(out), doc=str(doc))


def test_quick_run_refuses_the_measured_results():
  for argv in (["--quick"], ["--quick", "--out", "x.json"]):
    with pytest.raises(SystemExit):
      bench_run.parse_args(argv)
  with pytest.raises(SystemExit):
    bench_run.parse_args(["--sections", "conv,nope"])


def test_quick_make_bench_saves_conv_and_resnet_sections(tmp_path):
  """`make bench`'s ResNet-18 and convolution sections, tiny, through `benchmarks.run`; the
  ResNet step of ours is left out here (its compile takes minutes; tests/test_resnet_step.py
  checks its loss against these PyTorch steps)."""
  _torch()
  out, doc = tmp_path / "r.json", tmp_path / "b.md"
  out.write_text(json.dumps({"explainers": {"kept": 1}}))
  doc.write_text("hand-written\n<!-- bench:conv -->\n<!-- /bench:conv -->\n")
  bench_run.main(["--quick", "--sections", "conv,resnet_step", "--resnet-variants",
                  "torch_loop,torch_vectorised", "--out", str(out), "--doc", str(doc)])
  results = json.loads(out.read_text())
  assert results["explainers"] == {"kept": 1}
  (row,) = results["resnet_step"]["rows"]
  assert row["batch_size"] == 2 and results["resnet_step"]["width"] == 4
  assert set(row["timings"]) == {"torch_loop", "torch_vectorised"}
  # The per-example first-order loop and the vectorised second-order step: the same loss.
  assert row["loss0"]["torch_loop"] == pytest.approx(row["loss0"]["torch_vectorised"], rel=1e-5)
  assert all(t["wall_s"] > 0 and t["cpu_s"] > 0 for t in row["timings"].values())
  layers = results["conv"]["rows"]
  assert [r["layer"] for r in layers] == ["tiny 1×1 s2", "tiny 3×3"]
  # GFLOP of a 1×1 stride-2 convolution of 8 images 4×4×8 -> 2×2×16: 2·8·2·2·16·8 flops.
  assert layers[0]["gflop"] == pytest.approx(2 * 8 * 2 * 2 * 16 * 8 / 1e9)
  text = doc.read_text()
  assert text.startswith("hand-written\n<!-- bench:conv -->\n| layer, part |")
  assert text.count("<!-- bench:conv -->") == 1 and "<!-- bench:resnet_step -->" in text
  assert "PyTorch, per-example CAM loop" in text and "tiny 3×3 (8×8) dw" in text


def _jax_like(grads_torch: dict, name: str, kind: str) -> np.ndarray:
  """A PyTorch parameter gradient in the JAX layout (HWIO kernels, (in, out) dense kernel)."""
  g = grads_torch[f"{name}.{'weight' if kind == 'kernel' else 'bias'}"]
  if kind == "bias":
    return g
  return g.transpose(2, 3, 1, 0) if g.ndim == 4 else g.T


@pytest.mark.parametrize("second_order", [True, False])
def test_torch_idexpo_step_matches_ours(second_order):
  """The plain PyTorch Grad-CAM ID-ExpO loss equals ours: same value and same gradients."""
  torch = _torch()
  import functools

  from benchmarks.torch_cnn import torch_small_cnn
  from benchmarks.torch_idexpo import idexpo_gradcam_loss, make_torch_step
  from benchmarks.train_steps import FRACTION, LAM, LAM2, N_STEPS, idexpo_loss
  from idexpo_jax.explainers.grad_cam import grad_cam
  problem = make_problem(n_images=3, width=4)
  xb, yb = jnp.asarray(problem.x), jnp.asarray(problem.y)
  explainer = functools.partial(grad_cam, second_order=second_order)
  loss_fn = idexpo_loss(problem, explainer, segments=None)
  (want, aux), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      problem.params, (xb, yb), jax.random.key(0))
  assert float(aux["cins"]) > 0.1  # the penalty is a sizeable part of the loss

  model = torch_small_cnn(problem.params)
  x = torch.from_numpy(np.ascontiguousarray(problem.x.transpose(0, 3, 1, 2)))
  y = torch.from_numpy(problem.y.astype(np.int64))
  base = torch.from_numpy(problem.baseline.transpose(2, 0, 1).copy())
  loss = idexpo_gradcam_loss(model, x, y, base, n_steps=N_STEPS, fraction=FRACTION, lam=LAM,
                             lam2=LAM2, second_order=second_order)
  loss.backward()
  np.testing.assert_allclose(float(loss.detach()), float(want), rtol=1e-5)
  got = {k: p.grad.numpy() for k, p in model.named_parameters()}
  grads = nnx.to_pure_dict(grads)
  for name in ("conv1", "conv2", "conv3", "out"):
    for kind in ("kernel", "bias"):
      g = np.asarray(grads[name][kind])
      np.testing.assert_allclose(_jax_like(got, name, kind), g, rtol=2e-4,
                                 atol=2e-5 * np.abs(g).max(), err_msg=f"{name}.{kind}")
  if second_order:
    step = make_torch_step(torch_small_cnn(problem.params))
    assert np.isfinite(float(step(x, y, base)))


def test_tabular_parts_run_and_lime_pairing_reference_is_the_expected_fit():
  """`tabular.prepare_parts` runs every part; `lime_pairing`'s reference is LIME's limit."""
  from benchmarks import lime_pairing
  from benchmarks.tabular import make_tabular_problem, prepare_parts
  parts = prepare_parts(make_tabular_problem(n_rows=2), n_samples=64)
  assert set(parts) == {"lime_sampling", "lime_samples", "masked_model", "lime_solve",
                        "kernel_shap_sampling", "kernel_shap_solve"}
  for run, info in parts.values():
    run()
    assert info["n_images"] == 2
  # An additive game v(z) = c + a·z is fitted exactly by every weighted fit without ridge; with
  # the ridge α = 1 against weights that grow with N, the population fit tends to `a`.
  z = lime_pairing.all_masks(lime_pairing.N_UNITS)
  a = np.linspace(-1.0, 1.0, lime_pairing.N_UNITS)
  coef = lime_pairing.population_fit(0.3 + z @ a, "euclidean", 10 ** 7)
  np.testing.assert_allclose(coef, a, atol=1e-4)
  section = {"case": {"iid": {"64": 1.0, "128": 2.0}, "paired": {"64": 2.0, "128": 1.0},
                      "reference_rms": {"64": 1.0, "128": 1.0},
                      "settings": dict(distance="cosine", test_accuracy=0.5, rows=1, seeds=1)}}
  assert not lime_pairing.paired_wins(section)
  text = "\n".join(lime_pairing.markdown_section(section))
  assert "case at N = 64 (0.50×)" in text and "0.50–2.00×" in text
