"""Causal-LM cross-entropy over the scored positions, a few rows of logits at a time.

    loss = causal_lm_loss(final_hidden, lm_head_weight, batch)   # mean over scored tokens, fp32

Covers classification with a label word, generation and QA with an answer span alike: the batch says
which positions are scored. Full-vocabulary fp32 logits for a whole batch would be B*T*V*4 bytes
(1.6 GiB at T=2048 for OPT's 50272 words, twice over for the two ZO passes), so they are made for a
chunk of rows at a time, sized by LOGIT_CHUNK_BYTES.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# Bytes of logits alive at once: the run-dtype product plus its fp32 copy and log-softmax (~10 B/elem).
LOGIT_CHUNK_BYTES = 64 * 2**20


def _chunk_loss_sum(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = h @ weight.t()
    return F.cross_entropy(logits.float(), targets, reduction="sum")


def causal_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, batch) -> torch.Tensor:
    H = hidden.shape[-1]
    rows = hidden[:, :-1].reshape(-1, H)  # position p predicts token p+1
    if batch.target_pos is not None:
        rows = rows.index_select(0, batch.target_pos)
    n = rows.shape[0]
    chunk = max(1, LOGIT_CHUNK_BYTES // (10 * weight.shape[0]))
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for s in range(0, n, chunk):
        h, y = rows[s:s + chunk], batch.target_ids[s:s + chunk]
        if torch.is_grad_enabled():  # backprop baselines: recompute each chunk's logits instead of keeping them
            total = total + checkpoint(_chunk_loss_sum, h, weight, y, use_reentrant=False)
        else:
            total += _chunk_loss_sum(h, weight, y)
    return total / max(n, 1)
