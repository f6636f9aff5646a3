"""The one place a device name and a dtype name become torch objects.

    dev = resolve_device("auto")        # torch.device("cuda", 0) with a GPU, else torch.device("cpu")
    resolve_device("cuda:1")            # UserError if this machine has fewer than two GPUs
    device_name(dev)                    # "cuda:0" / "cpu": always with an explicit index, as records store it
    torch_dtype("fp16"), default_dtype(dev)   # torch.float16; "fp16" on a GPU, "fp32" on a CPU

CUDA devices come back with an explicit index, so that every later call (allocator counters, streams,
NVML matching) talks about the same GPU; "cuda" means cuda:0. Resolving does not initialise CUDA.
"""
from __future__ import annotations

from zo2bench.config import DTYPES, check_dtype
from zo2bench.errors import UserError


def resolve_device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device '{name}'; use auto, cpu, cuda or cuda:N")
    if dev.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but this machine has no CUDA GPU (torch {torch.__version__}); "
                        f"use --device cpu")
    count = torch.cuda.device_count()
    index = dev.index or 0  # not torch.cuda.current_device(): that would initialise CUDA in a sweep's parent
    if index >= count:
        raise UserError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


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


__all__ = ["DTYPES", "resolve_device", "device_name", "torch_dtype", "default_dtype", "resolve_dtype"]
