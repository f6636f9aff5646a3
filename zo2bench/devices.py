"""The one place a device name and a dtype name become torch objects.

    dev = resolve_device("auto")        # torch.device("cuda", 0) with a GPU, else torch.device("cpu")
    resolve_device("cuda:1")            # UserError if this machine has fewer than two GPUs
    device_name(dev)                    # "cuda:0" / "cpu": always with an explicit index, as records store it
    torch_dtype("fp16"), default_dtype(dev)   # torch.float16; "fp16" on a GPU, "fp32" on a CPU

CUDA devices come back with an explicit index, so that every later call (allocator counters, streams,
NVML matching) talks about the same GPU; "cuda" means cuda:0. Resolving does not initialise CUDA.
device_string() holds the rules for a given GPU count, for callers that describe a machine without torch.
"""
from __future__ import annotations

from zo2bench.config import DTYPES, check_dtype
from zo2bench.errors import UserError


def resolve_device(name: str):
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return torch.device(device_string(name, count, torch.__version__))


def device_string(name: str, cuda_count: int, torch_version: str = "") -> str:
    """The rules themselves, on a known GPU count (a sweep asks its machine description, not torch)."""
    if name == "auto":
        return "cuda:0" if cuda_count else "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N")
    if kind == "cpu":
        return "cpu"
    if not cuda_count:
        built = f" (torch {torch_version})" if torch_version else ""
        raise UserError(f"--device {name} asked for, but this machine has no CUDA GPU{built}; use --device cpu")
    i = int(index or 0)
    if i >= cuda_count:
        raise UserError(f"--device {name}: this machine has {cuda_count} CUDA device(s), "
                        f"cuda:0 to cuda:{cuda_count - 1}")
    return f"cuda:{i}"


def device_name(dev) -> str:
    return "cpu" if dev.type == "cpu" else f"cuda:{dev.index if dev.index is not None else 0}"


def torch_dtype(name: str):
    import torch

    check_dtype(name)
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def default_dtype(dev) -> str:
    """fp16 on a GPU (how ZO fine-tuning runs there); fp32 on a CPU, where half precision is slow and unusual."""
    return "fp16" if dev.type == "cuda" else "fp32"


def resolve_dtype(name: str, dev) -> str:
    if name == "auto":
        return default_dtype(dev)
    check_dtype(name)
    return name


__all__ = ["DTYPES", "resolve_device", "device_string", "device_name", "torch_dtype", "default_dtype", "resolve_dtype"]
