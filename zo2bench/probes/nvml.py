"""GPU probes through NVML (pynvml): a background sampler, and finding torch's GPU among NVML's.

    sampler = NvmlSampler(device="cuda:0", interval_s=0.02)
    sampler.start()
    ...                                   # the work being measured
    summary = sampler.stop()              # {"n_samples", "fields": {name: {"peak", "mean"}}, "energy_j" delta, ...}

One sample is a handful of NVML calls; ctypes drops the GIL inside each, so the training thread is
held up only by the few Python lines around them. The flip side: while the training thread runs
pure Python without pause, each call costs the sampler up to sys.getswitchinterval() (5 ms) to get
the GIL back, and the achieved rate (ProbeSet's "sample_rate_hz") falls below 1/interval_s; steps
that wait on the GPU or on copies, as offloaded training does, leave the GIL free. NVML numbers its GPUs in PCI order and ignores
CUDA_VISIBLE_DEVICES, so "cuda:0" is resolved through torch's UUID for that index, never by its digit.

Where NVML, the GPU or a single field is unavailable the field is None and listed in not_measured,
with one warning saying why; a call that fails now and then leaves a None and counts in read_errors.
Caveats: power_w is the driver's reading (on recent GPUs averaged over about a second), utilisation
is over the driver's own window (1/6 s to 1 s), and PCIe throughput is measured by the driver over
20 ms windows, which is why it is read on a side thread of its own.
"""
from __future__ import annotations

import os
import threading
import time

from zo2bench.probes.host import PeriodicSampler, descendant_pids

_KIB = 1024  # NVML reports PCIe throughput in KB/s, counted in units of 1024 bytes


def load_nvml():
    """pynvml, initialised (NVML counts inits; pair with nvmlShutdown). Raises when unavailable."""
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _text(s) -> str:
    return s.decode() if isinstance(s, bytes) else str(s)


def _norm_uuid(u) -> str:
    u = _text(u).strip().lower()
    for prefix in ("gpu-", "mig-"):
        if u.startswith(prefix):
            u = u[len(prefix):]
    return u


def _bus_triple(bus_id: str) -> tuple[int, int, int] | None:
    """'00000000:17:00.0' -> (0, 0x17, 0): NVML and torch pad the domain differently."""
    try:
        domain, bus, rest = _text(bus_id).split(":")
        return int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
    except ValueError:
        return None


def _all_handles(pynvml):
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        yield h
        try:  # MIG instances: CUDA sees them as devices with their own UUIDs
            for j in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
                try:
                    yield pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                except pynvml.NVMLError:
                    pass
        except pynvml.NVMLError:
            pass


def find_gpu(pynvml, device: str = "cuda", init_cuda: bool = True):
    """(NVML handle, how it was matched) for a torch CUDA device, or (None, why not).

    With init_cuda=False and CUDA not yet initialised (the fingerprint, which must stay fast), the
    match falls back to CUDA_VISIBLE_DEVICES, assuming CUDA's order equals NVML's PCI order.
    """
    import torch

    d = torch.device(device)
    if d.type != "cuda":
        return None, f"device {device!r} is not a CUDA device"
    uuid = bus = nvml_index = None
    if init_cuda or torch.cuda.is_initialized():
        if not torch.cuda.is_available():
            return None, "torch sees no CUDA device"
        index = d.index if d.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        uuid = _norm_uuid(getattr(props, "uuid", "")) or None
        if hasattr(props, "pci_bus_id"):
            bus = (props.pci_domain_id, props.pci_bus_id, props.pci_device_id)
    else:
        index = d.index or 0
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        entries = [e.strip() for e in visible.split(",")] if visible is not None else None
        entry = str(index) if entries is None else (entries[index] if index < len(entries) else "")
        if entry.lower().startswith(("gpu-", "mig-")):
            uuid = _norm_uuid(entry)  # CUDA accepts any unique UUID prefix here
        elif entry.isdigit():
            nvml_index = int(entry)
    handles = list(_all_handles(pynvml))
    if uuid:
        for h in handles:
            if _norm_uuid(pynvml.nvmlDeviceGetUUID(h)).startswith(uuid):
                return h, "uuid"
    if bus:
        for h in handles:
            try:
                if _bus_triple(pynvml.nvmlDeviceGetPciInfo(h).busId) == bus:
                    return h, "pci bus id"
            except pynvml.NVMLError:
                pass
    if nvml_index is not None and nvml_index < pynvml.nvmlDeviceGetCount():
        return pynvml.nvmlDeviceGetHandleByIndex(nvml_index), "CUDA_VISIBLE_DEVICES index"
    return None, f"no NVML device matches torch's {device} (uuid={uuid}, bus={bus})"


