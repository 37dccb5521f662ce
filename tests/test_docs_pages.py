"""The user guide pages docs/coming_from.md, docs/equinox.md and docs/defaults.md.

Every python block of these pages starts with a comment naming whose code it is: `# idexpo_jax`
for ours, `# captum ...`, `# shap`, `# lime` or `# Quantus ...` for theirs. Ours run top to bottom
in one namespace per page; theirs run in the same namespace when their package is installed (else
they are only parsed). The results are checked against independent values: brute-force float64
Shapley values and integrated gradients, shap's and captum's own numbers, a softmax of the model's
logits, `ij.IdExpo` evaluated directly. The defaults table is parsed and compared with the real
dataclass fields and signatures, so it cannot drift.
"""

import ast
import importlib.util
import inspect
import itertools
import math
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idexpo_jax as ij

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
PAGES = ("coming_from.md", "equinox.md", "defaults.md")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
# Label of a block -> the modules it needs (ours: none).
LABELS = {"idexpo_jax": (), "captum": ("captum", "torch"), "shap": ("shap",), "lime": ("lime",),
          "Quantus": ("quantus",)}


def blocks(page: str) -> list[tuple[str, int, str]]:
  """`(label, line, code)` of every python block of `page`."""
  text = (DOCS / page).read_text()
  out = []
  for m in BLOCK.finditer(text):
    code = m.group(1)
    first = code.split("\n", 1)[0]
    label = first.removeprefix("# ").split(" ", 1)[0] if first.startswith("# ") else None
    out.append((label, text.count("\n", 0, m.start()) + 2, code))
  return out


def run_page(page: str) -> dict:
  """Executes the page's blocks in one namespace (theirs only where installed)."""
  ns = {"__name__": f"docs_{page.removesuffix('.md')}"}
  for label, line, code in blocks(page):
    if any(importlib.util.find_spec(mod) is None for mod in LABELS[label]):
      continue
    exec(compile("\n" * (line - 1) + code, str(DOCS / page), "exec"), ns)  # noqa: S102
  return ns


