"""Flax NNX models exposing `features` / `head` for Grad-CAM.

* `MLP`: dense layers; `features` is the identity.
* `SmallCNN`: two conv stages (features) and a conv + global-average-pool + linear head; no
  batch statistics (GroupNorm-free, plain ReLU), so perturbed passes never touch running state.
* `ResNet18`: the CIFAR ResNet-18 (3×3 stem, no max-pool); `features` is the output of the second
  residual stage (16×16×128 on 32×32 inputs; `stem_stride=2` gives the 8×8×128 map of the ID-ExpO
  reference), `head` the rest. BatchNorm
  statistics update only in `model.train()` mode (pre-training); fine-tuning runs in
  `model.eval()`, i.e. with frozen statistics, so perturbed forward passes never update them.

The convolutions are `idexpo_jax.conv.Conv`: `nnx.Conv` with the same parameters and
initialisation, whose convolution avoids XLA:CPU's slow paths on CPU (`lax.conv_general_dilated`
on other backends).

`functional(model)` splits a module once into `(graphdef, params, rest)`; `predictor_fn` rebuilds
a pure `Predictor` from params inside a jitted loss.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from flax import nnx

from idexpo_jax.conv import Conv
from idexpo_jax.core.predictor import Predictor

Array = jax.Array


def check_images(x: Array, channels: int) -> None:
  """Raises ValueError unless `x` is a batch of images `(B, H, W, channels)`."""
  if x.ndim != 4 or x.shape[-1] != channels:
    raise ValueError(f"`x` must be a batch of images (B, H, W, {channels}); got shape "
                     f"{tuple(x.shape)}.")


class MLP(nnx.Module):
  """Multi-layer perceptron on `(B, D)` inputs (inputs of higher rank are flattened).

  Args:
    in_features: `D`, the features of one (flattened) input.
    num_classes: `K`, the outputs (logits; 1 for a regression model).
    hidden: the widths of the hidden layers (ExpO's UCI networks: `(200, 200, 200)`).
    activation: the nonlinearity after every hidden layer.
    kernel_init: the weight initialiser of every layer (default: Flax's LeCun normal;
      `jax.nn.initializers.glorot_uniform()` is Xavier's, as in ExpO's MLPs); biases start at 0.
    rngs: the parameters' random streams (`nnx.Rngs(seed)`).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> mlp = MLP(4, 3, hidden=(8,), rngs=nnx.Rngs(0))
    >>> mlp(jnp.ones((2, 4))).shape
    (2, 3)
  """

  def __init__(self, in_features: int, num_classes: int, *, hidden: Sequence[int] = (50, 30),
               activation: Callable = jax.nn.relu, kernel_init: Callable | None = None,
               rngs: nnx.Rngs):
    sizes = [in_features, *hidden]
    kw: dict[str, Any] = {} if kernel_init is None else {"kernel_init": kernel_init}
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs, **kw)
                            for a, b in zip(sizes[:-1], sizes[1:])])
    self.out = nnx.Linear(sizes[-1], num_classes, rngs=rngs, **kw)
    self.activation = activation

  def features(self, x: Array) -> Array:
    return x

  def head(self, x: Array) -> Array:
    x = x.reshape(x.shape[0], -1)
    first = self.layers[0] if len(self.layers) else self.out
    if x.shape[1] != first.in_features:
      raise ValueError(f"`x` must have {first.in_features} features per example (B, D); got "
                       f"shape {tuple(x.shape)}.")
    for layer in self.layers:
      x = self.activation(layer(x))
    return self.out(x)

  def __call__(self, x: Array) -> Array:
    return self.head(self.features(x))


class SmallCNN(nnx.Module):
  """A small CNN for 8×8 to 32×32 images: conv-conv-pool features, conv-GAP-linear head.

  `features(x)` (two 3×3 convolutions with ReLU, then average pooling) is the map Grad-CAM
  explains; `head(a)` (a 3×3 convolution, global average pooling, a linear layer) gives logits.

  Args:
    in_channels: the image channels `C` of `(B, H, W, C)` inputs (channels last).
    num_classes: `K`, the logits.
    width: the channels of the first convolution (the others have `2·width`).
    pool: the side (and stride) of the average pooling that ends the features: 2 by default;
      4 on 28×28 digits gives 7×7 feature maps (Grad-CAM cells of 4×4 pixels) and a receptive
      field of the head's convolution that spans most of a digit.
    rngs: the parameters' random streams (`nnx.Rngs(seed)`).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> cnn = SmallCNN(1, 10, width=8, rngs=nnx.Rngs(0))
    >>> cnn.features(jnp.ones((2, 8, 8, 1))).shape
    (2, 4, 4, 16)
  """

  def __init__(self, in_channels: int, num_classes: int, *, width: int = 32, pool: int = 2,
               rngs: nnx.Rngs):
    if pool < 1:
      raise ValueError(f"`pool` must be >= 1; got {pool}.")
    self.pool = pool
    self.conv1 = Conv(in_channels, width, (3, 3), rngs=rngs)
    self.conv2 = Conv(width, 2 * width, (3, 3), rngs=rngs)
    self.conv3 = Conv(2 * width, 2 * width, (3, 3), rngs=rngs)
    self.out = nnx.Linear(2 * width, num_classes, rngs=rngs)

  def features(self, x: Array) -> Array:
    check_images(x, self.conv1.in_features)
    x = jax.nn.relu(self.conv1(x))
    x = jax.nn.relu(self.conv2(x))
    # count_include_pad=False: same values (VALID), no int divisor under strict dtype promotion.
    return nnx.avg_pool(x, (self.pool, self.pool), strides=(self.pool, self.pool),
                        count_include_pad=False)

  def head(self, a: Array) -> Array:
    a = jax.nn.relu(self.conv3(a))
    return self.out(a.mean(axis=(1, 2)))

  def __call__(self, x: Array) -> Array:
    return self.head(self.features(x))


class BasicBlock(nnx.Module):
  """ResNet basic block (two 3×3 convs with BatchNorm, projection shortcut when needed)."""

  def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
    self.conv1 = Conv(cin, cout, (3, 3), strides=stride, use_bias=False, rngs=rngs)
    self.bn1 = nnx.BatchNorm(cout, rngs=rngs)
    self.conv2 = Conv(cout, cout, (3, 3), use_bias=False, rngs=rngs)
    self.bn2 = nnx.BatchNorm(cout, rngs=rngs)
    if stride != 1 or cin != cout:
      self.proj = Conv(cin, cout, (1, 1), strides=stride, use_bias=False, rngs=rngs)
      self.proj_bn = nnx.BatchNorm(cout, rngs=rngs)
    else:
      self.proj = None
      self.proj_bn = None

  def __call__(self, x: Array) -> Array:
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    short = x if self.proj is None or self.proj_bn is None else self.proj_bn(self.proj(x))
    return jax.nn.relu(y + short)


class ResNet18(nnx.Module):
  """CIFAR ResNet-18 (He et al., CVPR 2016): 3×3 stem, stages of 64/128/256/512 channels.

  Args:
    in_channels: the image channels of `(B, H, W, C)` inputs.
    num_classes: `K`, the logits.
    width: the channels of the stem and the first stage (the stages have 1, 2, 4, 8 × `width`).
    feature_stage: the number of residual stages in `features` (the Grad-CAM layer); the rest and
      the classifier are `head`. 2: the second stage, the ID-ExpO paper's CIFAR-10 layer.
    stem_stride: the stride of the stem convolution (2 halves every map: 8×8 features on 32×32
      inputs at `feature_stage=2`).
    rngs: the parameters' random streams (`nnx.Rngs(seed)`).
  """

  def __init__(self, in_channels: int = 3, num_classes: int = 10, *, width: int = 64,
               feature_stage: int = 2, stem_stride: int = 1, rngs: nnx.Rngs):
    self.stem = Conv(in_channels, width, (3, 3), strides=stem_stride, use_bias=False,
                         rngs=rngs)
    self.stem_bn = nnx.BatchNorm(width, rngs=rngs)
    blocks = []
    cin = width
    for i, mult in enumerate((1, 2, 4, 8)):
      cout = width * mult
      stride = 1 if i == 0 else 2
      blocks.append(nnx.List([BasicBlock(cin, cout, stride, rngs=rngs),
                              BasicBlock(cout, cout, 1, rngs=rngs)]))
      cin = cout
    self.stages = nnx.List(blocks)
    self.fc = nnx.Linear(cin, num_classes, rngs=rngs)
    self.feature_stage = feature_stage

  def features(self, x: Array) -> Array:
    check_images(x, self.stem.in_features)
    x = jax.nn.relu(self.stem_bn(self.stem(x)))
    for stage in list(self.stages)[:self.feature_stage]:
      for block in stage:
        x = block(x)
    return x

  def head(self, a: Array) -> Array:
    for stage in list(self.stages)[self.feature_stage:]:
      for block in stage:
        a = block(a)
    return self.fc(a.mean(axis=(1, 2)))

  def __call__(self, x: Array) -> Array:
    return self.head(self.features(x))


def functional(model: nnx.Module):
  """Splits a module once into `(graphdef, params, rest)` for a functional train step."""
  return nnx.split(model, nnx.Param, ...)


def predictor_fn(graphdef, params, rest) -> Predictor:
  """A pure `Predictor` built from split module state (use inside `jit`/`grad`)."""
  model = nnx.merge(graphdef, params, rest)
  return Predictor(features=model.features, head=model.head)


def logits_with_state(graphdef, params, rest, xb: Array):
  """Runs the model and returns `(logits, new_rest)`: for pre-training with BatchNorm updates."""
  # copy=True: fresh Variables at the current trace level (under `grad` inside `jit`, mutating
  # the BatchStat objects of `rest` raises flax's TraceContextError).
  model = nnx.merge(graphdef, params, rest, copy=True)
  logits = model(xb)
  _, _, new_rest = nnx.split(model, nnx.Param, ...)
  return logits, new_rest
