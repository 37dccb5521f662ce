"""Explainer objects (units stated once), `explain` and the batched insertion/deletion scores."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import idexpo_jax as ij
from idexpo_jax.explainers import gradients as at
from idexpo_jax import models

SEG = ij.grid_segments(8, 8, 4)


def _cnn_predictor(seed=0):
  rng = np.random.default_rng(seed)
  v = jnp.asarray(rng.normal(size=(2, 3)), jnp.float32)
  u = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)

  def features(xb):
    a = jnp.tanh(xb @ v)
    b, h, w, f = a.shape
    return a.reshape(b, h // 2, 2, w // 2, 2, f).mean(axis=(2, 4))

  return ij.Predictor(features, lambda a: jnp.tanh(a).mean(axis=(1, 2)) @ u)


def _batch(seed=0, b=3):
  x = np.random.default_rng(seed).normal(size=(b, 8, 8, 2)).astype(np.float32)
  return jnp.asarray(x)


# (object, the pure function with the same options)
CASES = [
    (ij.Lime(segments=SEG, baseline=0.1, n_samples=40, ridge=0.5, output="log_prob"),
     functools.partial(ij.explainers.lime.lime, segments=SEG, baseline=0.1, n_samples=40, ridge=0.5,
                       output="log_prob")),
    (ij.KernelShap(segments=SEG, baseline=0.1, n_samples=20, output="logit", sampler="leverage"),
     functools.partial(ij.explainers.kernel_shap.kernel_shap, segments=SEG, baseline=0.1, n_samples=20, output="logit",
                       sampler="leverage")),
    (ij.GradCam(baseline=0.1, second_order=False, output="log_prob"),
     lambda m, x, t, k: ij.explainers.grad_cam.grad_cam(m, x, t, k, second_order=False,
                                    output="log_prob").reshape(-1)),
    (ij.IntegratedGradients(segments=SEG, baseline=0.1, n_steps=5),
     functools.partial(at.integrated_gradients, segments=SEG, baseline=0.1, n_steps=5)),
    (ij.SmoothGrad(segments=SEG, baseline=0.1, n_samples=4, sigma=0.2),
     functools.partial(at.smooth_grad, segments=SEG, n_samples=4, sigma=0.2)),
    (ij.GradientTimesInput(baseline=0.1, output="logit"),
     functools.partial(at.gradient_times_input, baseline=0.1, output="logit")),
    (ij.InputGradients(segments=SEG, baseline=0.1),
     functools.partial(at.target_gradient, segments=SEG)),
]


@pytest.mark.parametrize("obj,fn", CASES, ids=lambda c: type(c).__name__)
def test_object_equals_its_pure_function(obj, fn):
  pred, x, key = _cnn_predictor(), _batch()[0], jax.random.key(2)
  np.testing.assert_array_equal(jax.jit(obj, static_argnums=0)(pred, x, 1, key),
                                jax.jit(fn, static_argnums=0)(pred, x, 1, key))
  assert obj.baseline == 0.1
  assert obj.segments is None or np.array_equal(obj.segments, SEG)


def test_objects_are_immutable_hashable_and_static():
  a = ij.Lime(segments=ij.grid_segments(8, 8, 4), baseline=0.0)
  b = ij.Lime(segments=ij.grid_segments(8, 8, 4), baseline=0.0)
  assert a == b and hash(a) == hash(b)
  assert a != a.replace(n_samples=10) and a != ij.KernelShap(segments=SEG, baseline=0.0)
  assert a != ij.Lime(segments=ij.grid_segments(8, 8, 2), baseline=0.0)
  with pytest.raises(Exception):
    a.n_samples = 3
  with pytest.raises(TypeError):
    ij.Lime(segments=SEG)  # the baseline is stated, never implicit
  assert jax.tree_util.tree_leaves(a) == []  # a pytree without leaves: static under jit
  traces = []

  @jax.jit
  def f(explainer, x):
    traces.append(1)
    return explainer(_cnn_predictor(), x, 0, jax.random.key(0))

  x = _batch()[0]
  f(a.replace(n_samples=20), x)
  f(b.replace(n_samples=20), x)  # equal configuration: no new trace
  assert len(traces) == 1
  with pytest.raises(ValueError, match="segments"):
    ij.Lime(segments=np.zeros((2, 2, 2), np.int32), baseline=0.0)


def test_idexpo_penalty_reads_units_and_baseline_from_the_explainer():
  pred, xb, yb, key = _cnn_predictor(), _batch(1), jnp.asarray([0, 3, 1]), jax.random.key(4)
  kw = dict(n_steps=2, fraction=0.5)
  obj = ij.Lime(segments=SEG, baseline=0.1, n_samples=30)
  want = ij.IdExpo(obj, segments=SEG, baseline=0.1, **kw)(pred, xb, yb, key)
  got = ij.IdExpo(obj, **kw)(pred, xb, yb, key)
  np.testing.assert_array_equal(got[0], want[0])
  # The README's line: a partial of the pure function also states the units once.
  part = functools.partial(ij.explainers.lime.lime, segments=SEG, baseline=0.1, n_samples=30)
  np.testing.assert_array_equal(ij.IdExpo(part, **kw)(pred, xb, yb, key)[0],
                                want[0])
  with pytest.raises(ValueError, match="segments"):
    ij.IdExpo(obj, segments=ij.grid_segments(8, 8, 2), **kw)(pred, xb, yb, key)
  with pytest.raises(ValueError, match="baseline"):
    ij.IdExpo(ij.explainers.grad_cam.grad_cam, **kw)(pred, xb, yb, key)


def test_metric_objects_read_the_explainer_units():
  """`InsertionDeletion` and `IdExpo` score the explainer's units and baseline: equal to the pure
  functions given them explicitly."""
  pred, xb, key = _cnn_predictor(), _batch(2), jax.random.key(5)
  obj = ij.KernelShap(segments=SEG, baseline=0.1, n_samples=20)
  phi = ij.explain(obj, pred, xb, key, targets=jnp.asarray([2, 1, 0]))
  t = jnp.asarray([2, 1, 0])
  fr, ins_c, del_c = ij.InsertionDeletion(obj, step=1, fraction=1.0).curves(pred, xb, phi, t)
  ref = ij.metrics.curves.batch_insertion_deletion(pred, xb, phi, t, segments=SEG, baseline=0.1,
                                                   step=1, fraction=1.0)
  for a, b in zip((fr, ins_c, del_c), ref):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  for i in range(3):
    np.testing.assert_allclose(
        ij.IdExpo(obj, n_steps=2).losses(pred, xb[i], phi[i], t[i]),
        ij.soft_insertion_deletion(pred, xb[i], phi[i], t[i], segments=SEG, baseline=0.1,
                                   n_steps=2), rtol=1e-6, atol=1e-7)


def test_every_option_of_a_function_is_a_field_of_its_object():
  """The fields of each explainer object are exactly the keyword options of its function (less
  the units/baseline the function does not take), checked from the signatures."""
  import dataclasses
  import inspect
  objects = [ij.Lime, ij.KernelShap, ij.GradCam, ij.IntegratedGradients, ij.SmoothGrad,
             ij.GradientTimesInput, ij.InputGradients]
  for cls in objects:
    sig = inspect.signature(cls.function)
    options = {n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}
    fields = {f.name for f in dataclasses.fields(cls)}
    assert options == fields - set(cls.not_passed), cls.__name__
    assert {"segments", "baseline", "output"} <= fields, cls.__name__
    # Defaults agree with the function's (every object requires a baseline: the metrics read it).
    for f in dataclasses.fields(cls):
      if f.name in options and f.name != "baseline" and sig.parameters[f.name].default is not inspect.Parameter.empty:
        assert f.default == sig.parameters[f.name].default, (cls.__name__, f.name)
  local = {n for n, p in inspect.signature(ij.explainers.local_linear.local_linear).parameters.items()
           if p.kind is p.KEYWORD_ONLY}
  assert local == {f.name for f in dataclasses.fields(ij.LocalLinear)}


def test_a_function_gaining_an_option_its_object_lacks_fails_at_class_creation():
  def explain_fn(model, x, target, key, *, segments=None, baseline, output="prob", new=1):
    return x

  with pytest.raises(TypeError, match="new"):
    @ij.explainers.base.explainer_config
    class Incomplete(ij.Explainer):  # pylint: disable=unused-variable
      function = staticmethod(explain_fn)
      segments: object = None
      baseline: object
      output: str = "prob"


def test_lime_object_takes_paired():
  pred, x, key = _cnn_predictor(), _batch()[0], jax.random.key(1)
  obj = ij.Lime(segments=SEG, baseline=0.0, n_samples=31, paired=True)
  np.testing.assert_allclose(obj(pred, x, 1, key), ij.explainers.lime.lime(
      pred, x, 1, key, segments=SEG, baseline=0.0, n_samples=31, paired=True), rtol=1e-6)


def test_objects_own_frozen_copies_of_their_arrays():
  seg = np.asarray(ij.grid_segments(8, 8, 4)).copy()
  base = np.full((8, 8, 2), 0.1, np.float32)
  obj = ij.Lime(segments=seg, baseline=base, n_samples=20)
  before = hash(obj)
  seg[0, 0] = 3
  base[...] = 9.0
  assert hash(obj) == before and obj.segments[0, 0] == 0 and obj.baseline.max() == np.float32(0.1)
  with pytest.raises(ValueError):
    obj.segments[0, 0] = 1  # read-only
  pen = ij.IdExpo(obj)
  assert pen.units()[0] is obj.segments


def test_every_explainer_takes_an_nnx_module_directly():
  """`ij.GradCam(...)(models.SmallCNN(...), x, t, key)` and the others accept the module."""
  model = models.SmallCNN(2, 4, width=4, rngs=nnx.Rngs(0))
  model.eval()
  pred = ij.Predictor(model.features, model.head)
  x, key = _batch()[0], jax.random.key(3)
  for obj, _ in CASES:
    np.testing.assert_allclose(obj(model, x, 1, key), obj(pred, x, 1, key), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(ij.explainers.grad_cam.grad_cam(model, x, 3),
                             ij.explainers.grad_cam.grad_cam(pred, x, 3), rtol=1e-6)
  xb, yb = _batch(1), jnp.asarray([0, 3, 1])
  pen = ij.IdExpo(ij.GradCam(baseline=0.0), n_steps=4)
  np.testing.assert_allclose(pen(model, xb, yb, key)[0], pen(pred, xb, yb, key)[0], rtol=1e-6)
  with pytest.raises(TypeError, match="spatial feature maps"):
    ij.GradCam(baseline=0.0)(lambda b: model(b), x, 1, key)


def test_explain_equals_the_vmapped_explainer():
  pred, xb, key = _cnn_predictor(), _batch(3, b=5), jax.random.key(6)
  obj = ij.Lime(segments=SEG, baseline=0.0, n_samples=30)
  targets = jnp.asarray([0, 1, 2, 3, 0])
  keys = jax.random.split(key, 5)
  manual = jax.jit(jax.vmap(lambda x, t, k: obj(pred, x, t, k)))  # one compilation for both
  np.testing.assert_allclose(ij.explain(obj, pred, xb, key, targets=targets),
                             manual(xb, targets, keys), rtol=1e-5, atol=1e-7)
  # None: the predicted class.
  predicted = pred(xb).argmax(-1)
  np.testing.assert_allclose(ij.explain(obj, pred, xb, key), manual(xb, predicted, keys),
                             rtol=1e-5, atol=1e-7)
  # "all": every class with the example's key; chunks give the same values.
  every = ij.explain(obj, pred, xb, key, targets="all")
  assert every.shape == (5, 4, 4)
  for c in range(4):
    np.testing.assert_allclose(every[:, c], ij.explain(obj, pred, xb, key, targets=jnp.full(5, c)),
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ij.explain(obj, pred, xb, key, targets="all", chunk_size=2), every,
                             rtol=1e-5, atol=1e-6)


def test_explain_arguments_are_checked():
  pred, xb, key = _cnn_predictor(), _batch(), jax.random.key(0)
  obj = ij.GradCam(baseline=0.0)
  with pytest.raises(ValueError, match="targets"):
    ij.explain(obj, pred, xb, key, targets="every")
  with pytest.raises(ValueError, match="targets"):
    ij.explain(obj, pred, xb, key, targets=jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match=r"\[0, 4\)"):
    ij.explain(obj, pred, xb, key, targets=jnp.asarray([0, 4, 1]))
  with pytest.raises(ValueError, match="chunk_size"):
    ij.explain(obj, pred, xb, key, chunk_size=0)
  with pytest.raises(ValueError, match="xb"):
    ij.explain(obj, pred, xb[0, 0, 0], key)


def test_explain_an_nnx_module_follows_its_parameters():
  """A module is a pytree: its arrays are traced, so updated parameters are never stale."""
  model = models.SmallCNN(in_channels=2, num_classes=3, width=4, rngs=nnx.Rngs(0))
  xb, key = _batch(4), jax.random.key(1)
  obj = ij.GradCam(baseline=0.0)  # needs features/head: read from the module
  first = ij.explain(obj, model, xb, key, targets=jnp.asarray([0, 1, 2]))
  np.testing.assert_allclose(first, jax.jit(jax.vmap(lambda x, t: ij.explainers.grad_cam.grad_cam(
      ij.Predictor(model.features, model.head), x, t).reshape(-1)))(xb, jnp.asarray([0, 1, 2])),
                             rtol=1e-5, atol=1e-7)
  model.conv1.kernel[...] = model.conv1.kernel[...] + 0.3
  second = ij.explain(obj, model, xb, key, targets=jnp.asarray([0, 1, 2]))
  assert np.abs(np.asarray(second) - np.asarray(first)).max() > 1e-4
  # A Predictor of the module's bound methods is traced through the module as well.
  third = ij.explain(obj, ij.Predictor(model.features, model.head), xb, key,
                     targets=jnp.asarray([0, 1, 2]))
  np.testing.assert_allclose(third, second, rtol=1e-5, atol=1e-7)
  model.conv1.kernel[...] = model.conv1.kernel[...] - 0.5
  fourth = ij.explain(obj, ij.Predictor(model.features, model.head), xb, key,
                      targets=jnp.asarray([0, 1, 2]))
  assert np.abs(np.asarray(fourth) - np.asarray(third)).max() > 1e-4


def test_batch_scores_use_the_readme_convention():
  """Defaults: step = U // 16, "mean" up to fraction 0.5, the predicted class."""
  pred, xb = _cnn_predictor(), _batch(5, b=4)
  obj = ij.InputGradients(baseline=0.2)  # 64 pixel units: step 4
  phi = ij.explain(obj, pred, xb, jax.random.key(0))
  got = ij.InsertionDeletion(obj)(pred, xb, phi)
  predicted = pred(xb).argmax(-1)
  loop = [ij.metrics.curves.insertion_deletion_scores(pred, xb[i], phi[i], predicted[i], baseline=0.2, step=4,
                                       fraction=0.5, auc="mean") for i in range(4)]
  np.testing.assert_allclose(got.insertion, [s[0] for s in loop], rtol=1e-5)
  np.testing.assert_allclose(got.deletion, [s[1] for s in loop], rtol=1e-5)
  np.testing.assert_allclose(got.insertion_mean, np.mean([s[0] for s in loop]), rtol=1e-5)
  trap = ij.InsertionDeletion(obj, fraction=1.0, auc="trapezoid")(pred, xb, phi, predicted)
  loop = [ij.metrics.curves.insertion_deletion_scores(pred, xb[i], phi[i], predicted[i], baseline=0.2, step=4,
                                       fraction=1.0, auc="trapezoid") for i in range(4)]
  np.testing.assert_allclose(trap.deletion, [s[1] for s in loop], rtol=1e-5)
  # Every class: scores (B, K), class c scored with attributions[:, c].
  every = ij.explain(obj, pred, xb, jax.random.key(0), targets="all")
  all_scores = ij.InsertionDeletion(obj)(pred, xb, every, "all")
  assert all_scores.insertion.shape == (4, 4)
  one = ij.InsertionDeletion(obj)(pred, xb, every[:, 2], jnp.full(4, 2))
  np.testing.assert_allclose(all_scores.insertion[:, 2], one.insertion, rtol=1e-5)
  with pytest.raises(ValueError, match="attributions"):
    ij.InsertionDeletion(obj)(pred, xb, every)
