"""Decoder blocks' forwards for the ZO passes, with their elementwise work fused (no grad only).

    block = FusedLlamaBlock.of(layer)      # None where the layer has something this path does not do
    x = block(x, rope)                     # x [B, T, H], rope = (cos, sin) [B, T, head_dim]
    block = FusedOPTBlock.of(layer)        # pre-LayerNorm OPT layers with biases and ReLU, else None
    x = block(x)

The Hugging Face Llama block runs its norms, rotary embedding, SwiGLU and residual adds as many small
kernels: each RMSNorm is seven over fp32 copies, rotary embedding ten (slices, neg, cat, three products, a
sum), SwiGLU three, the residual adds two. On an H100 (torch.profiler, llama3.2-1b zo2, batch 8, T 2048)
that was ~80 ms of a 258 ms step, against 140 ms of matmuls. Here, with the block's own weights:
- q, k and v are one matmul where their weights lie side by side in the arena (no biases), and so are the
  gate and up projections;
- RMSNorm, rotary embedding (in place, on q and k together) and silu(gate) * up are one kernel each
  (Triton on CUDA; the same arithmetic in torch ops elsewhere), computing in fp32;
- both residual adds ride in the epilogue of o_proj's and down_proj's matmuls (addmm).
OPT's block spent 15 ms of a 181 ms OPT-1.3B batch-8 step (H100, torch.profiler) on two LayerNorms, two
residual adds and the query scaling, each a pass over [B*T, H]. Here the query scaling is SDPA's own scale,
and each LayerNorm kernel also writes its input plus the bias of the projection that closes the sublayer, so
that projection's matmul adds the residual in its epilogue (addmm in place) and no add is left.
Values match the Hugging Face blocks to rounding, not bitwise: fp32 arithmetic rounds once where Hugging
Face rounds after each op, and the biases join the residual in another order (tests/test_fused.py compares
the blocks, tests/test_engine.py the step's losses against the plain Hugging Face model). mezo and zo2 take
the same path, so they stay bitwise equal to each other. Backprop keeps the Hugging Face forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _span(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """One [sum of rows, cols] view over 2-D tensors that lie back to back in one storage, else None."""
    first = tensors[0]
    end = first.data_ptr()
    for t in tensors:
        if t.data_ptr() != end or not t.is_contiguous() or t.shape[1:] != first.shape[1:]:
            return None
        end += t.numel() * t.element_size()
    rows = sum(t.shape[0] for t in tensors)
    return first.as_strided((rows, first.shape[1]), (first.shape[1], 1))


class _Project:
    """Several linear layers applied to one input, their outputs side by side [N, sum of outs]: one matmul
    where the weights lie back to back and have no biases, else one each and a concatenation (Qwen2's biases
    sit between its q, k and v weights)."""

    def __init__(self, linears: list[nn.Linear]):
        self.linears = linears
        plain = all(lin.bias is None for lin in linears)
        self.weight = _span([lin.weight for lin in linears]) if plain else None

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            return h @ self.weight.t()
        return torch.cat([F.linear(h, lin.weight, lin.bias) for lin in self.linears], dim=1)


def _add_linear(x: torch.Tensor, h: torch.Tensor, lin: nn.Linear, inplace: bool = False) -> torch.Tensor:
    """x + lin(h), the residual add in the matmul's epilogue. addmm first copies x into its output (a
    device-to-device copy of the hidden state: ~1.4 ms of a llama3.2-1b batch-8 step); in place there is none,
    so the block does that wherever x is its own intermediate rather than its caller's input."""
    out = x.addmm_(h, lin.weight.t()) if inplace else torch.addmm(x, h, lin.weight.t())
    return out if lin.bias is None else out.add_(lin.bias)


