"""GPU probes through NVML (pynvml): a background sampler, and finding torch's GPU among NVML's.

    sampler = NvmlSampler(device="cuda:0", interval_s=0.02)
    sampler.start()
    ...                                   # the work being measured
    summary = sampler.stop()              # {"n_samples", "fields": {name: {"peak", "mean"}}, "energy_j" delta, ...}

Which field gets which rate (PeriodicSampler's two groups, host.py):
- fast group, every interval_s (50 Hz at the default 20 ms): gpu_device_used_bytes,
  gpu_util_percent and gpu_memory_util_percent (one call), power_w, sm_clock_mhz, mem_clock_mhz:
  five NVML calls a sample.
- slow group, on a thread of its own at most every slow_interval_s (PeriodicSampler's default 50 ms,
  20 Hz; a sweep cell's ProbeSet asks for 100 ms, 10 Hz): gpu_process_used_bytes (the process list,
  milliseconds a call and two calls a read), energy_j (the total-energy counter, 2.5 ms a call on the
  H100; a window's energy is last - first, so it needs no fast rate), and, only with pcie=True,
  pcie_tx/rx_bytes_per_s (each call blocks about 20 ms by design: the driver counts over a 20 ms
  window; a round then takes 40-50 ms).

The GIL: every pynvml call goes through ctypes, which gives up the GIL, and taking it back from a
busy Python thread costs up to sys.getswitchinterval() (5 ms): with all the calls on one thread a
sweep cell on the H100 sampled at 28 Hz for 50 asked (19 Hz against a fake NVML and a pure-Python
loop). So the fast group calls NVML's functions through ctypes.PYFUNCTYPE pointers that keep the
GIL (the training thread waits for the GIL meanwhile: microseconds), but only for a query whose
median at open() is at most HOLD_MAX_S, cheapest first while they fit HOLD_BUDGET_S together; a held
call later seen taking over DEMOTE_S (a driver lock, say) goes back to pynvml's GIL-releasing call
after DEMOTE_AFTER such calls. The summary's "nvml_queries" says, per query, which way it went and
its median at open() (NVML calls that talk to the GPU's firmware can take milliseconds).

NVML numbers its GPUs in PCI order and ignores CUDA_VISIBLE_DEVICES, so "cuda:0" is resolved through
torch's UUID for that index, never by its digit.

Where NVML, the GPU or a single field is unavailable the field is None and listed in not_measured,
with one warning saying why; a call that fails now and then leaves a None and counts in read_errors.
Caveats: power_w is the driver's reading (on recent GPUs averaged over about a second), utilisation
is over the driver's own window (1/6 s to 1 s), and PCIe throughput is measured by the driver over
20 ms windows.
"""
from __future__ import annotations

import ctypes
import os
import statistics
import time

from zo2bench.probes.host import descendant_pids
from zo2bench.probes.sampler import PeriodicSampler

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


HOLD_MAX_S = 50e-6      # a fast query keeps the GIL during its NVML call only if its median at open() is this or less,
HOLD_BUDGET_S = 100e-6  # and the held queries of a sample take this much together at most (0.5% of 20 ms)
DEMOTE_S = 0.5e-3    # a held call taking longer than this counts against it ...
DEMOTE_AFTER = 3     # ... and after this many it releases the GIL like any pynvml call


class _Memory(ctypes.Structure):  # nvmlMemory_t (v1)
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class _Utilization(ctypes.Structure):  # nvmlUtilization_t
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


def _held_function(pynvml, symbol: str, *argtypes):
    """NVML's `symbol` as a ctypes function that keeps the GIL during the call, or None.

    The handle is passed as a void pointer (pynvml's handles are pointers).
    """
    lib = getattr(pynvml, "nvmlLib", None)
    if lib is None:
        return None
    try:
        addr = ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value
    except (AttributeError, TypeError, ctypes.ArgumentError):
        return None
    if not addr:
        return None
    return ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, *argtypes)(addr)


