"""The perturbation direction z, regenerated from a seed: written into weights, never stored.

    noise = make_noise(device, dtype)
    noise.perturb(out, theta, seed, scale)        # out <- theta + scale * z(seed)
    noise.update(theta, seed, coef)               # theta <- theta + coef * z(seed); coef a 0-d device tensor

A seed is an int, or a 0-d int64 device tensor holding one: the kernel then reads it on the device, so a
captured CUDA graph draws a new z on each replay (engine/graphs.py); the same seed gives the same z either way.

Two backends draw different (each deterministic) z, so parity holds between modes on one device:
- `TorchNoise` (CPU, or a GPU without Triton): z drawn with torch's generator in fixed chunks of
  Z_CHUNK elements into a small buffer, then added: three kernels per chunk.
- `TritonNoise` (CUDA): one fused kernel per call; z comes from counter-based Philox (tl.rand4x) at
  each element's index, so nothing is buffered and a unit costs one launch, not hundreds. On the H100
  the chunked torch path spent 30 ms of a 107 ms OPT-1.3B step in ~2,400 small kernels, and more in
  launching them. The uniforms become normals by Box-Muller with the GPU's approximate lg2/sin/cos: with
  Triton's accurate ones (tl.randn4x) the pass was bound by that arithmetic, not by memory. H100, one
  OPT-1.3B block, tools/bench_noise.py in three calls (results/bench-step/h100-80gb-hbm3/*noise*,
  */noise-opt-block.json): accurate functions 157-190 us a pass, approximate ones 94-135 us, the same
  traffic with no z 88-120 us. z moves by ~1e-6 (test_engine's GPU tier bounds it at 1e-4 against
  tl.randn4x's z from the same uniforms), so GPU runs up to commit 9e17a7b drew a z that differs in the
  last bits from later ones.
Both compute in fp32 and round once, so a zero coef leaves theta bitwise unchanged (build() removes -0.0).
"""
from __future__ import annotations

import torch

Z_CHUNK = 1 << 22  # torch path: elements of z alive at once (8 MiB in fp16)


class TorchNoise:
    def __init__(self, device: torch.device, dtype: torch.dtype, max_numel: int):
        self.device = device
        self.zbuf = torch.empty(min(Z_CHUNK, max_numel), dtype=dtype, device=device)

    def chunks(self, numel: int, seed: int):
        """(start, end, z) over a flat buffer of numel elements; fixed chunking, so z depends on seed alone."""
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        for start in range(0, numel, Z_CHUNK):
            end = min(start + Z_CHUNK, numel)
            z = self.zbuf[: end - start]
            z.normal_(generator=gen)
            yield start, end, z

    def perturb(self, out: torch.Tensor, theta: torch.Tensor, seed: int, scale: float) -> None:
        for start, end, z in self.chunks(theta.numel(), seed):
            torch.add(theta[start:end], z, alpha=scale, out=out[start:end])

    def update(self, theta: torch.Tensor, seed: int, coef: torch.Tensor) -> None:
        for start, end, z in self.chunks(theta.numel(), seed):
            theta[start:end].addcmul_(z, coef)


_kernels = None


def _triton_kernels():
    global _kernels
    if _kernels is None:
        import triton
        import triton.language as tl

        @triton.jit
        def _approx(x, op: tl.constexpr):  # PTX's approximate lg2/sin/cos: one instruction, no range reduction
            return tl.inline_asm_elementwise(op + ".approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                             is_pure=True, pack=1)

        @triton.jit
        def _box_muller(u1, u2):  # tl.randn4x's transform (u1 clamped at 1e-7; angle 2 pi u2), cheap functions
            r = tl.sqrt(-1.3862943611198906 * _approx(tl.maximum(1.0e-7, u1), "lg2"))  # -2 ln u = -2 ln2 log2 u
            th = 6.283185307179586 * u2
            return r * _approx(th, "cos"), r * _approx(th, "sin")

        # Program pid covers elements [pid*4Q, (pid+1)*4Q); element pid*4Q + k*Q + j takes the k-th of the
        # four normals drawn from the Philox counter pid*Q + j. Everything is computed in fp32 and rounded once.
        @triton.jit
        def _axpy(dst_ptr, src_ptr, offs, n, a, z):
            m = offs < n
            x = tl.load(src_ptr + offs, mask=m).to(tl.float32)
            tl.store(dst_ptr + offs, (x + a * z).to(dst_ptr.dtype.element_ty), mask=m)

        @triton.jit
        def axpz_kernel(dst_ptr, src_ptr, n, seed, seed_ptr, a, a_ptr, SEED_FROM_PTR: tl.constexpr,
                        A_FROM_PTR: tl.constexpr, Q: tl.constexpr):
            pid = tl.program_id(0)
            if SEED_FROM_PTR:  # the same 31 bits as a host seed, so the same Philox key and the same z
                seed = tl.load(seed_ptr) & 0x7FFFFFFF
            if A_FROM_PTR:  # the update's coefficient stays on the device: no host sync to read g
                a = tl.load(a_ptr).to(tl.float32)
            u0, u1, u2, u3 = tl.rand4x(seed, pid * Q + tl.arange(0, Q))
            z0, z1 = _box_muller(u0, u1)
            z2, z3 = _box_muller(u2, u3)
            base = pid.to(tl.int64) * 4 * Q + tl.arange(0, Q)
            _axpy(dst_ptr, src_ptr, base, n, a, z0)
            _axpy(dst_ptr, src_ptr, base + Q, n, a, z1)
            _axpy(dst_ptr, src_ptr, base + 2 * Q, n, a, z2)
            _axpy(dst_ptr, src_ptr, base + 3 * Q, n, a, z3)

        _kernels = axpz_kernel
    return _kernels


class TritonNoise:
    Q = 1024  # Philox counters per program, four elements each
    WARPS = 8  # 4 and 8 were within each other's noise on the H100 (tools/bench_noise.py, three calls)

    def __init__(self, device: torch.device, dtype: torch.dtype, max_numel: int):
        if max_numel >= 2**31:  # Philox counters are 32-bit
            raise ValueError("a unit of 2**31 elements or more is beyond TritonNoise's counters")
        self.kernel = _triton_kernels()

    def _launch(self, dst, src, seed, a: float, a_ptr) -> None:
        n = src.numel()
        grid = (triton_cdiv(n, 4 * self.Q),)
        on_device = isinstance(seed, torch.Tensor)
        self.kernel[grid](dst, src, n, 0 if on_device else seed & 0x7FFFFFFF, seed if on_device else src,
                          a, a_ptr if a_ptr is not None else src, SEED_FROM_PTR=on_device,
                          A_FROM_PTR=a_ptr is not None, Q=self.Q, num_warps=self.WARPS)

    def perturb(self, out, theta, seed, scale: float) -> None:
        self._launch(out, theta, seed, scale, None)

    def update(self, theta, seed, coef: torch.Tensor) -> None:
        self._launch(theta, theta, seed, 0.0, coef)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def make_noise(device: torch.device, dtype: torch.dtype, max_numel: int, backend: str = "auto"):
    """TritonNoise on CUDA when Triton imports, else TorchNoise; `backend` forces "torch" or "triton"."""
    if backend == "torch" or (backend == "auto" and device.type != "cuda"):
        return TorchNoise(device, dtype, max_numel)
    try:
        return TritonNoise(device, dtype, max_numel)
    except ImportError:
        if backend == "triton":
            raise
        return TorchNoise(device, dtype, max_numel)
