"""The tolerance policy of the tests: how close two floating-point results must be (one place).

Why a policy. The same math computed in another order gives float32 results that differ in the
last bits: chunked vs unchunked, `vmap` vs a loop, a sharded vs a single-device step, JAX vs a
NumPy float64 reference, and one CPU vs another. The last is easy to miss: XLA:CPU hands
reductions to YNNPACK (on by default in jaxlib 0.10), which picks its kernels at run time from the
CPU's vector instruction set, so an AVX-512 machine and an AVX2 one sum in different orders and a
tolerance fitted to one machine fails on the other (a chunked-vs-unchunked curve at `rtol=1e-6`
differed by 2.2e-6 relative on another 2-core CPU). `make test` therefore also runs the numerics
tests under a second XLA:CPU code path, `SECOND_CPU_PATH_XLA_FLAGS` (YNNPACK's reductions off,
LLVM code generation capped at AVX2), which reorders such sums here (docs: README "Numbers and
machines").

The rules.

1. Same program, same inputs, same PRNG key: bit-identical (`np.testing.assert_array_equal`).
   Determinism is a property of the library and holds on any one machine and code path. It is
   not a comparison of two different programs (another batch shape, output shape or chunking is
   another program), which fall under rule 2.
2. float32 results computed in another order or by another program, including against a float64
   reference: `F32` (rtol 1e-5, about 84 ulps, and atol 1e-6 for O(1) quantities, e.g.
   probabilities). Never tighter. A reordered float32 sum of n terms moves by up to ~n·eps of the
   sum of magnitudes (eps = 1.2e-7), typically ~sqrt(n)·eps; 1e-5 covers n in the thousands. Where
   terms cancel (a difference of two losses, values near 0), scale the absolute tolerance to the
   magnitude of the terms: `f32(scale=...)`.
3. float32 through a longer chain (a linear solve with condition number κ, several training
   steps, a Monte-Carlo estimate): looser, stated at the assertion with the reason (κ·eps, the
   sampling error, ...).
4. float64 (x64 tests, NumPy references of float64 computations): `F64` (rtol 1e-9, atol 1e-12);
   differently ordered float64 sums differ by ~1e-15, the margin is for conditioning.
"""

F32_RTOL = 1e-5
F32_ATOL = 1e-6
F64_RTOL = 1e-9
F64_ATOL = 1e-12

F32 = {"rtol": F32_RTOL, "atol": F32_ATOL}
F64 = {"rtol": F64_RTOL, "atol": F64_ATOL}

# XLA_FLAGS of the second CPU code path of `make test` (see the module docstring): reductions by
# XLA's own LLVM emitter instead of YNNPACK, and no AVX-512 in generated code.
SECOND_CPU_PATH_XLA_FLAGS = "--xla_cpu_experimental_ynn_fusion_type=-reduce --xla_cpu_max_isa=AVX2"


def f32(scale: float = 1.0) -> dict:
  """`F32` with the absolute tolerance scaled to the magnitude `scale` of the summed terms."""
  return {"rtol": F32_RTOL, "atol": F32_ATOL * scale}