class _Query:
    """One fast NVML query returning a tuple of values, through a GIL-keeping pointer while it stays cheap."""

    def __init__(self, names: tuple, released, held=None):
        self.names, self.released, self.held = names, released, held
        self.mode = "released"
        self.open_us: float | None = None
        self.slow_held = 0

    def calibrate(self) -> float:
        """The query's median time through pynvml (GIL released), in seconds; kept in open_us."""
        times = []
        for _ in range(5):
            t = time.perf_counter()
            try:
                self.released()
            except Exception:
                pass  # a transient failure (open() has ruled out unsupported ones): its time counts all the same
            times.append(time.perf_counter() - t)
        median = statistics.median(times)
        self.open_us = round(median * 1e6, 1)
        return median

    def hold(self) -> None:
        """From now on keep the GIL through the call; raises (leaving pynvml's call) if the pointer fails."""
        for attempt in range(3):  # a transient failure gets two more tries
            try:
                self.held()
                self.mode = "held"
                return
            except Exception:
                if attempt == 2:
                    raise

    def __call__(self):
        if self.mode != "held":
            return self.released()
        t = time.perf_counter()
        values = self.held()
        if time.perf_counter() - t > DEMOTE_S:
            self.slow_held += 1
            if self.slow_held >= DEMOTE_AFTER:
                self.mode = "released (demoted: slow while holding the GIL)"
        return values

    def describe(self) -> dict:
        return {"mode": self.mode, "open_us": self.open_us}


