"""Analytic floors for one step: the bytes it must move, the FLOPs it must do, and the least time each takes.

    from zo2bench import catalog
    from zo2bench.bench.floors import floors, step_bytes, step_flops
    spec = catalog.get("opt-1.3b-untied")
    step_bytes(spec, "zo2", "fp16")                  # {"h2d_bytes": 2.42e9, "d2h_bytes": 2.42e9, ...}
    step_flops(spec, batch=1, seq=2048, mode="zo2")  # 1.157e13
    floors(spec, 1, 2048, "zo2", "fp16", calibration)["floor_s"]   # calibration: bench.calibrate's record

A floor is a lower bound on step time from one resource alone: a real step cannot beat the larger of the
transfer floor and the compute floor, and the gap between them and a measured step is what there is to win.

Units: bytes and FLOPs are plain counts; bandwidths in the calibration are GB/s with GB = 1e9 bytes, matmul
rates TFLOP/s with TFLOP = 1e12 FLOP; times in seconds.

Checked against ../shared/reference/h100-measurements.md (tests/test_floors.py), OPT-1.3B with an untied
head (1.419e9 params), fp16, batch 1, T=2048, zo2:
  * 24 blocks x 50,358,272 params x 2 bytes = 2.417e9 bytes each way; 4.834e9 bytes over the 64.2 GB/s
    measured with both directions at once = 75.3 ms (the reference: 2.42 GB, 75 ms); upload alone at
    54.9 GB/s = 44.0 ms (the reference: 44 ms).
  * The reference counts 2 passes x 2 x 1.419e9 x 2048 = 11.62 TFLOP. This module drops the lookup tables
    (token and position embeddings, 0.107e9 params: -0.88 TFLOP) and adds causal attention
    (2 passes x 2 x 24 x 2048^2 x 2048 = +0.82 TFLOP), for 11.57 TFLOP (-0.4%): 14.46 ms at 800 TFLOP/s
    (the reference: 14.5 ms). The attention term grows with seq^2: at T=2048 it is 7% of the total for
    this model, at T=8192 it would be 24%, so the reference's 2*N*D alone understates long sequences.
"""
from __future__ import annotations

from zo2bench.catalog import ModelSpec
from zo2bench.config import DTYPE_BYTES, ZO_MODES, check_dtype, check_mode
from zo2bench.errors import UserError

# Calibration figures (keys of bench.calibrate's record) that the floors read.
BOTH_DIRECTIONS_KEY = "both_directions_pinned_gb_per_s"
H2D_KEY = "h2d_pinned_gb_per_s"
D2H_KEY = "d2h_pinned_gb_per_s"


def _check(spec: ModelSpec, mode: str, dtype: str | None = None, resident_blocks: int = 0) -> None:
    check_mode(mode)
    if dtype is not None:
        check_dtype(dtype)
    if not 0 <= resident_blocks <= spec.layers:
        raise UserError(f"resident_blocks must be between 0 and {spec.layers} for {spec.name}, got {resident_blocks}")


# -- bytes -------------------------------------------------------------------------------------------

def step_bytes(spec: ModelSpec, mode: str, dtype: str, resident_blocks: int = 0) -> dict:
    """Bytes one step moves between host and device, each way.

    zo2 keeps embeddings and head on the device and streams the decoder blocks: each non-resident block
    is uploaded once, runs both perturbed forwards and its update, and is offloaded once, so
    (layers - resident_blocks) * block_params * bytes_per_param go each way. mezo and fo-* keep
    everything on the device and move no weights (the few bytes of tokens and losses are left out).
    """
    _check(spec, mode, dtype, resident_blocks)
    block_bytes = spec.block_params() * DTYPE_BYTES[dtype]
    moved = spec.layers - resident_blocks if mode == "zo2" else 0
    each_way = moved * block_bytes
    return {"blocks_moved": moved, "block_bytes": block_bytes,
            "h2d_bytes": each_way, "d2h_bytes": each_way, "total_bytes": 2 * each_way}


# -- FLOPs -------------------------------------------------------------------------------------------

