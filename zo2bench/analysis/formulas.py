"""The formulas of design document 002 ("ZO2 Scalability Projections and Analysis"), as written.

Each function is one formula with the document's constants as named, documented defaults. They are
models to test, not facts: where the document is ambiguous or disagrees with its own tables, the
docstring says so (and a claim note in claims/002.toml records the check). Sizes come back in bytes and
times in seconds; the documents' "GB" is read through units.py (decimal unless `reading` says binary).

    from zo2bench.analysis import formulas as f
    f.gpu_memory(175e9, layers=96)              # 1.1: bytes, the formula as written (~10.4 GB)
    f.gpu_memory_terms(175e9, layers=96)        # the same, term by term
    f.step_time(t_embed=2e-3, t_block=35e-3, t_head=3e-3, layers=32)   # 2.1: seconds per ZO step
    f.efficiency(t_compute=1.0, t_transfer=0.1)  # 2.3
    f.required_pcie_bandwidth(block_bytes=3.6e9, t_compute_per_block=0.1)  # 3.2: bytes/s
    f.iterations(1.3e9)                         # 4.1
    f.energy_per_token(p_gpu_w=300, t_per_token_s=1e-3)                    # 5.2: joules
    f.max_model_size()                          # 6.3: 9.6e12 parameters, the document's arithmetic

exact.py evaluates the same terms from exact parameter counts of the catalog.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from zo2bench.analysis.units import DEFAULT_READING, to_base

# -- 1.1 GPU memory composition ----------------------------------------------------------------------
EMBED_FRACTION = 0.02    # 1.1 "M_embeddings: Token/position embeddings ≈ 0.02n" (bytes, n in parameters)
HEAD_FRACTION = 0.02     # 1.1 "M_head: Language model head ≈ 0.02n"
ACTIVE_BLOCKS = 2        # 1.1 "k: Number of active blocks (1-2)"; 1.4 shows two (active + next)
BLOCK_DIVISOR = 4        # 1.1 "M_block: Memory per transformer block = n/(L×4)"
WORKSPACE_GB = 2.0       # 1.1 "M_workspace: Temporary buffers ≈ 2GB"
OVERHEAD_GB = 0.5        # 1.1 "M_overhead: PyTorch overhead ≈ 0.5GB"
# Implied by the 1.2 table (every row; tests/test_claims.py checks it), stated nowhere as a formula:
BACKPROP_BYTES_PER_PARAM = 16   # "GPU Mem (Backprop)" = 16 B/param (fp32 weights+grads+2 Adam moments)
HOST_BYTES_PER_PARAM = 4        # "CPU RAM" = 4 B/param (fp32 weights); 1.4: "700 GB FP32 / 350 GB FP16"


@dataclass(frozen=True)
class MemoryTerms:
    """The five terms of formula 1.1, in bytes."""

    embeddings: float
    head: float
    blocks: float        # k x M_block
    workspace: float
    overhead: float

    @property
    def total(self) -> float:
        return self.embeddings + self.head + self.blocks + self.workspace + self.overhead


def gpu_memory_terms(n_params: float, layers: int, *, active_blocks: int = ACTIVE_BLOCKS,
                     embed_fraction: float = EMBED_FRACTION, head_fraction: float = HEAD_FRACTION,
                     block_divisor: float = BLOCK_DIVISOR, workspace_gb: float = WORKSPACE_GB,
                     overhead_gb: float = OVERHEAD_GB, reading: str = DEFAULT_READING) -> MemoryTerms:
    """002 section 1.1: GPU_Memory(n) = M_embeddings + M_head + k×M_block + M_workspace + M_overhead.

    Read literally, with the 0.02n terms in bytes (the only reading under which 1.4's "Embeddings (3.5 GB)"
    for 175B equals 0.02n). The document disagrees with itself about M_block:
    - 1.1 writes M_block = n/(L×4): 0.46 GB for OPT-175B;
    - 1.4 shows "Active Block (1.8 GB)" = n/L bytes, four times the formula;
    - A.1 computes per_block = n×4/L (fp32, 7.3 GB) and adds 2×per_block/4 "(with FP16 blocks)" = n/L
      bytes per block, though FP16 halves fp32 (2×per_block/2 would be 7.3 GB).
    A block of n/L parameters in fp16 is 2n/L bytes (3.6 GB for OPT-175B). block_divisor=1 gives the
    1.4/A.1 figure; exact.py gives the counted one. The 1.2 table follows none of these: its small
    models equal the full fp32 weights (OPT-125M "0.5 GB" = 4 B/param) and it omits the 2.5 GB of
    workspace + overhead (see the claim notes of 002-1.2-*-gpu-mem-zo2).
    """
    gb = to_base(1.0, "GB", reading)
    return MemoryTerms(
        embeddings=embed_fraction * n_params,
        head=head_fraction * n_params,
        blocks=active_blocks * n_params / (layers * block_divisor),
        workspace=workspace_gb * gb,
        overhead=overhead_gb * gb,
    )


def gpu_memory(n_params: float, layers: int, **kw) -> float:
    """002 section 1.1 as written, in bytes (keywords as gpu_memory_terms)."""
    return gpu_memory_terms(n_params, layers, **kw).total


def gpu_memory_backprop(n_params: float) -> float:
    """The 1.2 table's "GPU Mem (Backprop)" column: 16 bytes per parameter (implied, every row)."""
    return BACKPROP_BYTES_PER_PARAM * n_params