class FusedLlamaBlock:
    @classmethod
    def of(cls, layer: nn.Module) -> FusedLlamaBlock | None:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        needs = [(attn, ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")),
                 (mlp, ("gate_proj", "up_proj", "down_proj", "act_fn")),
                 (layer, ("input_layernorm", "post_attention_layernorm"))]
        if not all(m is not None and all(hasattr(m, a) for a in names) for m, names in needs):
            return None
        if getattr(attn, "q_norm", None) is not None or getattr(attn, "sliding_window", None):
            return None  # Qwen3's per-head norms, Mistral's window: the Hugging Face forward does those
        if type(mlp.act_fn).__name__ not in ("SiLU", "SiLUActivation") or not all(
                hasattr(n, "variance_epsilon") for n in (layer.input_layernorm, layer.post_attention_layernorm)):
            return None
        return cls(layer)

    def __init__(self, layer: nn.Module):
        attn, mlp = layer.self_attn, layer.mlp
        self.attn, self.mlp, self.norm1, self.norm2 = attn, mlp, layer.input_layernorm, layer.post_attention_layernorm
        self.d = attn.head_dim
        self.nq, self.nkv = attn.q_proj.out_features // self.d, attn.k_proj.out_features // self.d
        self.qkv = _Project([attn.q_proj, attn.k_proj, attn.v_proj])
        self.gate_up = _Project([mlp.gate_proj, mlp.up_proj])

    def __call__(self, x: torch.Tensor, rope: tuple) -> torch.Tensor:
        B, T, H = x.shape
        d, nq, nkv = self.d, self.nq, self.nkv
        x = x.reshape(B * T, H)
        cos, sin = (r.reshape(B * T, -1).contiguous() for r in rope)
        qkv = self.qkv(rms_norm(x, self.norm1.weight, self.norm1.variance_epsilon))
        rope_(qkv, cos, sin, heads=nq + nkv, d=d)  # q's and k's heads are the first nq + nkv of the row

        def heads(start, n):
            return qkv[:, start * d:(start + n) * d].view(B, T, n, d).transpose(1, 2)

        o = F.scaled_dot_product_attention(heads(0, nq), heads(nq, nkv), heads(nq + nkv, nkv), is_causal=T > 1,
                                           scale=self.attn.scaling, enable_gqa=nq != nkv)
        x = _add_linear(x, o.transpose(1, 2).reshape(B * T, nq * d), self.attn.o_proj)
        gu = self.gate_up(rms_norm(x, self.norm2.weight, self.norm2.variance_epsilon))
        x = _add_linear(x, silu_mul(gu), self.mlp.down_proj, inplace=True)
        return x.view(B, T, H)


class FusedOPTBlock:
    @classmethod
    def of(cls, layer: nn.Module) -> FusedOPTBlock | None:
        attn = getattr(layer, "self_attn", None)
        if attn is None or not getattr(layer, "do_layer_norm_before", False):
            return None  # OPT-350m normalises after each sublayer: the Hugging Face forward does that
        linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj, layer.fc1, layer.fc2]
        norms = [layer.self_attn_layer_norm, layer.final_layer_norm]
        if type(layer.activation_fn) is not nn.ReLU or any(lin.bias is None for lin in linears) or any(
                n.weight is None or n.bias is None for n in norms):
            return None
        return cls(layer)

    def __init__(self, layer: nn.Module):
        self.attn, self.fc1, self.fc2 = layer.self_attn, layer.fc1, layer.fc2
        self.norm1, self.norm2 = layer.self_attn_layer_norm, layer.final_layer_norm
        self.n, self.d = self.attn.num_heads, self.attn.head_dim

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        B, T, H = x.shape
        attn, n, d = self.attn, self.n, self.d
        h, x = layer_norm_shift(x.reshape(B * T, H), self.norm1, attn.out_proj.bias)  # x: a new tensor

        def heads(lin):
            return F.linear(h, lin.weight, lin.bias).view(B, T, n, d).transpose(1, 2)

        o = F.scaled_dot_product_attention(heads(attn.q_proj), heads(attn.k_proj), heads(attn.v_proj),
                                           is_causal=T > 1, scale=attn.scaling)
        x.addmm_(o.transpose(1, 2).reshape(B * T, H), attn.out_proj.weight.t())
        del o  # else it stays alive beside fc1's [B*T, ffn] product: 8 MiB of OPT-1.3B's zo2 batch-1 peak
        h, x = layer_norm_shift(x, self.norm2, self.fc2.bias, inplace=True)
        x.addmm_(torch._addmm_activation(self.fc1.bias, h, self.fc1.weight.t()), self.fc2.weight.t())
        return x.view(B, T, H)