def lookup_params(spec: ModelSpec) -> int:
    """Parameters read by index, not multiplied: the token embedding and OPT's learned positions."""
    if spec.family == "opt":
        return spec.vocab * (spec.proj_dim or spec.hidden) + (spec.positions + 2) * spec.hidden
    return spec.vocab * spec.hidden


def matmul_params(spec: ModelSpec) -> int:
    """Parameters that each take part in one multiply-add per token in a forward pass.

    All parameters but the lookup tables; a tied LM head is a matmul with the token embedding, so it is
    counted again here. Biases and norm weights are counted as if they were matmul weights (one
    multiply-add per token each): an overcount below 0.1% for every real catalog model (1.5% for the
    tiny debug ones), kept for simplicity.
    """
    tied_head = spec.vocab * (spec.proj_dim or spec.hidden) if spec.tied else 0
    return spec.n_params() - lookup_params(spec) + tied_head


def forward_passes(mode: str) -> int:
    """Forward-pass equivalents per step: ZO runs two forwards (+eps and -eps); first order runs one
    forward and a backward costing two (gradients of activations and of weights): 3."""
    return 2 if mode in ZO_MODES else 3


def flops_breakdown(spec: ModelSpec, batch: int, seq: int, mode: str) -> dict:
    """FLOPs of one step, in parts. Conventions (one multiply-add = 2 FLOPs):

    * matmul: 2 * matmul_params(spec) * tokens per forward, tokens = batch * seq (the standard 2*N*D,
      with N the non-lookup parameters: see matmul_params).
    * attention: per layer and forward, QK^T and AV each cost 2 * seq^2 * hidden * batch over the full
      square; causal masking needs only half of it, so 2 * 2 * layers * seq^2 * hidden * batch / 2.
      (hidden = heads * head_dim counts query heads, so grouped-query attention costs the same.)
    * softmax, norms, activations and the loss are left out (element-wise, well under 1%).
    * per step: forward_passes(mode) times one forward (ZO 2, first order 3).
    """
    _check(spec, mode)
    if batch < 1 or seq < 1:
        raise UserError(f"batch and seq must be positive, got batch={batch} seq={seq}")
    tokens = batch * seq
    matmul = 2 * matmul_params(spec) * tokens
    attention = 2 * 2 * spec.layers * seq**2 * spec.hidden * batch / 2
    passes = forward_passes(mode)
    return {"passes": passes, "matmul_flops_per_pass": float(matmul), "attention_flops_per_pass": float(attention),
            "total_flops": float(passes * (matmul + attention))}


def step_flops(spec: ModelSpec, batch: int, seq: int, mode: str) -> float:
    """FLOPs of one step: forward_passes(mode) x (matmul + causal attention); see flops_breakdown."""
    return flops_breakdown(spec, batch, seq, mode)["total_flops"]


# -- floors ------------------------------------------------------------------------------------------

def figure(calibration: dict, key: str) -> float | None:
    """One figure's median from a calibration record, its "figures" dict, or a plain {key: number} dict;
    None where it was not measured."""
    figures = calibration.get("figures", calibration)
    value = figures.get(key)
    if isinstance(value, dict):
        value = value.get("median")
    return None if value is None else float(value)


def deferred_transfer_s(h2d_bytes: float, d2h_bytes: float, every: int, h2d_bw: float | None,
                        both_bw: float | None) -> float | None:
    """The transfer floor with deferred write-back: every upload, and a K-th of the offload (each block is
    copied back on every K-th visit). Two bounds, the larger binds: the uploads alone at the one-way rate,
    and all bytes over the both-directions-at-once total (bandwidths in GB/s). None without both figures.
    At K = 1 it can only be at or above the plain both-ways floor."""
    if h2d_bw is None or both_bw is None:
        return None
    return max(h2d_bytes / (h2d_bw * 1e9), (h2d_bytes + d2h_bytes / every) / (both_bw * 1e9))