def host_memory(n_params: float, bytes_per_param: float = HOST_BYTES_PER_PARAM) -> float:
    """The 1.2 table's "CPU RAM" column: 4 bytes per parameter (fp32; 2 for the FP16 figure of 1.4)."""
    return bytes_per_param * n_params


# -- 2.1 throughput with overlap ---------------------------------------------------------------------
@dataclass(frozen=True)
class StepTime:
    """The terms of formula 2.1, in seconds per ZO step (two forward passes)."""

    forward: float
    transfer: float
    sync: float

    @property
    def total(self) -> float:
        return self.forward + self.transfer + self.sync

    @property
    def it_per_s(self) -> float:
        return 1.0 / self.total


def transfer_time(t_upload: float, t_offload: float, t_compute: float, *, overlap: str = "serial") -> float:
    """002 section 2.1: T_transfer = max(0, T_upload + T_offload − T_compute) ("serial", as written).

    The document sums the two directions, as if uploads and offloads shared one half-duplex link.
    PCIe is full duplex: overlap="duplex" is the alternative max(0, max(T_upload, T_offload) − T_compute),
    not in the document. The document does not say whether the times are per block or per step; pass
    per-step totals (L × per-block times) to get seconds per step.
    """
    if overlap == "serial":
        return max(0.0, t_upload + t_offload - t_compute)
    if overlap == "duplex":
        return max(0.0, max(t_upload, t_offload) - t_compute)
    raise ValueError(f"overlap must be 'serial' or 'duplex', not {overlap!r}")


def step_time(t_embed: float, t_block: float, t_head: float, layers: int, *, t_upload: float = 0.0,
              t_offload: float = 0.0, t_compute: float | None = None, sync_overhead: float = 0.0,
              overlap: str = "serial") -> StepTime:
    """002 section 2.1: Throughput = 1 / (T_forward + T_transfer + T_sync), with
    T_forward = 2 × (T_embed + L×T_block + T_head), T_transfer as transfer_time(), T_sync = 2 × sync_overhead.

    t_compute defaults to T_forward (the compute that hides the copies). Appendix A.2 (OPT-6.7B, RTX 3090,
    batch 1, T 2048) uses this with the transfer hidden: 2 × (2 + 32×35 + 3) ms = 2250 ms per step, then
    2048 tokens / 2.25 s = 910 tokens/s; table 2.2 gives 768 tokens/s for the same model (0.84× that).
    """
    forward = 2.0 * (t_embed + layers * t_block + t_head)
    transfer = transfer_time(t_upload, t_offload, forward if t_compute is None else t_compute, overlap=overlap)
    return StepTime(forward=forward, transfer=transfer, sync=2.0 * sync_overhead)


def tokens_per_s(step: StepTime | float, batch: int, seq: int) -> float:
    """Tokens per second of a step time: batch × seq tokens per ZO step (A.2's definition)."""
    total = step.total if isinstance(step, StepTime) else step
    return batch * seq / total


# -- 2.3 scaling efficiency --------------------------------------------------------------------------
def efficiency(t_compute: float, t_transfer: float) -> float:
    """002 section 2.3: Efficiency = T_compute / (T_compute + T_transfer).

    With T_transfer the exposed (not hidden) transfer of 2.1, this is the step time without offloading
    over the step time with it: measured, mezo's step time over zo2's at the same cell.
    """
    return t_compute / (t_compute + t_transfer)