def softmax64(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("page", PAGES)
def test_pages_exist_and_their_blocks_are_labelled_and_parse(page):
  found = blocks(page)
  assert found or page == "defaults.md", f"docs/{page} has no python block"
  for label, line, code in found:
    assert label in LABELS, (f"docs/{page}:{line}: the first line of a python block must be "
                             f"`# idexpo_jax` or name another package {sorted(LABELS)}; got "
                             f"{code.splitlines()[0]!r}")
    ast.parse(code)


@pytest.mark.parametrize("page", PAGES)
def test_pages_cite_no_internal_notes(page):
  text = (DOCS / page).read_text()
  for word in ("SPEC", "REFERENCES.md"):
    assert word not in text, f"docs/{page} mentions {word}"
  assert not re.search(r"\bissue \d+", text, re.I), f"docs/{page} cites an issue number"


def test_docs_index_globs_the_pages():
  index = (DOCS / "index.rst").read_text()
  assert re.search(r":glob:\n\n\s+\*\n", index), "docs/index.rst no longer globs the pages"


# --- coming_from.md ---------------------------------------------------------------------------


def brute_force_shapley(value, d: int) -> np.ndarray:
  """Shapley values of the game `value(frozenset)` by enumeration, in float64."""
  phi = np.zeros(d)
  for i in range(d):
    others = [j for j in range(d) if j != i]
    for size in range(d):
      w = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
      for s in itertools.combinations(others, size):
        phi[i] += w * (value(frozenset(s) | {i}) - value(frozenset(s)))
  return phi


@pytest.fixture(scope="module")
def coming_from():
  return run_page("coming_from.md")


def test_coming_from_kernel_shap_is_the_exact_shapley_value(coming_from):
  ns = coming_from
  w, x, b = (np.asarray(ns[k], np.float64) for k in ("W", "x_np", "background"))

  def value(s):
    z = np.where(np.isin(np.arange(4), list(s)), x, b[0])
    return softmax64(z @ w)[1]

  want = brute_force_shapley(value, 4)
  np.testing.assert_allclose(np.asarray(ns["phi_kernel_shap"]), want, rtol=1e-4, atol=1e-6)
  if importlib.util.find_spec("shap"):  # its KernelExplainer with the one background row
    np.testing.assert_allclose(np.asarray(ns["phi_kernel_shap"]), ns["phi_shap"], rtol=1e-4,
                               atol=1e-6)


def test_coming_from_integrated_gradients(coming_from):
  ns = coming_from
  w, x = np.asarray(ns["W"], np.float64), np.asarray(ns["x_np"], np.float64)
  # Independent: completeness, sum φ = p_1(x) − p_1(0), and the float64 path integral of the
  # gradient of p_1 (∂p_1/∂x = Σ_k p_1 (δ_1k − p_k) w_k) by a 200-point Gauss-Legendre rule.
  nodes, weights = np.polynomial.legendre.leggauss(200)
  alphas, weights = (nodes + 1) / 2, weights / 2
  grad = np.zeros(4)
  for a, wt in zip(alphas, weights):
    p = softmax64((a * x) @ w)
    grad += wt * (w @ (p[1] * (np.eye(3)[1] - p)))
  want = x * grad
  np.testing.assert_allclose(want.sum(), softmax64(x @ w)[1] - softmax64(0 * x @ w)[1],
                             rtol=1e-10)
  np.testing.assert_allclose(np.asarray(ns["phi_ig"]), want, rtol=1e-4, atol=1e-6)
  if importlib.util.find_spec("captum") and importlib.util.find_spec("torch"):
    np.testing.assert_allclose(np.asarray(ns["phi_ig"]), ns["phi_ig_captum"], rtol=1e-4,
                               atol=1e-6)


def test_coming_from_images_and_metrics(coming_from):
  ns = coming_from
  xb, cnn = ns["xb"], ns["cnn"]
  assert ns["phi_lime"].shape == (4, 16)
  np.testing.assert_array_equal(np.asarray(ns["lime_maps"])[:, 0, 0],
                                np.asarray(ns["phi_lime"])[:, 0])
  assert ns["cam"].shape == (4, 256) and float(ns["cam"].min()) >= 0.0
  assert ns["smooth"].shape == (4, 256) and np.all(np.isfinite(ns["smooth"]))
  # The curves start at the clean input (no unit deleted): the softmax probability of the
  # predicted class, computed here from the model's logits.
  probs = softmax64(np.asarray(cnn(xb)))
  pred = probs.argmax(-1)
  fractions, del_curves = np.asarray(ns["fractions"]), np.asarray(ns["del_curves"])
  assert fractions[0] == 0.0 and fractions[-1] == 1.0
  np.testing.assert_allclose(del_curves[:, 0], probs[np.arange(4), pred], rtol=1e-5)
  # Insertion ends at the clean input too, deletion at the all-baseline image.
  np.testing.assert_allclose(np.asarray(ns["ins_curves"])[:, -1], probs[np.arange(4), pred],
                             rtol=1e-5)
  blank = softmax64(np.asarray(cnn(jnp.zeros_like(xb))))
  np.testing.assert_allclose(del_curves[:, -1], blank[np.arange(4), pred], rtol=1e-5)
  scores = ns["scores"]
  assert scores.insertion.shape == (4,) and 0.0 <= float(scores.insertion_mean) <= 1.0
  assert -1.0 <= float(ns["sens"]) <= 1.0
  if importlib.util.find_spec("captum") and importlib.util.find_spec("torch"):  # their block ran
    assert tuple(ns["lime_torch"].shape) == (4, 3, 16, 16)
    assert tuple(ns["cam_torch"].shape) == (4, 1, 16, 16)


# --- equinox.md -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def equinox_page():
  pytest.importorskip("equinox")
  return run_page("equinox.md")


def test_equinox_recipe_decreases_the_loss(equinox_page):
  losses = equinox_page["losses"]
  assert len(losses) == 3 and all(np.isfinite(losses))
  assert losses[2] < losses[0], losses


def test_equinox_penalty_matches_a_hand_written_batch_call(equinox_page):
  """The adapter (vmap + NHWC -> CHW) against the model mapped over the batch by hand."""
  import optax
  ns = equinox_page
  model, xb, yb, key = ns["model"], ns["xb"], ns["yb"], ns["key"]  # the model after 3 steps
  logits = jax.vmap(model)(jnp.moveaxis(xb, -1, 1))                 # (B, K), one example each
  ce = float(optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean())
  # Grad-CAM's penalty was evaluated on that model: its clean cross-entropy is the batch's.
  np.testing.assert_allclose(float(ns["aux_gradcam"]["clean_ce"]), ce, rtol=1e-5)
  assert np.isfinite(float(ns["pen_gradcam"]))
  # The first `ij.make_train_step` step reports the loss at that model: CE + λ·pen + λ₂·mean(φ²),
  # the penalty evaluated on the hand-written logits function (LIME needs only logits).
  pen, aux = ij.IdExpo(ns["lime"], n_steps=4)(lambda b: jax.vmap(model)(jnp.moveaxis(b, -1, 1)),
                                              xb, yb, key)
  want = ce + 0.1 * float(pen) + 1e-4 * float(aux["attribution_sq"])
  np.testing.assert_allclose(float(ns["metrics"]["loss"]), want, rtol=1e-5)
  assert int(ns["state"].step) == 1
  assert ns["phi"].shape == (16, 16)
  assert 0.0 <= float(ns["scores"].insertion_mean) <= 1.0


# --- defaults.md ------------------------------------------------------------------------------

ROW = re.compile(r"^\| `(ij\.[\w.]+)` \| `(\w+)` \| `(.+?)` \| (.*) \|$", re.M)
# The public objects and factories whose defaults the table must list: `ij.__all__` and the
# models and adapters (documented as modules).
MODULES = ("models", "adapters")


def resolve(path: str):
  obj = ij
  for part in path.split(".")[1:]:
    obj = getattr(obj, part)
  return obj


def parameters(obj) -> dict:
  """The constructor's or function's parameters (NNX modules: `__init__`, past the metaclass)."""
  params = dict(inspect.signature(obj).parameters)
  if inspect.isclass(obj) and all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                                  for p in params.values()):
    params = dict(list(inspect.signature(obj.__init__).parameters.items())[1:])
  return params