def floors(spec: ModelSpec, batch: int, seq: int, mode: str, dtype: str, calibration: dict,
           resident_blocks: int = 0, device: str = "cuda", writeback_every: int = 1) -> dict:
    """Transfer floor, compute floor and the one that binds, for one step on the calibrated machine.

    Transfer: zo2 uploads block i+1 while block i-1 goes back, so both directions share the link at
    once; the floor is all bytes moved (both ways) over the calibrated both-directions-at-once total.
    That total is less than twice one direction (64.2 vs 2 x 55 GB/s on the reference H100), so
    treating the directions as independent would understate the floor. Without that figure the floor
    falls back to max(h2d time, d2h time) at the one-way rates (ideal full duplex, a looser bound).
    "upload_only_s" (h2d bytes at the one-way rate) is given for comparison with designs that never
    offload. On device "cpu" nothing crosses a link: the transfer floor is 0.

    Compute: step_flops over the calibrated matmul rate for `dtype` (key "matmul_<dtype>_tflop_per_s",
    or "cpu_matmul_<dtype>_tflop_per_s" on device "cpu"). A rate for 8192^3 matmuls is the best case;
    the smaller and thinner matmuls of a real step run slower.

    floor_s is the larger of the two; a floor whose figure was not measured is None, listed in
    "missing", and floor_s is then the larger of those known (still a lower bound, a looser one).

    Beside it, for deferred write-back every `writeback_every` = K visits: "transfer_deferred_s"
    (deferred_transfer_s) and "floor_deferred_s", the larger of it and the compute floor (the replays are
    extra work on the device that the compute floor does not count).
    """
    moved = step_bytes(spec, mode, dtype, resident_blocks)
    flops = flops_breakdown(spec, batch, seq, mode)
    missing = []

    h2d_bw, d2h_bw = figure(calibration, H2D_KEY), figure(calibration, D2H_KEY)
    both_bw = figure(calibration, BOTH_DIRECTIONS_KEY)
    upload_only_s = None if h2d_bw is None else moved["h2d_bytes"] / (h2d_bw * 1e9)
    if device == "cpu" or moved["total_bytes"] == 0:
        transfer_s, transfer_basis = 0.0, "nothing moved"
        upload_only_s = 0.0
    elif both_bw is not None:
        transfer_s, transfer_basis = moved["total_bytes"] / (both_bw * 1e9), BOTH_DIRECTIONS_KEY
    elif h2d_bw is not None and d2h_bw is not None:
        transfer_s = max(moved["h2d_bytes"] / (h2d_bw * 1e9), moved["d2h_bytes"] / (d2h_bw * 1e9))
        transfer_basis = f"max of {H2D_KEY} and {D2H_KEY} (no both-directions figure)"
    else:
        transfer_s, transfer_basis = None, "not measured"
        missing.append(BOTH_DIRECTIONS_KEY)

    if device == "cpu" or moved["total_bytes"] == 0:
        transfer_deferred_s = 0.0
    else:
        transfer_deferred_s = deferred_transfer_s(moved["h2d_bytes"], moved["d2h_bytes"], writeback_every,
                                                  h2d_bw, both_bw)

    rate_key = f"{'cpu_' if device == 'cpu' else ''}matmul_{dtype}_tflop_per_s"
    rate = figure(calibration, rate_key)
    compute_s = None if rate is None else flops["total_flops"] / (rate * 1e12)
    if rate is None:
        missing.append(rate_key)

    known = {name: s for name, s in (("transfer", transfer_s), ("compute", compute_s)) if s is not None}
    binds = max(known, key=known.get) if known else None
    deferred = [x for x in (transfer_deferred_s, compute_s) if x is not None]
    return {
        "transfer_s": transfer_s, "transfer_basis": transfer_basis, "upload_only_s": upload_only_s,
        "writeback_every": writeback_every, "transfer_deferred_s": transfer_deferred_s,
        "floor_deferred_s": max(deferred) if transfer_deferred_s is not None and deferred else None,
        "compute_s": compute_s, "compute_basis": rate_key,
        "floor_s": known[binds] if binds else None, "binds": binds, "missing": missing,
        "bytes": moved, "flops": flops,
        "inputs": {"model": spec.name, "batch": batch, "seq": seq, "mode": mode, "dtype": dtype,
                   "resident_blocks": resident_blocks, "device": device, "writeback_every": writeback_every},
    }
