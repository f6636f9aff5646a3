"""Choosing K for deferred write-back (`--writeback-every K`) from the calibrated link and a measured replay.

    from zo2bench.bench.writeback import replay_cost_s, choose_writeback_every
    r = replay_cost_s(block_numel, torch.float16, torch.device("cuda"))   # seconds per replayed update
    c = choose_writeback_every(n_blocks=24, block_bytes=100.7e6, h2d_gb_per_s=55, both_gb_per_s=64.2,
                               replay_s=r, compute_s=0.039)
    c["every"], c["estimates_s"]                                          # the K that minimises the estimate

With K, each step uploads every streamed block and copies about 1/K of them back (staggered), and each
upload replays the updates its host copy lacks: 0 to K-1 of them, (K-1)/2 on average, one Philox pass each
on the compute stream. A step's estimate is the larger of the two resources it waits for:
    transfer(K) = shared_link_s(uploads, uploads / K, ...)         (the link: uploads, 1/K of the offloads)
    compute(K)  = compute_s + n_blocks * (K - 1) / 2 * replay_s    (the device: the step's own work + replays)
transfer(K) is not bench.floors.deferred_transfer_s, the floor bench-step reports: that bound lets the
uploads alone at the one-way rate bind from K = 2 on, so every K >= 2 estimated alike and the smallest, 2,
was chosen, while on the H100 the upload lane kept shrinking with K (53, 47, 46 ms busy at K = 2, 3, 4;
results/bench-step/h100-80gb-hbm3/acb33d8-writeback-k/): the offloads still share the link. shared_link_s
gives each direction half the calibrated both-ways rate while copies back run (the rate is measured with
equal traffic each way) and the remaining uploads the one-way rate; it estimated 50.1 and 47.1 ms for K = 2
and 4 where the H100 took 48.1 and 46.8 ms with --prefetch 2 (a27ceaf-prefetch/). With --prefetch 1 a block
being copied back also holds the slot the next upload needs (~0.7 ms each, derived there), which the
estimate leaves out. The choice is the smallest K whose estimate is within `min_gain` of the least (fewer
replays for the same estimate).
compute_s is the compute lane's busy time of a step (bench-step's "compute busy", which leaves replays out),
replay_s is measured here on the device, so a K can only be chosen on the machine that runs it:
`zo2bench bench-step --mode zo2 ...` does both and records "writeback" (tools/device_speed.sh runs it on a GPU).
"""
from __future__ import annotations

import time

import torch


def replay_cost_s(numel: int, dtype: torch.dtype, device: torch.device, reps: int = 20) -> float:
    """Median seconds of one update of a numel-element block (noise.update: the kernel a replay runs),
    timed with CUDA events on a GPU, with the wall clock on a CPU. Weight decay, where set, adds a
    multiply over the decayed ranges that this leaves out."""
    from zo2bench.engine.noise import make_noise

    noise = make_noise(device, dtype, numel)
    theta = torch.zeros(numel, dtype=dtype, device=device)
    coef = torch.zeros((), dtype=torch.float32, device=device)  # -lr * g: a 0-d fp32 device tensor
    times = []
    for i in range(reps + 2):  # two warm-up calls: Triton compiles on the first
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            noise.update(theta, i, coef)
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            noise.update(theta, i, coef)
            seconds = time.perf_counter() - t0
        if i >= 2:
            times.append(seconds)
    return sorted(times)[len(times) // 2]


def shared_link_s(up_bytes: float, down_bytes: float, h2d_gb_per_s: float | None,
                  both_gb_per_s: float | None) -> float | None:
    """Seconds to move up_bytes to the device and down_bytes (at most as many) back over one link: while both
    directions run, each gets half the both-ways rate; the uploads left over run alone at the one-way rate.
    At down_bytes == up_bytes it is the both-ways floor, at 0 the uploads alone. None without both rates."""
    if h2d_gb_per_s is None or both_gb_per_s is None:
        return None
    down = min(down_bytes, up_bytes)
    return 2 * down / (both_gb_per_s * 1e9) + (up_bytes - down) / (h2d_gb_per_s * 1e9)


def choose_writeback_every(n_blocks: int, block_bytes: float, h2d_gb_per_s: float | None,
                           both_gb_per_s: float | None, replay_s: float, compute_s: float, k_max: int = 8,
                           min_gain: float = 0.02) -> dict:
    """The K in 1..k_max with the least estimated step time (module docstring), and every estimate.

    Without the link's figures (a CPU, or an uncalibrated machine) nothing can be gained: K = 1."""
    moved = n_blocks * block_bytes
    estimates, parts = {}, {}
    for k in range(1, k_max + 1):
        transfer = shared_link_s(moved, moved / k, h2d_gb_per_s, both_gb_per_s)
        compute = compute_s + n_blocks * (k - 1) / 2 * replay_s
        parts[k] = {"transfer_s": transfer, "compute_s": compute}
        estimates[k] = max(compute, transfer) if transfer is not None else None
    best = 1
    if estimates[1] is not None:  # the smallest K whose estimate is within min_gain of the least
        least = min(estimates.values())
        best = min(k for k, e in estimates.items() if e <= least * (1 + min_gain))
    return {"every": best, "estimates_s": estimates, "parts": parts,
            "inputs": {"n_blocks": n_blocks, "block_bytes": block_bytes, "h2d_gb_per_s": h2d_gb_per_s,
                       "both_gb_per_s": both_gb_per_s, "replay_s": replay_s, "compute_s": compute_s}}