# -- 3.2 PCIe bandwidth ------------------------------------------------------------------------------
def required_pcie_bandwidth(block_bytes: float, t_compute_per_block: float) -> float:
    """002 section 3.2: Required PCIe Bandwidth = (2 × Block_Size) / T_compute_per_block, in bytes/s.

    The 2 is one upload and one offload per block per step, counted on one link; on a full-duplex link
    each direction needs half of it. Section 3.2's chart gives no legible figures; 6.1 states 200 GB/s
    for a 1T model without the T_compute_per_block behind it.
    """
    return 2.0 * block_bytes / t_compute_per_block


# -- 4.1 iterations to convergence -------------------------------------------------------------------
ITERATIONS_K = 1000.0        # 4.1 "k: Constant (empirically ~1000)"
ZO_LR = 1e-7                 # 4.1 "lr: Learning rate (typically 1e-7 for ZO)"
TASK_COMPLEXITY = {"simple": 1.0, "complex": 2.0}   # 4.1 "1.0 for simple, 2.0 for complex tasks"


def iterations(n_params: float, *, k: float = ITERATIONS_K, lr: float = ZO_LR, task_complexity: float = 1.0) -> float:
    """002 section 4.1: Iterations = k × sqrt(n) × (1/lr) × task_complexity.

    With the stated constants this is 1.1e14 iterations for OPT-125M, ten orders of magnitude above the
    4.1 table's 10,000. The table follows sqrt(n) (within about 12%) with k/lr ≈ 0.9, not 1000/1e-7:
    implied_iterations_constant() recovers it from a row.
    """
    return k * math.sqrt(n_params) / lr * task_complexity


def implied_iterations_constant(iterations_: float, n_params: float, task_complexity: float = 1.0) -> float:
    """The k/lr that makes formula 4.1 give `iterations_` for `n_params` (k/lr = 1e10 as stated)."""
    return iterations_ / (math.sqrt(n_params) * task_complexity)


# -- 5.2 energy per token ----------------------------------------------------------------------------
GPU_POWER_SAVING = 0.50      # 5.2 "50% less GPU power (no backward pass)"
CPU_POWER_EXTRA = 0.20       # 5.2 "20% additional CPU power (offloading)"


def energy_per_token(p_gpu_w: float, t_per_token_s: float, p_cpu_w: float = 0.0, t_transfer_s: float = 0.0) -> float:
    """002 section 5.2: Energy per Token = P_GPU × T_per_token + P_CPU × T_transfer, in joules.

    T_transfer is read as the transfer time per token. Per token of a step, not per token to
    convergence: ZO's extra iterations (4.1) do not enter it.
    """
    return p_gpu_w * t_per_token_s + p_cpu_w * t_transfer_s


def net_energy_savings(gpu_share: float, *, gpu_saving: float = GPU_POWER_SAVING,
                       cpu_extra: float = CPU_POWER_EXTRA) -> float:
    """5.2's "Net: 30-40% energy savings" from its two percentages, given the GPU's share of the energy.

    Read as "GPU energy -50%, CPU energy +20%", savings = gpu_share×0.5 − (1 − gpu_share)×0.2, which is
    30-40% only for a GPU share of 71-86%; the document does not state the share.
    """
    return gpu_share * gpu_saving - (1.0 - gpu_share) * cpu_extra


# -- 6.3 maximum model size --------------------------------------------------------------------------
MAX_GPU_MEM_GB = 80.0        # 6.3 "With H100 80GB"
MAX_OVERHEAD_GB = 5.0        # 6.3 "(80 - 5)"
FP16_COMPRESSION = 2.0       # 6.3 "FP16": ×2
MAX_LAYERS = 128             # 6.3 "128 layers"


def max_model_size(gpu_mem_gb: float = MAX_GPU_MEM_GB, overhead_gb: float = MAX_OVERHEAD_GB,
                   compression: float = FP16_COMPRESSION, num_layers: int = MAX_LAYERS) -> float:
    """002 section 6.3: Max_Model_Size = (GPU_Mem − Overhead) × Compression × Num_Layers / 2, in parameters.

    The document computes (80 − 5) × 2 × 128 / 2 = 9600 and calls it "9.6T parameters": the GB figures
    are taken as billions of parameters, so the result is returned ×1e9. Dimensionally, two fp16
    blocks in 75 GB hold 75e9 / (2 blocks × 2 bytes) = 18.75e9 parameters per block, 2.4e12 over 128
    layers: the FP16 "compression" multiplies where bytes per parameter should divide (a factor of 4).
    exact.max_params() gives the counted bound.
    """
    return (gpu_mem_gb - overhead_gb) * compression * num_layers / 2.0 * 1e9