def _unsupported(pynvml, e: Exception) -> bool:
    """An error that will not go away by asking again: stop asking and report the field not measured."""
    codes = {pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_NO_PERMISSION, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND}
    return isinstance(e, pynvml.NVMLError) and getattr(e, "value", None) in codes


class NvmlSampler(PeriodicSampler):
    """Samples one GPU through NVML; see the module docstring. include_children adds child pids' memory."""

    fields = (
        "gpu_device_used_bytes", "gpu_process_used_bytes", "gpu_util_percent", "gpu_memory_util_percent",
        "power_w", "energy_j", "pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s", "sm_clock_mhz", "mem_clock_mhz",
    )
    counters = frozenset({"energy_j"})  # joules since open(); a window's energy is last - first

    def __init__(self, device: str = "cuda", interval_s: float = 0.02, include_children: bool = False,
                 t0: float | None = None):
        super().__init__(interval_s, t0)
        self.device = device
        self.include_children = include_children
        self.gpu_uuid = self.gpu_bus_id = self.matched_by = None
        self._nvml = self._handle = None
        self._groups: list = []  # (fields, fn returning a tuple of values)
        self._pids = {os.getpid()}
        self._pids_at = 0.0
        self._process_seen = False
        self._pcie = (None, None)
        self._pcie_stop = threading.Event()
        self._pcie_thread: threading.Thread | None = None

    def _none_measured(self, why: str, warn: bool = True) -> None:
        for f in self.fields:
            self.not_measured[f] = why
        if warn:
            self.warn_once("nvml", f"GPU metrics not measured: {why}")

    def open(self) -> None:
        if not str(self.device).startswith("cuda"):
            return self._none_measured(f"device is {self.device}", warn=False)
        try:
            self._nvml = load_nvml()
        except Exception as e:
            return self._none_measured(f"NVML unavailable ({e})")
        try:
            self._handle, self.matched_by = find_gpu(self._nvml, self.device)
        except Exception as e:
            self._handle, self.matched_by = None, f"finding the GPU failed: {e!r}"
        if self._handle is None:
            self._close_nvml()
            return self._none_measured(self.matched_by)
        nv, h = self._nvml, self._handle
        try:
            self.gpu_uuid = _text(nv.nvmlDeviceGetUUID(h))
            self.gpu_bus_id = _text(nv.nvmlDeviceGetPciInfo(h).busId)
        except nv.NVMLError:
            pass  # MIG instances have no bus id of their own
        candidates = [
            (("gpu_device_used_bytes",), lambda: (nv.nvmlDeviceGetMemoryInfo(h).used,)),
            (("gpu_process_used_bytes",), lambda: (self._process_bytes(),)),
            (("gpu_util_percent", "gpu_memory_util_percent"), self._utilisation),
            (("power_w",), lambda: (nv.nvmlDeviceGetPowerUsage(h) / 1000.0,)),  # mW -> W
            (("sm_clock_mhz",), lambda: (nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),)),
            (("mem_clock_mhz",), lambda: (nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),)),
        ]
        try:
            energy0_mj = nv.nvmlDeviceGetTotalEnergyConsumption(h)  # mJ since the driver loaded
            candidates.append((("energy_j",),
                               lambda: ((nv.nvmlDeviceGetTotalEnergyConsumption(h) - energy0_mj) / 1000.0,)))
        except Exception as e:
            self.not_measured["energy_j"] = f"total energy counter: {e}"
        unsupported = []
        for names, fn in candidates:  # one trial read decides which fields this GPU supports
            try:
                fn()
                self._groups.append((names, fn))
            except Exception as e:
                if not _unsupported(nv, e):  # transient: keep asking, read() counts the failures
                    self._groups.append((names, fn))
                    continue
                for n in names:
                    self.not_measured[n] = f"NVML: {e}"
                unsupported += names
        try:
            nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES)
            self._pcie_stop.clear()
            self._pcie_thread = threading.Thread(target=self._pcie_loop, name="NvmlPcie", daemon=True)
            self._pcie_thread.start()
            self._groups.append((("pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s"), lambda: self._pcie))
        except Exception as e:
            for n in ("pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s"):
                self.not_measured[n] = f"NVML: {e}"
                unsupported.append(n)
        if "energy_j" in self.not_measured:
            unsupported.append("energy_j")
        if unsupported:
            self.warn_once("unsupported", f"GPU {self.gpu_uuid}: not measured: {', '.join(unsupported)}")

    def _utilisation(self):
        u = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
        return u.gpu, u.memory

    def _process_bytes(self):
        """This process's (and optionally its children's) memory on the GPU; None while NVML does not list it."""
        if self.include_children and time.perf_counter() - self._pids_at > 1.0:  # children change rarely
            kids = descendant_pids(os.getpid())
            if kids is None:
                import psutil

                kids = [c.pid for c in psutil.Process().children(recursive=True)]
            self._pids = {os.getpid(), *kids}
            self._pids_at = time.perf_counter()
        used = [p.usedGpuMemory for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
                if p.pid in self._pids and p.usedGpuMemory is not None]
        if not used:
            return None
        self._process_seen = True
        return sum(used)

    def _pcie_loop(self) -> None:
        nv, h = self._nvml, self._handle
        while not self._pcie_stop.is_set():
            t = time.perf_counter()
            try:  # each call blocks ~20 ms inside the driver, outside the GIL
                tx = nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES) * _KIB
                rx = nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_RX_BYTES) * _KIB
                self._pcie = (tx, rx)
            except Exception as e:
                self._pcie = (None, None)
                self._count_error(("pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s"), e)
            self._pcie_stop.wait(max(0.0, self.interval_s - (time.perf_counter() - t)))

    def _count_error(self, names, e: Exception) -> None:
        for n in names:
            self.read_errors[n] = self.read_errors.get(n, 0) + 1
        self.warn_once(names[0], f"reading {', '.join(names)} failed (recorded as None): {e!r}")

    def read(self) -> dict:
        row = {}
        for names, fn in self._groups:
            try:
                row.update(zip(names, fn()))
            except Exception as e:
                self._count_error(names, e)
        return row

    def _close_nvml(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None

    def close(self) -> None:
        if self._pcie_thread is not None:
            self._pcie_stop.set()
            self._pcie_thread.join()
            self._pcie_thread = None
        if self._handle is not None and not self._process_seen and "gpu_process_used_bytes" not in self.not_measured:
            self.not_measured["gpu_process_used_bytes"] = (
                "this process never appeared in NVML's process list (no CUDA context yet, "
                "or a container's PID namespace hides the host pid)")
        self._close_nvml()

    def summary(self, start_s: float = 0.0, end_s: float = float("inf")) -> dict:
        return super().summary(start_s, end_s) | {
            "device": self.device, "gpu_uuid": self.gpu_uuid, "gpu_bus_id": self.gpu_bus_id, "matched_by": self.matched_by,
        }
