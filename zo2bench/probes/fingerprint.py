"""What machine and software a result came from, and a short name to group results per machine.

    fp = fingerprint()          # flat JSON-serialisable dict; takes well under a second, never raises
    machine_id(fp)              # "h100-80gb-hbm3", or "cpu-amd-epyc-7763-64-core-128c" without a GPU

GPU fields are None (and "gpu" is None) where there is no GPU or NVML, never 0. The GPU described is
torch's `device` (default: its current CUDA device), matched in NVML by UUID when CUDA is already
initialised; fingerprint() does not initialise CUDA itself, to stay fast, and then goes by
CUDA_VISIBLE_DEVICES. Sizes are bytes. The PCIe generation "current" drops while the GPU idles;
"max" is what the GPU and slot can negotiate.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import socket
import subprocess
from pathlib import Path

import zo2bench

GPU_KEYS = (
    "gpu", "gpu_count", "gpu_total_memory_bytes", "gpu_uuid", "gpu_bus_id", "gpu_matched_by",
    "gpu_driver_version", "gpu_driver_cuda_version", "pcie_gen_current", "pcie_gen_max",
    "pcie_width_current", "pcie_width_max",
)
# Arm cores name themselves only by part number in /proc/cpuinfo: (implementer, part) -> name
_ARM_PARTS = {("0x41", "0xd0c"): "Neoverse-N1", ("0x41", "0xd40"): "Neoverse-V1",
              ("0x41", "0xd49"): "Neoverse-N2", ("0x41", "0xd4f"): "Neoverse-V2"}


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None
    fields = dict(re.findall(r"^([^\t:\n]+?)\s*:\s*(.*)$", text, re.M)[:64])  # the first processor suffices
    for key in ("model name", "Model Name", "cpu model"):
        if fields.get(key):
            return fields[key].strip()
    part = _ARM_PARTS.get((fields.get("CPU implementer"), fields.get("CPU part")))
    return part or fields.get("Hardware") or platform.processor() or None


def _numa_nodes() -> int | None:
    try:
        return sum(1 for p in Path("/sys/devices/system/node").iterdir() if re.fullmatch(r"node\d+", p.name)) or None
    except OSError:
        return None


def _os_name() -> str:
    try:
        pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        if pretty:
            return pretty.group(1)
    except OSError:
        pass
    return platform.platform()


def _host() -> dict:
    import psutil

    return {
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_logical_count": os.cpu_count(),
        "cpu_physical_count": psutil.cpu_count(logical=False),
        "host_memory_bytes": psutil.virtual_memory().total,
        "numa_nodes": _numa_nodes(),
        "os": _os_name(),
        "kernel": platform.release(),
        "machine": platform.machine(),
    }


def _version(dist: str) -> str | None:
    try:  # metadata, not import: importing transformers alone takes seconds
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _software() -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "torch": torch.__version__,
        "torch_cuda_version": torch.version.cuda,  # what torch was built against; None for CPU builds
        "transformers": _version("transformers"),
        "numpy": _version("numpy"),
        "zo2bench": zo2bench.__version__,
    }


def git_info() -> dict:
    root = Path(__file__).resolve().parents[2]
    out = {"git_commit": None, "git_dirty": None, "git_source": None}
    # Whoever copies a checkout to another machine says which commit it is: ZO2BENCH_GIT_COMMIT and
    # ZO2BENCH_GIT_DIRTY (1/0). This wins over a .git found there, which may be a stale copy (the GPU
    # machine's tree once carried a .git of an older HEAD and reported it as dirty).
    if os.environ.get("ZO2BENCH_GIT_COMMIT"):
        out["git_commit"] = os.environ["ZO2BENCH_GIT_COMMIT"]
        out["git_dirty"] = os.environ.get("ZO2BENCH_GIT_DIRTY") == "1"
        out["git_source"] = "environment"
        return out
    if not (root / ".git").exists():  # an installed copy: do not report some enclosing repo's commit
        return out

    def git(*args) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=2, check=True).stdout.strip()

    try:
        out["git_commit"] = git("rev-parse", "HEAD")
        out["git_dirty"] = bool(git("status", "--porcelain"))
        out["git_source"] = "git"
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _gpu(device: str | None) -> dict:
    from zo2bench.probes.nvml import find_gpu, load_nvml

    out = dict.fromkeys(GPU_KEYS)
    out["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        nv = load_nvml()
    except Exception:
        return out
    try:
        out["gpu_count"] = nv.nvmlDeviceGetCount()
        out["gpu_driver_version"] = _text(nv.nvmlSystemGetDriverVersion())
        v = nv.nvmlSystemGetCudaDriverVersion()  # e.g. 12040 -> "12.4"
        out["gpu_driver_cuda_version"] = f"{v // 1000}.{v % 1000 // 10}"
        h, how = find_gpu(nv, device or "cuda", init_cuda=False)
        if h is None:
            return out
        out["gpu_matched_by"] = how
        out["gpu"] = _text(nv.nvmlDeviceGetName(h))
        out["gpu_total_memory_bytes"] = nv.nvmlDeviceGetMemoryInfo(h).total
        out["gpu_uuid"] = _text(nv.nvmlDeviceGetUUID(h))
        for key, fn in (("gpu_bus_id", lambda: _text(nv.nvmlDeviceGetPciInfo(h).busId)),
                        ("pcie_gen_current", lambda: nv.nvmlDeviceGetCurrPcieLinkGeneration(h)),
                        ("pcie_gen_max", lambda: nv.nvmlDeviceGetMaxPcieLinkGeneration(h)),
                        ("pcie_width_current", lambda: nv.nvmlDeviceGetCurrPcieLinkWidth(h)),
                        ("pcie_width_max", lambda: nv.nvmlDeviceGetMaxPcieLinkWidth(h))):
            try:
                out[key] = fn()
            except nv.NVMLError:  # e.g. MIG instances have no PCIe link of their own
                pass
    finally:
        nv.nvmlShutdown()
    return out


def _text(s) -> str:
    return s.decode() if isinstance(s, bytes) else str(s)


def fingerprint(device: str | None = None) -> dict:
    """Machine and software description; a part that fails leaves its keys None and a line in "errors"."""
    fp: dict = {}
    errors = []
    for part in (_host, _software, git_info, lambda: _gpu(device)):
        try:
            fp.update(part())
        except Exception as e:  # a half fingerprint is worth more than a failed run
            errors.append(f"{getattr(part, '__name__', 'part')}: {e!r}")
    for key in GPU_KEYS:
        fp.setdefault(key, None)
    if errors:
        fp["errors"] = errors
    return fp


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    text = re.sub(r"@.*$|\b(cpu|processor)\b", "", text)  # the clock is in the model number anyway
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def machine_id(fp: dict) -> str:
    """Short lowercase [a-z0-9-] name: the GPU model when there is one, else CPU model and core count."""
    if fp.get("gpu"):
        slug = _slug(re.sub(r"^nvidia\s+", "", fp["gpu"], flags=re.I))
        return slug[:48].strip("-") or "gpu"
    cpu = _slug(fp.get("cpu_model") or "")[:40].strip("-") or "unknown"
    n = fp.get("cpu_logical_count")
    return f"cpu-{cpu}-{n}c" if n else f"cpu-{cpu}"
