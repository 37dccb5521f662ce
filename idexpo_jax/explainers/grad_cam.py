"""Grad-CAM with its second-order path kept in the graph.

Selvaraju et al., "Grad-CAM", ICCV 2017: `A = features(x)`, `s = head(A)[target]` (a logit),
`α_f = mean_ij ∂s/∂A_ijf`, `CAM = ReLU(Σ_f α_f A_f)`, resized to the input. Because `α` is itself a
`jax.grad`, differentiating a loss that calls `grad_cam` includes `∂α/∂θ` (second order), as in
Figure 1 of ID-ExpO (Yoshikawa & Iwata, AISTATS 2024). `second_order=False` stops it, which is what
the ID-ExpO reference code does (kept for ablation).

Grad-CAM needs spatial feature maps `(B, h, w, F)`: a module with `features`/`head` methods (the
library's `models`) or a `Predictor(features, head)`; a bare logits function has no such maps and
raises TypeError. `output` picks the differentiated
score (`predictor.OUTPUTS`; default the logit, as in the paper). A concrete target outside
`[0, K)` raises ValueError; a traced one (under `jit`/`vmap`) gives a NaN map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from idexpo_jax.core.checks import is_traced, poison, valid_target
from idexpo_jax.core.predictor import (Predictor, as_predictor, check_batch_targets,
                                       has_own_features, model_output, promote_input,
                                       select_output)

Array = jax.Array


def _resize(cam: Array, height: int, width: int, method: str) -> Array:
  """Resizes `(B, h, w)` maps to `(B, height, width)`; "nearest" repeats cells exactly."""
  b, h, w = cam.shape
  if method == "nearest":
    if height % h == 0 and width % w == 0:
      return jnp.repeat(jnp.repeat(cam, height // h, axis=1), width // w, axis=2)
    return jax.image.resize(cam, (b, height, width), method="nearest")
  if method == "bilinear":
    return jax.image.resize(cam, (b, height, width), method="bilinear")
  raise ValueError(f"`upsample` must be 'nearest' or 'bilinear'; got {method!r}.")


def check_predictor(model) -> Predictor:
  """`model` as a `Predictor` (`as_predictor`); TypeError unless it has features of its own."""
  predictor = as_predictor(model)
  if not has_own_features(predictor):
    raise TypeError(f"Grad-CAM needs spatial feature maps (B, h, w, F): an NNX module with "
                    f"`features`/`head` methods or a `Predictor(features, head)`; got "
                    f"{type(model).__name__}, a bare logits function, whose 'map' would be the "
                    f"input itself.")
  return predictor


def grad_cam_batch(predictor, xb: Array, targets: Array, *, upsample: str = "nearest",
                   second_order: bool = True, output: str = "logit") -> Array:
  """Grad-CAM maps for a batch, `(B, H, W)`, with one forward pass through the features.

  The per-example channel weights come from one `jax.grad` of `Σ_b head(A)[b, y_b]`, which equals
  the per-example gradients because the head treats examples independently (inference mode: no
  batch statistics). Arguments as in `grad_cam`, with `targets (B,)`.
  """
  predictor = check_predictor(predictor)
  xb = promote_input(predictor, xb, batched=True)
  if xb.ndim not in (3, 4):
    raise ValueError(f"`xb` must be a batch of images (B, H, W, C); got shape {tuple(xb.shape)}.")
  if jnp.shape(targets) != xb.shape[:1]:
    raise ValueError(f"`targets` must have shape (B,) = ({xb.shape[0]},); got "
                     f"{tuple(jnp.shape(targets))}.")
  targets = check_batch_targets(predictor, xb, targets)
  feats = predictor.features(xb)
  if feats.ndim != 4:
    raise ValueError(f"Grad-CAM needs `features` to return maps (B, h, w, F); got "
                     f"{tuple(feats.shape)}.")
  n_classes = []

  def score(a):
    out = model_output(predictor.head, a, output=output)
    n_classes.append(out.shape[-1])
    return select_output(out, targets, output).sum()

  grads = jax.grad(score)(feats)
  alpha = grads.mean(axis=(1, 2))  # (B, F)
  if not second_order:
    alpha = jax.lax.stop_gradient(alpha)
  cam = jax.nn.relu(jnp.einsum("bhwf,bf->bhw", feats, alpha))
  if is_traced(targets):
    cam = poison(cam, valid_target(targets, n_classes[0])[:, None, None])
  return _resize(cam, xb.shape[1], xb.shape[2], upsample)


def grad_cam(predictor, x: Array, target, key=None, *, upsample: str = "nearest",
             second_order: bool = True, output: str = "logit") -> Array:
  """Grad-CAM map `(H, W)` of one example `x (H, W, C)` for class `target`.

  Args:
    predictor: a `Predictor` whose `features` return `(B, h, w, F)` maps (a bare logits function
      raises TypeError).
    x: one image, no batch axis (integer `x` is promoted to the model's float dtype).
    target: the class explained, in `[0, K)`: a concrete one outside raises ValueError, a traced one
      outside gives a NaN map.
    key: unused; accepted so that every explainer has the call `(model, x, target, key)`.
    upsample: "nearest" (each CAM cell a block; the ID-ExpO reference) or "bilinear".
    second_order: keep `α` in the graph (default) or stop its gradient.
    output: the differentiated score of `predictor.OUTPUTS`: "logit" (default, the paper's),
      "log_prob", "prob", or "raw" (the head's output as it is, e.g. a regression CNN).

  Returns:
    The non-negative map, shape `(H, W)`.
  """
  del key
  if x.ndim != 3:
    raise ValueError(f"`x` must be one image (H, W, C) without batch axis; got shape "
                     f"{tuple(x.shape)}.")
  if jnp.size(target) != 1:
    raise ValueError(f"`target` must be a scalar class index; got shape {jnp.shape(target)}.")
  return grad_cam_batch(predictor, x[None], jnp.asarray(target).reshape(1), upsample=upsample,
                        second_order=second_order, output=output)[0]
