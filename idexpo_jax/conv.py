"""2-D convolutions that avoid the slow paths of XLA:CPU, differentiable to any order.

On the CPU backend, `lax.conv_general_dilated` is fast on maps of 4×4 and larger, but on tiny maps
(1×1, 2×2: the last stage of a CIFAR ResNet-18) its forward pass and its input gradient run far
below the speed of the same arithmetic written as matrix products, and its kernel gradient
(`∂y/∂w`, a correlation of the input with the output gradient) is several times slower than
`kh·kw` GEMMs `x_ijᵀ · g` on every map size. This module writes a convolution as

* "lax": `lax.conv_general_dilated` (XLA's convolution, cuDNN on GPU);
* "shifted": `Σ_ij shift_ij(x) · w_ij`, one GEMM per kernel tap over the strided, shifted view of
  the zero-padded input (the im2col identity of Chellapilla et al., 2006, without materialising
  the patches);
* "patches": the `kh·kw` shifted views concatenated along channels, then one GEMM with the kernel
  reshaped to `(kh·kw·C, O)` (im2col);

and picks, per part (forward, input gradient, kernel gradient) and per shape, the method measured
fastest on CPU (`cpu_plan`, a fixed rule from `benchmarks/conv.py`; no autotuning at run time). A
`jax.custom_vjp` carries the choice into the backward pass; its backward is itself written with
these convolutions and differentiable operations, so gradients of gradients (the second-order
Grad-CAM term of ID-ExpO, Yoshikawa & Iwata, AISTATS 2024) take the fast paths too. Reverse mode
only: forward-mode differentiation (`jax.jvp`, `jax.jacfwd`) of the custom VJP raises; use
`method="lax"` there.

On GPU and TPU (`jax.default_backend()` at trace time) every call is `lax.conv_general_dilated`.

XLA:CPU itself (jaxlib 0.10) sends convolutions to YNNPACK by default, where they run on one
thread and their kernel gradients are slow; with `--xla_cpu_experimental_ynn_fusion_type=
-individual_convolution` they run on XLA's Eigen path, multi-threaded. `import idexpo_jax` adds
that flag (`CPU_XLA_FLAGS`) to the `XLA_FLAGS` environment variable when it can still take effect
(`use_cpu_xla_flags`): before JAX has started a backend, on jaxlib >= 0.10, unless `XLA_FLAGS`
already sets that option or `IDEXPO_JAX_KEEP_XLA_FLAGS=1` is set. It changes which CPU library
computes a convolution (float32 summation order), not what is computed.

Entry points: `conv2d` (NHWC inputs, HWIO kernels), `conv_general_dilated` (the signature of
`lax.conv_general_dilated`, falling back to it for what it does not cover) and `Conv`, a drop-in
subclass of `flax.nnx.Conv` with the same parameters, names, shapes and initialisation.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

Array = jax.Array
Padding = Union[str, Sequence[tuple[int, int]]]

CPU_XLA_FLAGS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def use_cpu_xla_flags() -> bool:
  """Adds `CPU_XLA_FLAGS` to `XLA_FLAGS` when it can take effect; returns whether it did.

  Nothing changes when JAX has already started a backend (the flags are read once, then), when
  `XLA_FLAGS` already sets the YNNPACK fusion option (the user's choice stands), when
  `IDEXPO_JAX_KEEP_XLA_FLAGS=1`, or on jaxlib older than 0.10 (which may not know the flag).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if (os.environ.get("IDEXPO_JAX_KEEP_XLA_FLAGS", "0") not in ("", "0")
      or "xla_cpu_experimental_ynn_fusion_type" in flags):
    return False
  from importlib import metadata

  from jax._src import xla_bridge
  try:
    version = tuple(int(v) for v in metadata.version("jaxlib").split(".")[:2] if v.isdigit())
  except metadata.PackageNotFoundError:  # e.g. a source build without metadata: leave it alone
    return False
  if version < (0, 10) or getattr(xla_bridge, "_backends", {}):
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {CPU_XLA_FLAGS}".strip()
  return True


use_cpu_xla_flags()  # at import, before the library (or its user) starts a backend

METHODS = ("lax", "shifted", "patches")
_DN = ("NHWC", "HWIO", "NHWC")


class Plan(NamedTuple):
  """The method of each part of one convolution: forward, input gradient, kernel gradient.

  Attributes:
    fwd: "lax", "shifted" or "patches".
    dx: the input gradient: "lax" (the transposed convolution as a convolution of the output
      gradient, through `conv2d` again at stride 1, `lax`'s own transpose at larger strides) or
      "shifted" (the transpose of the shifted GEMMs).
    dw: the kernel gradient: "lax" (`lax`'s transpose) , "shifted" (`kh·kw` GEMMs
      `x_ijᵀ · g`) or "patches" (one GEMM of the im2col patches with `g`).
  """

  fwd: str = "lax"
  dx: str = "lax"
  dw: str = "lax"


LAX = Plan("lax", "lax", "lax")


def cpu_plan(in_hw: tuple[int, int], kernel_hw: tuple[int, int], strides: tuple[int, int],
             cin: int, cout: int) -> Plan:
  """The per-shape rule for XLA:CPU, from the measurements of `benchmarks/conv.py`.

  Stride-1 convolutions on maps of 4×4 and larger keep `lax.conv_general_dilated` for all three
  parts (its kernel gradient measured faster there than the GEMM forms).

  Args:
    in_hw: the input map `(H, W)`.
    kernel_hw: the kernel `(kh, kw)`.
    strides: `(sh, sw)`.
    cin, cout: input and output channels.

  Returns:
    The `Plan` of the convolution.
  """
  kh, kw = kernel_hw
  out_area = (-(-in_hw[0] // strides[0])) * (-(-in_hw[1] // strides[1]))
  if kh * kw == 1 or out_area <= 4:
    # 1×1 kernels (a strided view and one GEMM) and outputs of at most 2×2 pixels, where XLA's
    # convolution loops (forward and input gradient) are the slow path.
    return Plan("shifted", "shifted", "shifted")
  if strides != (1, 1):
    # Strided 3×3: XLA's transposes are slower than the GEMMs on every map measured; its forward
    # pass only on small outputs.
    return Plan("patches" if out_area <= 16 else "lax", "shifted" if cin >= 16 else "lax",
                "patches" if cin < 16 else "shifted")
  del cout
  return LAX


def _pads(padding: Padding, in_hw, kernel_hw, strides) -> tuple[tuple[int, int], ...]:
  if isinstance(padding, str):
    return tuple((int(lo), int(hi))
                 for lo, hi in lax.padtype_to_pads(in_hw, kernel_hw, strides, padding))
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if len(pads) != 2:
    raise ValueError(f"`padding` must be 'SAME', 'VALID' or two (low, high) pairs; got {padding}.")
  return pads


def _out_hw(in_hw, kernel_hw, strides, pads) -> tuple[int, int]:
  return tuple((n + lo + hi - k) // s + 1
               for n, k, s, (lo, hi) in zip(in_hw, kernel_hw, strides, pads))


def _lax_conv(x: Array, w: Array, strides, pads) -> Array:
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)


def _live(tap: int, n_out: int, stride: int, lo: int, size: int) -> bool:
  """Whether kernel tap `tap` reads at least one input pixel (not only zero padding)."""
  return any(lo <= tap + stride * r < lo + size for r in range(n_out))


def _views(x: Array, kernel_hw, strides, pads):
  """The `kh·kw` strided, shifted views `(N, Ho, Wo, C)` of the zero-padded input, row-major.

  A tap that reads only zero padding (e.g. the border taps of a 3×3 kernel on a 1×1 map) gives
  None instead of a view of zeros.
  """
  (kh, kw), (sh, sw) = kernel_hw, strides
  n, h, w, c = x.shape
  ho, wo = _out_hw((h, w), kernel_hw, strides, pads)
  zero = jnp.zeros((), x.dtype)
  xp = lax.pad(x, zero, ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
  return [lax.slice(xp, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                    (1, sh, sw, 1))
          if _live(i, ho, sh, pads[0][0], h) and _live(j, wo, sw, pads[1][0], w) else None
          for i in range(kh) for j in range(kw)]


def _shifted_conv(x: Array, w: Array, strides, pads) -> Array:
  kh, kw, _, _ = w.shape
  views = _views(x, (kh, kw), strides, pads)
  taps = w.reshape(kh * kw, *w.shape[2:])
  out = None
  for v, t in zip(views, taps):
    if v is None:
      continue
    y = jnp.einsum("nhwc,co->nhwo", v, t)
    out = y if out is None else out + y
  if out is None:  # every tap in the padding
    ho, wo = _out_hw(x.shape[1:3], (kh, kw), strides, pads)
    out = jnp.zeros((x.shape[0], ho, wo, w.shape[3]), jnp.result_type(x, w))
  return out


def _dense_views(x: Array, kernel_hw, strides, pads):
  views = _views(x, kernel_hw, strides, pads)
  n, h, w, c = x.shape
  ho, wo = _out_hw((h, w), kernel_hw, strides, pads)
  return [jnp.zeros((n, ho, wo, c), x.dtype) if v is None else v for v in views]


def _patches_conv(x: Array, w: Array, strides, pads) -> Array:
  kh, kw, cin, cout = w.shape
  patches = jnp.concatenate(_dense_views(x, (kh, kw), strides, pads), axis=-1)
  return jnp.einsum("nhwk,ko->nhwo", patches, w.reshape(kh * kw * cin, cout))


_FORWARD = {"lax": _lax_conv, "shifted": _shifted_conv, "patches": _patches_conv}


def _kernel_grad(x: Array, g: Array, kernel_shape, strides, pads, method: str) -> Array:
  kh, kw, cin, cout = kernel_shape
  if method == "lax":
    zeros = jnp.zeros(kernel_shape, x.dtype)
    return jax.vjp(lambda w: _lax_conv(x, w, strides, pads), zeros)[1](g)[0]
  if method == "patches":
    patches = jnp.concatenate(_dense_views(x, (kh, kw), strides, pads), axis=-1)
    return jnp.einsum("nhwk,nhwo->ko", patches, g).reshape(kernel_shape)
  if method == "shifted":
    dtype = jnp.result_type(x, g)
    taps = [jnp.zeros((cin, cout), dtype) if v is None else jnp.einsum("nhwc,nhwo->co", v, g)
            for v in _views(x, (kh, kw), strides, pads)]
    return jnp.stack(taps).reshape(kernel_shape)
  raise ValueError(f"unknown kernel-gradient method {method!r}")


def _input_grad(x_shape, w: Array, g: Array, strides, pads, method: str, dtype) -> Array:
  kh, kw = w.shape[:2]
  if method == "lax" and tuple(strides) == (1, 1):
    # Stride 1: the full correlation of g with the flipped, transposed kernel, through `conv2d`
    # again, so that its own derivatives (second order) follow the plan of that shape.
    h, wd = x_shape[1:3]
    ho, wo = g.shape[1:3]
    tpads = ((kh - 1 - pads[0][0], h - ho + pads[0][0]), (kw - 1 - pads[1][0], wd - wo + pads[1][0]))
    wt = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    return conv2d(g, wt, (1, 1), tpads)
  fwd = _lax_conv if method == "lax" else _shifted_conv
  zeros = jnp.zeros(x_shape, dtype)
  return jax.vjp(lambda x: fwd(x, w, strides, pads), zeros)[1](g)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _planned_conv(x: Array, w: Array, strides, pads, plan: Plan) -> Array:
  return _FORWARD[plan.fwd](x, w, strides, pads)


def _planned_fwd(x, w, strides, pads, plan):
  return _planned_conv(x, w, strides, pads, plan), (x, w)


def _planned_bwd(strides, pads, plan, res, g):
  x, w = res
  dx = _input_grad(x.shape, w, g, strides, pads, plan.dx, x.dtype)
  dw = _kernel_grad(x, g, w.shape, strides, pads, plan.dw)
  return dx, dw


_planned_conv.defvjp(_planned_fwd, _planned_bwd)


def conv2d(x: Array, kernel: Array, strides: Union[int, Sequence[int]] = 1,
           padding: Padding = "SAME", *, method: Union[str, Plan, None] = None) -> Array:
  """A 2-D convolution (cross-correlation) of NHWC images with an HWIO kernel.

  Computes the same function as `lax.conv_general_dilated(x, kernel, strides, padding,
  dimension_numbers=("NHWC", "HWIO", "NHWC"))`, with the computation chosen for speed on CPU.

  Args:
    x: images `(N, H, W, C)`.
    kernel: `(kh, kw, C, O)`.
    strides: an int or `(sh, sw)`.
    padding: "SAME", "VALID" or `((lo, hi), (lo, hi))`.
    method: None (default): `cpu_plan` on the CPU backend, `lax.conv_general_dilated` elsewhere;
      "lax": always `lax.conv_general_dilated` (any differentiation mode); "shifted" or
      "patches": that forward and its transpose for both gradients; a `Plan`: explicit methods
      per part.

  Returns:
    `(N, Ho, Wo, O)`.
  """
  if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != x.shape[3]:
    raise ValueError(f"`x` must be (N, H, W, C) and `kernel` (kh, kw, C, O); got "
                     f"{tuple(x.shape)} and {tuple(kernel.shape)}.")
  if isinstance(strides, int):
    strides = (strides, strides)
  elif len(strides) != 2:
    raise ValueError(f"`strides` must be an int or a pair (sh, sw); got {strides!r}.")
  else:
    strides = (int(strides[0]), int(strides[1]))
  kernel_hw = (int(kernel.shape[0]), int(kernel.shape[1]))
  in_hw = (int(x.shape[1]), int(x.shape[2]))
  pads = _pads(padding, in_hw, kernel_hw, strides)
  if method is None:
    if jax.default_backend() != "cpu":
      return _lax_conv(x, kernel, strides, pads)
    method = cpu_plan(in_hw, kernel_hw, strides, x.shape[3], kernel.shape[3])
  if isinstance(method, str):
    if method not in METHODS:
      raise ValueError(f"`method` must be one of {METHODS}, a Plan or None; got {method!r}.")
    if method == "lax":
      return _lax_conv(x, kernel, strides, pads)
    method = Plan(method, "shifted", method)
  if method == LAX:
    return _lax_conv(x, kernel, strides, pads)
  x, kernel = jnp.asarray(x), jnp.asarray(kernel)
  dtype = jnp.result_type(x, kernel)
  return _planned_conv(x.astype(dtype), kernel.astype(dtype), strides, pads, Plan(*method))


def _is_nhwc(dimension_numbers, ndim: int) -> bool:
  if ndim != 4:
    return False
  if dimension_numbers is None:
    return False
  dn = lax.conv_dimension_numbers((1,) * 4, (1,) * 4, dimension_numbers)
  return dn == lax.conv_dimension_numbers((1,) * 4, (1,) * 4, _DN)


def conv_general_dilated(lhs: Array, rhs: Array, window_strides: Sequence[int], padding: Padding,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None, **kwargs) -> Array:
  """`lax.conv_general_dilated` with `conv2d`'s CPU paths where they apply.

  `conv2d` handles 2-D NHWC/HWIO convolutions without dilation or feature groups, at default
  precision and output type; every other call (and every call off the CPU backend) goes to
  `lax.conv_general_dilated` unchanged. Pass it as `conv_general_dilated=` to `flax.nnx.Conv`.
  """
  plain = (_is_nhwc(dimension_numbers, lhs.ndim)
           and all(d == 1 for d in (lhs_dilation or (1, 1)))
           and all(d == 1 for d in (rhs_dilation or (1, 1)))
           and feature_group_count == 1 and batch_group_count == 1 and precision is None
           and preferred_element_type is None and not any(v is not None for v in kwargs.values())
           and (not isinstance(padding, str) or padding in ("SAME", "VALID"))
           and jax.default_backend() == "cpu")
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    batch_group_count, precision, preferred_element_type,
                                    **kwargs)
  return conv2d(lhs, rhs, tuple(window_strides), padding)


class Conv(nnx.Conv):
  """`flax.nnx.Conv` whose convolution is `conv_general_dilated` of this module.

  Same arguments, parameters (`kernel`, `bias`), shapes and initialisation as `nnx.Conv`, so its
  state loads into and from `nnx.Conv` checkpoints; only the computation of the convolution
  differs (the fast CPU paths of `conv2d` on 2-D NHWC inputs, `lax` elsewhere).
  """

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("conv_general_dilated", conv_general_dilated)
    super().__init__(*args, **kwargs)