class NvmlSampler(PeriodicSampler):
    """Samples one GPU through NVML; see the module docstring. include_children adds child pids' memory."""

    fields = (
        "gpu_device_used_bytes", "gpu_util_percent", "gpu_memory_util_percent",
        "power_w", "sm_clock_mhz", "mem_clock_mhz",
    )
    # On the H100, sampling the energy counter (2.5 ms a call) and PCIe throughput (20 ms a call) at the
    # fast rate slowed an OPT-1.3B zo2 step by 5-30% (benchmarks/test_probe_overhead.py): the driver calls
    # contend with the step's copies. The energy counter needs no fast rate (a window's energy is last -
    # first), and PCIe throughput is only read when asked for (pcie=True).
    slow_fields = ("gpu_process_used_bytes", "energy_j", "pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s")
    counters = frozenset({"energy_j"})  # joules since open(); a window's energy is last - first

    def __init__(self, device: str = "cuda", interval_s: float = 0.02, include_children: bool = False,
                 t0: float | None = None, slow_interval_s: float | None = None, pcie: bool = False):
        super().__init__(interval_s, t0, slow_interval_s)
        self.device, self.pcie = device, pcie
        self.include_children = include_children
        self.gpu_uuid = self.gpu_bus_id = self.matched_by = None
        self._nvml = self._handle = None
        self._queries: list[_Query] = []
        self._pids = {os.getpid()}
        self._pids_at = 0.0
        self._process_seen = False
        self._slow_reads: list = []  # (fields, fn returning a tuple of values), on the slow thread

    def _none_measured(self, why: str, warn: bool = True) -> None:
        for f in self.all_fields:
            self.not_measured[f] = why
        if warn:
            self.warn_once("nvml", f"GPU metrics not measured: {why}")

    def _fast_candidates(self, nv, h) -> list[_Query]:
        """The fast queries, each through pynvml and (where the library allows) a GIL-keeping pointer."""
        uint = ctypes.c_uint
        P = ctypes.POINTER
        err = nv.NVMLError

        def held(symbol, make, *argtypes):
            fn = _held_function(nv, symbol, *argtypes)
            if fn is None:
                return None

            def call():
                out = make[0]()  # a fresh struct per call: the main thread samples too, at phase boundaries
                ret = fn(h, *make[1], ctypes.byref(out))
                if ret != 0:
                    raise err(ret)
                return make[2](out)
            return call

        mem = held("nvmlDeviceGetMemoryInfo", (_Memory, (), lambda o: (o.used,)), P(_Memory))
        util = held("nvmlDeviceGetUtilizationRates", (_Utilization, (), lambda o: (o.gpu, o.memory)), P(_Utilization))
        power = held("nvmlDeviceGetPowerUsage", (uint, (), lambda o: (o.value / 1000.0,)), P(uint))
        sm = held("nvmlDeviceGetClockInfo", (uint, (nv.NVML_CLOCK_SM,), lambda o: (o.value,)), ctypes.c_int, P(uint))
        memclk = held("nvmlDeviceGetClockInfo", (uint, (nv.NVML_CLOCK_MEM,), lambda o: (o.value,)),
                      ctypes.c_int, P(uint))
        queries = [
            _Query(("gpu_device_used_bytes",), lambda: (nv.nvmlDeviceGetMemoryInfo(h).used,), mem),
            _Query(("gpu_util_percent", "gpu_memory_util_percent"), self._utilisation, util),
            _Query(("power_w",), lambda: (nv.nvmlDeviceGetPowerUsage(h) / 1000.0,), power),  # mW -> W
            _Query(("sm_clock_mhz",), lambda: (nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),), sm),
            _Query(("mem_clock_mhz",), lambda: (nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),), memclk),
        ]
        return queries

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
        unsupported = []

        def trial(names, fn) -> bool:
            """One trial read decides which fields this GPU supports; a transient failure keeps the field."""
            try:
                fn()
                return True
            except Exception as e:
                if not _unsupported(nv, e):  # transient: keep asking, the reads count the failures
                    return True
                for n in names:
                    self.not_measured[n] = f"NVML: {e}"
                unsupported.extend(names)
                return False

        self._queries = [q for q in self._fast_candidates(nv, h) if trial(q.names, q.released)]
        budget = HOLD_BUDGET_S  # the cheapest queries keep the GIL, as long as they fit the budget together
        for cost, q in sorted(((q.calibrate(), q) for q in self._queries), key=lambda cq: cq[0]):
            if q.held is not None and cost <= min(HOLD_MAX_S, budget):
                try:
                    q.hold()
                    budget -= cost
                except Exception:
                    pass  # the pointer kept failing: pynvml's call stays, and read() counts failures
        slow = [(("gpu_process_used_bytes",), lambda: (self._process_bytes(),))]
        try:
            energy0_mj = nv.nvmlDeviceGetTotalEnergyConsumption(h)  # mJ since the driver loaded
            slow.append((("energy_j",), lambda: ((nv.nvmlDeviceGetTotalEnergyConsumption(h) - energy0_mj) / 1000.0,)))
        except Exception as e:
            self.not_measured["energy_j"] = f"total energy counter: {e}"
            unsupported.append("energy_j")
        if self.pcie:
            slow.append((("pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s"), self._pcie))  # ~40 ms: each call waits 20 ms
        else:
            for n in ("pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s"):
                self.not_measured[n] = "off: each read blocks the driver 20 ms and slows the step (pcie=True reads it)"
        self._slow_reads = [(names, fn) for names, fn in slow if trial(names, fn)]
        if unsupported:
            self.warn_once("unsupported", f"GPU {self.gpu_uuid}: not measured: {', '.join(unsupported)}")

    def _utilisation(self):
        u = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
        return u.gpu, u.memory

    def _pcie(self):
        nv, h = self._nvml, self._handle
        return (nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES) * _KIB,
                nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_RX_BYTES) * _KIB)

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

    def _count_error(self, names, e: Exception) -> None:
        for n in names:
            self.read_errors[n] = self.read_errors.get(n, 0) + 1
        self.warn_once(names[0], f"reading {', '.join(names)} failed (recorded as None): {e!r}")

    def _read_all(self, reads) -> dict:
        row = {}
        for names, fn in reads:
            try:
                row.update(zip(names, fn()))
            except Exception as e:
                self._count_error(names, e)
        return row

    def read(self) -> dict:
        return self._read_all((q.names, q) for q in self._queries)

    def read_slow(self) -> dict:
        return self._read_all(self._slow_reads)

    def queries(self) -> dict:
        """{"field,field": {"mode": "held" | "released" | "released (demoted...)", "open_us": median at open}}."""
        return {",".join(q.names): q.describe() for q in self._queries}

    def _close_nvml(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None

    def close(self) -> None:
        if self._handle is not None and not self._process_seen and "gpu_process_used_bytes" not in self.not_measured:
            self.not_measured["gpu_process_used_bytes"] = (
                "this process never appeared in NVML's process list (no CUDA context yet, "
                "or a container's PID namespace hides the host pid)")
        self._close_nvml()

    def summary(self, start_s: float = 0.0, end_s: float = float("inf")) -> dict:
        return super().summary(start_s, end_s) | {
            "device": self.device, "gpu_uuid": self.gpu_uuid, "gpu_bus_id": self.gpu_bus_id,
            "matched_by": self.matched_by,
            "nvml_queries": self.queries(),
        }
