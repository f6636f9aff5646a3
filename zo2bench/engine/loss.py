"""Causal-LM cross-entropy over the scored positions, a few rows of logits at a time.

    loss = causal_lm_loss(final_hidden, lm_head_weight, batch)   # mean over scored tokens, fp32
    logits = scored_logits(final_hidden, lm_head_weight, batch)  # [N, V] fp32 at the scored positions (eval)

Covers classification with a label word, generation and QA with an answer span alike: the batch says
which positions are scored. Full-vocabulary fp32 logits for a whole batch would be B*T*V*4 bytes
(1.6 GiB at T=2048 for OPT's 50272 words, twice over for the two ZO passes), so they are made for a
chunk of rows at a time. Three paths, one value:
- backprop (grad enabled): each chunk checkpointed, its logits recomputed in the backward pass;
- no grad on CUDA (the ZO passes): the run-dtype logits are read once by a fused Triton kernel that
  keeps a running max and sum of exponentials in fp32 per row (no fp32 copy, no log-softmax tensor),
  and the target logit is gathered. Chunks are a multiple of 128 rows so the LM-head matmul fills its
  tensor-core tiles (133-row chunks had cost a second, nearly empty tile row);
- otherwise: F.cross_entropy on fp32 logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# Bytes of logits alive at once: the run-dtype product plus its fp32 copy and log-softmax (~10 B/elem).
LOGIT_CHUNK_BYTES = 64 * 2**20
# The fused path keeps only the run-dtype logits (2 B/elem in fp16): 32 MiB is 256 rows of OPT's vocabulary.
FUSED_CHUNK_BYTES = 32 * 2**20
ROW_ALIGN = 128
# ...but never fewer rows than this: each chunk's matmul reads the whole head weight, so a chunk of r rows
# does 2r FLOP per weight element (2 bytes in fp16) and is memory-bound below r ~ 210 on an H100 (711
# TFLOP/s fp16 calibrated, 3.35 TB/s HBM3 by NVIDIA's data sheet). Llama-3's 128,256 words made 32 MiB
# chunks of 128 rows: its head ran at ~330 TFLOP/s (torch.profiler, llama3.2-1b batch 8, H100). 256, not
# more: OPT's chunks stay at 256 rows, and so its zo2 batch-1 peak (512 rows: +10 MiB, 905 MiB).
FUSED_MIN_ROWS = 256


def _chunk_loss_sum(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = h @ weight.t()
    return F.cross_entropy(logits.float(), targets, reduction="sum")


def _fused_chunk_loss_sum(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = h @ weight.t()
    lse = row_logsumexp(logits)
    return (lse - logits.gather(1, targets[:, None]).squeeze(1).float()).sum()


def fused_available(t: torch.Tensor) -> bool:
    if not t.is_cuda:
        return False
    try:
        _lse_kernel()
    except ImportError:
        return False
    return True


def _scored_rows(hidden: torch.Tensor, batch) -> torch.Tensor:
    H = hidden.shape[-1]
    rows = hidden[:, :-1].reshape(-1, H)  # position p predicts token p+1
    return rows if batch.target_pos is None else rows.index_select(0, batch.target_pos)


def _chunk_rows(weight: torch.Tensor, fused: bool) -> int:
    if fused:
        chunk = FUSED_CHUNK_BYTES // (weight.element_size() * weight.shape[0])
        return max(FUSED_MIN_ROWS, chunk // ROW_ALIGN * ROW_ALIGN)
    return max(1, LOGIT_CHUNK_BYTES // (10 * weight.shape[0]))


def causal_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, batch) -> torch.Tensor:
    rows = _scored_rows(hidden, batch)
    n = rows.shape[0]
    grad = torch.is_grad_enabled()
    fused = not grad and fused_available(rows)
    chunk = _chunk_rows(weight, fused)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for s in range(0, n, chunk):
        h, y = rows[s:s + chunk], batch.target_ids[s:s + chunk]
        if grad:  # backprop baselines: recompute each chunk's logits instead of keeping them
            total = total + checkpoint(_chunk_loss_sum, h, weight, y, use_reentrant=False)
        elif fused:
            total += _fused_chunk_loss_sum(h, weight, y)
        else:
            total += _chunk_loss_sum(h, weight, y)
    return total / max(n, 1)


def row_losses(hidden: torch.Tensor, weight: torch.Tensor, batch) -> torch.Tensor:
    """Each scored position's loss, -log p(target), fp32 [n]: what causal_lm_loss's no-grad path sums.

    A row's value does not depend on the other rows beside it, so ranks that each score a shard of a
    batch can pool their rows and reduce them as one process would (distributed data parallel):
    reduce_rows(row_losses(h, w, batch), w) == causal_lm_loss(h, w, batch) bitwise, for any shard split.
    """
    rows = _scored_rows(hidden, batch)
    fused = fused_available(rows)
    chunk = _chunk_rows(weight, fused)
    out = [torch.zeros(0, dtype=torch.float32, device=hidden.device)]
    for s in range(0, rows.shape[0], chunk):
        logits = rows[s:s + chunk] @ weight.t()
        y = batch.target_ids[s:s + chunk]
        if fused:
            out.append(row_logsumexp(logits) - logits.gather(1, y[:, None]).squeeze(1).float())
        else:
            out.append(F.cross_entropy(logits.float(), y, reduction="none"))
    return torch.cat(out)


def reduce_rows(losses: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The mean of row losses summed chunk by chunk in causal_lm_loss's own order and kernels (the CPU
    path's cross-entropy sums through nll_loss, whose cascade depends only on the values and their count)."""
    n = losses.shape[0]
    fused = fused_available(losses)
    chunk = _chunk_rows(weight, fused)
    total = torch.zeros((), dtype=torch.float32, device=losses.device)
    for s in range(0, n, chunk):
        part = losses[s:s + chunk]
        if fused:
            total += part.sum()
        else:  # nll_loss sums -input[i, target[i]]: a one-column input of -loss gives the same terms
            total += F.nll_loss(-part[:, None], torch.zeros_like(part, dtype=torch.long), reduction="sum")
    return total / max(n, 1)


