"""Per-configuration floors of a distributed ZO step, from the rates measured on the multi-GPU hosts.

    dist_floors(spec, "fp16", "zo2", dims={"world_size": 4, "ranks_per_host": 4, "weight_shard": 4},
                compute_1gpu_s=1.20)       # {"pcie_s": 0.173, "gather_s": 0.048, "transfer_s": 0.221, ...}
    multi_gpu_rates()                      # the table below, with its source

Rates (GB = 1e9 bytes), from ../shared/reference/multi-gpu.md (the 4-GPU H200 host, 2026-11-26): every GPU
copying its own pinned buffer host-to-device at once, 54.8 GB/s in total with 1 GPU, 104.0 with 2 and 145.6
with 4; GPU to GPU over NVLink 391.5 GB/s. (The 2-GPU host measured 55.0 and 106.8 GB/s and 392.8 GB/s.)
A GPU count without a measured rate (3, 8) has no PCIe floor: None, said in "missing".

Per step, with P the bytes of every decoder block and n the ranks of a host copying at once (the upload
only; the copy back runs the other way at a similar rate, docs/distributed.md):
- zo2, weight shard W = 1: every rank uploads P: n*P over the host's links, n*P / R_n;
- zo2, W > 1: each weight group uploads P once (rank r its slice), then all-gathers it over NVLink:
  (n/W)*P / R_n + (W-1)/W * P / NVLink (the gather runs after the slice's copy on the same lane);
- mezo, W > 1 (resident shards): the gather alone; mezo, W = 1: nothing crosses PCIe after building.
The compute floor is one GPU's (bench/floors.py, from the calibration) over the world size: dp splits the
batch and pert the two passes, so each rank does 1/world of the FLOPs.
"""
from __future__ import annotations

from zo2bench.config import DTYPE_BYTES

REFERENCE = "../shared/reference/multi-gpu.md"
H2D_TOTAL_GB_S = {1: 54.8, 2: 104.0, 4: 145.6}  # GPUs copying at once -> host-to-device GB/s in total
NVLINK_GB_S = 391.5


def multi_gpu_rates() -> dict:
    return {"h2d_total_gb_per_s": {str(k): v for k, v in H2D_TOTAL_GB_S.items()},
            "h2d_per_gpu_gb_per_s": {str(k): round(v / k, 2) for k, v in H2D_TOTAL_GB_S.items()},
            "nvlink_gb_per_s": NVLINK_GB_S, "source": REFERENCE}


def dist_floors(spec, dtype: str, mode: str, dims: dict, compute_1gpu_s: float | None = None,
                device: str = "cuda") -> dict:
    """The floors of one configuration; `dims`: world_size, ranks_per_host, weight_shard (ParallelDims.as_dict).
    On device "cpu" (gloo ranks) nothing crosses PCIe or NVLink: the transfer floor is 0."""
    world, n, w = dims["world_size"], dims.get("ranks_per_host", dims["world_size"]), dims.get("weight_shard", 1)
    block_bytes = spec.layers * spec.block_params() * DTYPE_BYTES[dtype]
    rate = H2D_TOTAL_GB_S.get(n)
    missing = []
    if device == "cpu":
        host_bytes, how = 0, "CPU ranks: no PCIe or NVLink"
    elif mode == "mezo":
        host_bytes, how = 0, "resident: nothing crosses PCIe"
    elif w > 1:
        host_bytes, how = n // w * block_bytes, f"{n // w} weight group(s) upload P once each, then all-gather"
    else:
        host_bytes, how = n * block_bytes, f"each of {n} ranks uploads P"
    pcie_s = 0.0 if host_bytes == 0 else (host_bytes / (rate * 1e9) if rate else None)
    if pcie_s is None:
        missing.append(f"no measured host-to-device rate for {n} GPUs copying at once in {REFERENCE}")
    gather_bytes = (w - 1) / w * block_bytes if w > 1 and device != "cpu" else 0.0
    gather_s = gather_bytes / (NVLINK_GB_S * 1e9)
    transfer_s = None if pcie_s is None else pcie_s + gather_s
    compute_s = compute_1gpu_s / world if compute_1gpu_s is not None else None
    known = [x for x in (transfer_s, compute_s) if x is not None]
    floor = max(known) if known and transfer_s is not None else None
    if floor == 0:  # nothing crosses a link and the compute floor is unknown: no bound worth the name
        floor = None
    binds = None if floor is None else ("transfer" if transfer_s >= (compute_s or 0) else "compute")
    return {"block_bytes": block_bytes, "host_to_device_bytes": host_bytes, "how": how,
            "gather_bytes_per_rank": gather_bytes, "h2d_total_gb_per_s": rate,
            "h2d_per_gpu_gb_per_s": None if rate is None else rate / n, "nvlink_gb_per_s": NVLINK_GB_S,
            "pcie_s": pcie_s, "gather_s": gather_s, "transfer_s": transfer_s, "compute_s": compute_s,
            "floor_s": floor, "binds": binds, "missing": missing, "source": REFERENCE}
