"""The hardware class of a result: which results may be compared for time and memory at all.

    cls = hardware_class(row["fingerprint"])   # {"gpu": "NVIDIA H100 80GB HBM3", "gpu_count": 1, ...}
    class_name(cls)                           # "h100-80gb-hbm3-x1-pcie5x16-driver580.159.04-torch2.11.0-cu130-cuda13.0"
    differences(cls_a, cls_b)                 # [("gpu_driver_version", "580.159.04", "575.57.08"), ...]

Two machines are of one class when these fingerprint fields are equal: the GPU model and how many GPUs
the host has, the PCIe generation and lane width the GPU's link can negotiate (the "max" fields: the
current ones drop while the GPU idles), the NVIDIA driver, and the torch build with the CUDA version it
was compiled against. Hostnames, GPU UUIDs, bus ids, host memory and the CPU model of a GPU host are not
part of it, so two VMs of one instance type are one class. Without a GPU the class is the CPU model, its
logical core count and the torch build instead.
"""
from __future__ import annotations

import re

from zo2bench.probes.fingerprint import machine_id

GPU_FIELDS = ("gpu", "gpu_count", "pcie_gen_max", "pcie_width_max", "gpu_driver_version", "torch",
              "torch_cuda_version")
CPU_FIELDS = ("cpu_model", "cpu_logical_count", "torch")
LABELS = {"gpu": "GPU model", "gpu_count": "GPU count", "pcie_gen_max": "PCIe generation",
          "pcie_width_max": "PCIe width", "gpu_driver_version": "driver", "torch": "torch",
          "torch_cuda_version": "torch CUDA version", "cpu_model": "CPU model", "cpu_logical_count": "CPU count"}


def hardware_class(fp: dict) -> dict:
    """The fields of a fingerprint that define its class (GPU fields with a GPU, CPU fields without)."""
    fields = GPU_FIELDS if fp.get("gpu") else CPU_FIELDS
    return {k: fp.get(k) for k in fields}


def class_name(cls: dict) -> str:
    """A directory name for results/baselines/: lowercase letters, digits, '.', '-'."""
    if cls.get("gpu"):
        base = machine_id({"gpu": cls["gpu"]})
        parts = [base, f"x{cls.get('gpu_count')}", f"pcie{cls.get('pcie_gen_max')}x{cls.get('pcie_width_max')}",
                 f"driver{cls.get('gpu_driver_version')}", f"torch{cls.get('torch')}",
                 f"cuda{cls.get('torch_cuda_version')}"]
    else:
        base = machine_id({"cpu_model": cls.get("cpu_model"), "cpu_logical_count": cls.get("cpu_logical_count")})
        parts = [base, f"torch{cls.get('torch')}"]
    return re.sub(r"[^a-z0-9.]+", "-", "-".join(parts).lower()).strip("-")


def differences(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """(field, a's value, b's value) for each class field that differs (a GPU class against a CPU one too)."""
    return [(k, a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def describe(cls: dict) -> str:
    """For people: "NVIDIA H100 80GB HBM3 x1, PCIe 5 x16, driver 580.159.04, torch 2.11.0+cu130 (CUDA 13.0)"."""
    c = cls.get
    if c("gpu"):
        return (f"{c('gpu')} x{c('gpu_count')}, PCIe {c('pcie_gen_max')} x{c('pcie_width_max')}, "
                f"driver {c('gpu_driver_version')}, torch {c('torch')} (CUDA {c('torch_cuda_version')})")
    return f"{cls.get('cpu_model')} ({cls.get('cpu_logical_count')} logical CPUs), torch {cls.get('torch')}, no GPU"