def public_callables() -> dict:
  out = {}
  for name in ij.__all__:
    out[f"ij.{name}"] = getattr(ij, name)
  for mod in MODULES:
    module = getattr(ij, mod)
    for name, obj in vars(module).items():
      if (not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
          and obj.__module__ == module.__name__):
        out[f"ij.{mod}.{name}"] = obj
  return out


def defaults_rows() -> list[tuple[str, str, str, str]]:
  text = (DOCS / "defaults.md").read_text()
  rows = ROW.findall(text)
  assert len(rows) == text.count("\n| `ij."), "a row of docs/defaults.md does not parse"
  return rows


def test_defaults_table_matches_the_code():
  rows = defaults_rows()
  assert len(rows) > 50
  seen = set()
  for obj_name, param, cell, why in rows:
    assert (obj_name, param) not in seen, f"docs/defaults.md lists {obj_name}.{param} twice"
    seen.add((obj_name, param))
    assert why.strip(), f"docs/defaults.md: {obj_name}.{param} has no reason"
    params = parameters(resolve(obj_name))
    assert param in params, f"docs/defaults.md: {obj_name} has no parameter {param!r}"
    got = params[param].default
    if cell == "required":
      assert got is inspect.Parameter.empty, f"{obj_name}.{param} has the default {got!r}"
      continue
    want = eval(cell, {"jax": jax, "np": np})  # noqa: S307 (literals and jax.nn functions)
    if callable(want):
      assert got is want, f"{obj_name}.{param}: the code's default is {got!r}, the table's {cell}"
    else:
      assert type(got) is type(want) and got == want, (
          f"{obj_name}.{param}: the code's default is {got!r}, the table says {cell}")


def test_defaults_table_lists_every_default():
  listed = {(o, p) for o, p, _, _ in defaults_rows()}
  missing = []
  for name, obj in public_callables().items():
    try:
      params = parameters(obj)
    except (TypeError, ValueError):
      continue
    for pname, p in params.items():
      if p.default is not inspect.Parameter.empty and p.default is not None:
        if (name, pname) not in listed:
          missing.append(f"{name}.{pname}={p.default!r}")
  assert not missing, f"defaults missing from docs/defaults.md: {missing}"


def test_defaults_table_rejects_a_drifted_default(tmp_path, monkeypatch):
  """The comparison fails on a wrong value (the check above can fail)."""
  text = (DOCS / "defaults.md").read_text().replace("| `ij.Lime` | `n_samples` | `1000` |",
                                                    "| `ij.Lime` | `n_samples` | `500` |")
  (tmp_path / "defaults.md").write_text(text)
  monkeypatch.setattr(sys.modules[__name__], "DOCS", tmp_path)
  with pytest.raises(AssertionError, match="n_samples"):
    test_defaults_table_matches_the_code()


# --- the API reference's parameter descriptions -------------------------------------------------


@pytest.mark.parametrize("name", ["Lime", "KernelShap", "GradCam", "IntegratedGradients",
                                  "SmoothGrad", "GradientTimesInput", "InputGradients",
                                  "LocalLinear", "InsertionDeletion", "IdExpo"])
def test_config_classes_describe_every_field(name):
  """The `Attributes:` section (rendered as the constructor's parameters) names every field."""
  cls = getattr(ij, name)
  doc = inspect.getdoc(cls)
  assert "\nAttributes:\n" in doc, f"ij.{name} has no Attributes section"
  section = doc.split("\nAttributes:\n", 1)[1]
  described = set(re.findall(r"^  (\w+):", section, re.M))
  fields = set(parameters(cls))
  assert fields <= described, f"ij.{name}: fields without a description {sorted(fields - described)}"
