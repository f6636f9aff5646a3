"""torch's caching-allocator counters, one phase at a time.

    reset_peak("cuda:0")
    ...                                   # build, warm-up or the measured steps
    read_peak("cuda:0")   # {"torch_peak_allocated_bytes", "torch_peak_reserved_bytes",
                          #  "torch_allocated_bytes", "torch_reserved_bytes"}

allocated = bytes in live tensors; reserved = what the caching allocator holds from CUDA (live tensors
plus freed blocks it keeps for reuse). torch keeps no such counters for CPU memory, so on a CPU
device every value is None ("not measured"), never 0.
"""
from __future__ import annotations

KEYS = ("torch_peak_allocated_bytes", "torch_peak_reserved_bytes", "torch_allocated_bytes", "torch_reserved_bytes")


def _cuda(device):
    """The torch.device when `device` is a usable CUDA device, else None."""
    import torch

    d = torch.device(device)
    if d.type != "cuda" or not torch.cuda.is_available():
        return None
    # The allocator's counters exist only once CUDA is initialised: "cuda" got that from current_device(),
    # but "cuda:1" reached reset_peak_memory_stats first and failed ("Invalid device argument").
    torch.cuda.init()
    return d if d.index is not None else torch.device("cuda", torch.cuda.current_device())


def reset_peak(device) -> None:
    """Start a new peak window: the peaks read next cover only what runs from here."""
    import torch

    d = _cuda(device)
    if d is not None:
        torch.cuda.reset_peak_memory_stats(d)


def read_peak(device) -> dict:
    """Peaks since the last reset_peak and the current values, in bytes; None on CPU."""
    import torch

    d = _cuda(device)
    if d is None:
        return dict.fromkeys(KEYS)
    # Host-side counters: the allocator books memory when the op is enqueued, so no synchronize is needed.
    return {
        "torch_peak_allocated_bytes": torch.cuda.max_memory_allocated(d),
        "torch_peak_reserved_bytes": torch.cuda.max_memory_reserved(d),
        "torch_allocated_bytes": torch.cuda.memory_allocated(d),
        "torch_reserved_bytes": torch.cuda.memory_reserved(d),
    }