# -- the kernels: Triton on CUDA, the same arithmetic in torch ops elsewhere ----------------------
def layer_norm_shift(x: torch.Tensor, norm: nn.LayerNorm, shift: torch.Tensor, inplace: bool = False):
    """(norm(x), x + shift) of a 2-D x in one pass: the LayerNorm in fp32, rounded once; x + shift into a new
    tensor, or into x itself when inplace (each row is read whole before it is written)."""
    assert x.stride(1) == 1 and (not inplace or x.is_contiguous())
    if not _triton_ok(x):
        h = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        return h, (x.add_(shift) if inplace else x + shift)
    N, H = x.shape
    h = torch.empty_like(x)
    xs = x if inplace else torch.empty_like(x)
    _kernels()["ln_shift"][(N,)](x, norm.weight, norm.bias, shift, h, xs, H, x.stride(0), norm.eps,
                                 BLOCK=_pow2(H), num_warps=8 if H > 2048 else 4)
    return h, xs


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """weight * (x / rms(x)) over the last dim of a 2-D x; normalised in fp32, rounded to x's dtype, then
    scaled by the weight (Hugging Face's order of roundings)."""
    if not _triton_ok(x):
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)
        return weight * y.to(x.dtype)
    N, H = x.shape
    out = torch.empty_like(x)
    _kernels()["rms"][(N,)](x, weight, out, H, x.stride(0), eps, BLOCK=_pow2(H), num_warps=8 if H > 2048 else 4)
    return out


