"""The perturbation direction z, regenerated from a seed: written into weights, never stored.

    noise = make_noise(device, dtype)
    noise.perturb(out, theta, seed, scale)        # out <- theta + scale * z(seed)
    noise.update(theta, seed, coef)               # theta <- theta + coef * z(seed); coef a 0-d device tensor

Two backends draw different (each deterministic) z, so parity holds between modes on one device:
- `TorchNoise` (CPU, or a GPU without Triton): z drawn with torch's generator in fixed chunks of
  Z_CHUNK elements into a small buffer, then added: three kernels per chunk.
- `TritonNoise` (CUDA): one fused kernel per call; z comes from counter-based Philox (tl.randn4x) at
  each element's index, so nothing is buffered and a unit costs one launch, not hundreds. On the H100
  the chunked torch path spent 30 ms of a 107 ms OPT-1.3B step in ~2,400 small kernels, and more in
  launching them.
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
        gen = torch.Generator(device=self.device).manual_seed(seed)
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

        # Program pid covers elements [pid*4Q, (pid+1)*4Q); element pid*4Q + k*Q + j takes the k-th of the
        # four normals Philox draws at counter pid*Q + j. Everything is computed in fp32 and rounded once.
        @triton.jit
        def _axpy(dst_ptr, src_ptr, offs, n, a, z):
            m = offs < n
            x = tl.load(src_ptr + offs, mask=m).to(tl.float32)
            tl.store(dst_ptr + offs, (x + a * z).to(dst_ptr.dtype.element_ty), mask=m)

        @triton.jit
        def axpz_kernel(dst_ptr, src_ptr, n, seed, a, a_ptr, A_FROM_PTR: tl.constexpr, Q: tl.constexpr):
            pid = tl.program_id(0)
            if A_FROM_PTR:  # the update's coefficient stays on the device: no host sync to read g
                a = tl.load(a_ptr).to(tl.float32)
            z0, z1, z2, z3 = tl.randn4x(seed, pid * Q + tl.arange(0, Q))
            base = pid.to(tl.int64) * 4 * Q + tl.arange(0, Q)
            _axpy(dst_ptr, src_ptr, base, n, a, z0)
            _axpy(dst_ptr, src_ptr, base + Q, n, a, z1)
            _axpy(dst_ptr, src_ptr, base + 2 * Q, n, a, z2)
            _axpy(dst_ptr, src_ptr, base + 3 * Q, n, a, z3)

        _kernels = axpz_kernel
    return _kernels


class TritonNoise:
    Q = 1024  # Philox counters per program, four elements each

    def __init__(self, device: torch.device, dtype: torch.dtype, max_numel: int):
        if max_numel >= 2**31:  # Philox counters are 32-bit
            raise ValueError("a unit of 2**31 elements or more is beyond TritonNoise's counters")
        self.kernel = _triton_kernels()

    def _launch(self, dst, src, seed: int, a: float, a_ptr) -> None:
        n = src.numel()
        grid = (triton_cdiv(n, 4 * self.Q),)
        self.kernel[grid](dst, src, n, seed & 0x7FFFFFFF, a, a_ptr if a_ptr is not None else src,
                          A_FROM_PTR=a_ptr is not None, Q=self.Q, num_warps=4)

    def perturb(self, out, theta, seed: int, scale: float) -> None:
        self._launch(out, theta, seed, scale, None)

    def update(self, theta, seed: int, coef: torch.Tensor) -> None:
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