def scored_logits(hidden: torch.Tensor, weight: torch.Tensor, batch) -> torch.Tensor:
    """fp32 logits [N, V] of the scored positions, in the order of batch.target_ids (evaluation: N is small)."""
    return (_scored_rows(hidden, batch) @ weight.t()).float()


_kernel = None


def _lse_kernel():
    global _kernel
    if _kernel is None:
        import triton
        import triton.language as tl

        # One program per row: lanes keep a running max m and sum s of exp(x - m) in fp32; masked lanes
        # start at a finite floor so that exp(m - m_new) never sees -inf - -inf.
        @triton.jit
        def lse_kernel(x_ptr, out_ptr, n_cols, stride, BLOCK: tl.constexpr):
            row = tl.program_id(0)
            base = x_ptr + row.to(tl.int64) * stride
            m = tl.full([BLOCK], -1e30, tl.float32)
            s = tl.zeros([BLOCK], tl.float32)
            for start in range(0, n_cols, BLOCK):
                offs = start + tl.arange(0, BLOCK)
                mask = offs < n_cols
                x = tl.load(base + offs, mask=mask, other=-1e30).to(tl.float32)
                m_new = tl.maximum(m, x)
                s = s * tl.exp(m - m_new) + tl.where(mask, tl.exp(x - m_new), 0.0)
                m = m_new
            mx = tl.max(m, 0)
            total = tl.sum(s * tl.exp(m - mx), 0)
            tl.store(out_ptr + row, mx + tl.log(total))

        _kernel = lse_kernel
    return _kernel


def row_logsumexp(x: torch.Tensor) -> torch.Tensor:
    """log(sum(exp(x), -1)) of a 2-D CUDA tensor, in fp32, reading x once in its own dtype."""
    assert x.dim() == 2 and x.stride(1) == 1
    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    _lse_kernel()[(x.shape[0],)](x, out, x.shape[1], x.stride(0), BLOCK=2048, num_warps=8)
    return out