def rope_(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int, d: int) -> None:
    """Rotary embedding in place on the first `heads` heads of each row of x [N, >= heads*d]:
    x*cos + rotate_half(x)*sin, with cos, sin [N, d]."""
    if not _triton_ok(x):
        v = x[:, :heads * d].view(-1, heads, d)
        c, s = cos[:, None].float(), sin[:, None].float()
        x1, x2 = v[..., :d // 2].float(), v[..., d // 2:].float()
        rotated = torch.cat([-x2, x1], dim=-1)
        v.copy_((v.float() * c + rotated * s).to(x.dtype))
        return
    N = x.shape[0]
    _kernels()["rope"][(N,)](x, cos, sin, x.stride(0), cos.stride(0), heads, d // 2,
                             HEADS=_pow2(heads), HALF=_pow2(d // 2), num_warps=4)


def silu_mul(gu: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up from gu = [gate | up] [N, 2I]: [N, I]."""
    N, two_i = gu.shape
    inner = two_i // 2
    if not _triton_ok(gu):
        g, u = gu[:, :inner].float(), gu[:, inner:].float()
        return (F.silu(g) * u).to(gu.dtype)
    out = torch.empty(N, inner, dtype=gu.dtype, device=gu.device)
    BLOCK = 1024
    _kernels()["silu_mul"][(N, -(-inner // BLOCK))](gu, out, inner, gu.stride(0), BLOCK=BLOCK, num_warps=4)
    return out


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _triton_ok(t: torch.Tensor) -> bool:
    if not t.is_cuda:
        return False
    try:
        _kernels()
    except ImportError:
        return False
    return True


_compiled = None


def _kernels() -> dict:
    global _compiled
    if _compiled is None:
        import triton
        import triton.language as tl

        @triton.jit
        def ln_shift_kernel(x_ptr, w_ptr, b_ptr, shift_ptr, h_ptr, xs_ptr, H, stride, eps, BLOCK: tl.constexpr):
            row = tl.program_id(0).to(tl.int64)
            offs = tl.arange(0, BLOCK)
            m = offs < H
            x = tl.load(x_ptr + row * stride + offs, mask=m, other=0.0).to(tl.float32)
            mean = tl.sum(x, 0) / H
            c = tl.where(m, x - mean, 0.0)
            rstd = tl.rsqrt(tl.sum(c * c, 0) / H + eps)
            w = tl.load(w_ptr + offs, mask=m, other=0.0).to(tl.float32)
            b = tl.load(b_ptr + offs, mask=m, other=0.0).to(tl.float32)
            sh = tl.load(shift_ptr + offs, mask=m, other=0.0).to(tl.float32)
            tl.store(h_ptr + row * H + offs, (c * rstd * w + b).to(h_ptr.dtype.element_ty), mask=m)
            tl.store(xs_ptr + row * H + offs, (x + sh).to(xs_ptr.dtype.element_ty), mask=m)

        @triton.jit
        def rms_kernel(x_ptr, w_ptr, out_ptr, H, stride, eps, BLOCK: tl.constexpr):
            row = tl.program_id(0).to(tl.int64)
            offs = tl.arange(0, BLOCK)
            m = offs < H
            x = tl.load(x_ptr + row * stride + offs, mask=m, other=0.0).to(tl.float32)
            y = (x * tl.rsqrt(tl.sum(x * x, 0) / H + eps)).to(out_ptr.dtype.element_ty)
            w = tl.load(w_ptr + offs, mask=m, other=0.0).to(tl.float32)
            tl.store(out_ptr + row * H + offs, (w * y.to(tl.float32)).to(out_ptr.dtype.element_ty), mask=m)

        # One program per row: a [heads, d/2] tile of each half; out1 = x1 c1 - x2 s1, out2 = x2 c2 + x1 s2.
        @triton.jit
        def rope_kernel(x_ptr, cos_ptr, sin_ptr, stride, cs_stride, heads, half,
                        HEADS: tl.constexpr, HALF: tl.constexpr):
            row = tl.program_id(0).to(tl.int64)
            h = tl.arange(0, HEADS)[:, None]
            j = tl.arange(0, HALF)[None, :]
            m = (h < heads) & (j < half)
            p1 = x_ptr + row * stride + h * 2 * half + j
            x1 = tl.load(p1, mask=m, other=0.0).to(tl.float32)
            x2 = tl.load(p1 + half, mask=m, other=0.0).to(tl.float32)
            jm = j < half
            c1 = tl.load(cos_ptr + row * cs_stride + j, mask=jm, other=0.0).to(tl.float32)
            c2 = tl.load(cos_ptr + row * cs_stride + half + j, mask=jm, other=0.0).to(tl.float32)
            s1 = tl.load(sin_ptr + row * cs_stride + j, mask=jm, other=0.0).to(tl.float32)
            s2 = tl.load(sin_ptr + row * cs_stride + half + j, mask=jm, other=0.0).to(tl.float32)
            tl.store(p1, (x1 * c1 - x2 * s1).to(x_ptr.dtype.element_ty), mask=m)
            tl.store(p1 + half, (x2 * c2 + x1 * s2).to(x_ptr.dtype.element_ty), mask=m)

        @triton.jit
        def silu_mul_kernel(gu_ptr, out_ptr, inner, stride, BLOCK: tl.constexpr):
            row = tl.program_id(0).to(tl.int64)
            offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
            m = offs < inner
            g = tl.load(gu_ptr + row * stride + offs, mask=m, other=0.0).to(tl.float32)
            u = tl.load(gu_ptr + row * stride + inner + offs, mask=m, other=0.0).to(tl.float32)
            tl.store(out_ptr + row * inner + offs, (g * tl.sigmoid(g) * u).to(out_ptr.dtype.element_ty), mask=m)

        _compiled = {"ln_shift": ln_shift_kernel, "rms": rms_kernel, "rope": rope_kernel, "silu_mul": silu_mul_kernel}
    return _compiled
