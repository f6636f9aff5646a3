"""Host-side probes: this process's memory and CPU, its children, pinned bytes (sampler.py has the base).

    sampler = HostSampler(interval_s=0.02, pinned_bytes=engine.pinned_bytes)
    sampler.start()
    ...                                   # the work being measured
    summary = sampler.stop()              # {"n_samples", "fields": {name: {"peak", "mean"}}, "not_measured", ...}
    sampler.columns()                     # {"t_s": [...], "host_rss_bytes": [...], ...}   (the fast group)
    sampler.slow_columns()                # {"t_s": [...], "host_children_rss_bytes": [...]}  (the slow group)

The GIL: a thread that gives up the GIL (any system call or ctypes call does) waits up to
sys.getswitchinterval() (5 ms) to get it back while another thread runs Python. Eight such calls per
sample held the sampler to 19 Hz against a busy training thread. So the fast group's reads keep the
GIL: /proc files are read with libc's pread through ctypes.PyDLL (2 to 6 us here), and NVML's cheap
queries likewise (nvml.py); a fast sample then waits for the GIL once, when it wakes up.
"""
from __future__ import annotations

import ctypes
import math
import os
import time

from zo2bench.probes.sampler import PeriodicSampler

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _held_pread():
    """libc's pread called without giving up the GIL (ctypes.PyDLL), or None where there is none."""
    try:
        fn = ctypes.PyDLL(None, use_errno=True).pread
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long)
    fn.restype = ctypes.c_ssize_t
    return fn


_PREAD = _held_pread()


class ProcFile:
    """A small /proc file kept open and read from offset 0 each time, keeping the GIL where it can."""

    def __init__(self, path: str, size: int = 4096):
        self.fd = os.open(path, os.O_RDONLY)
        self.size = size
        self._buf = ctypes.create_string_buffer(size)

    def read(self) -> bytes:
        if _PREAD is None:
            return os.pread(self.fd, self.size, 0)
        n = _PREAD(self.fd, self._buf, self.size, 0)
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return ctypes.string_at(self._buf, n)

    def close(self) -> None:
        os.close(self.fd)


def descendant_pids(pid: int) -> list[int] | None:
    """Child pids, recursively, from /proc/PID/task/TID/children; None where the kernel lacks it.

    psutil's children() reads /proc/*/stat of every process on the host, milliseconds of Python
    on a busy machine; this reads one small file per thread of the family.
    """
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            if p == pid:
                return None
            continue  # exited meanwhile
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                if p == pid and not found:
                    return None  # CONFIG_PROC_CHILDREN off (or the thread ended): let psutil list them
                continue
            except OSError:
                continue
            found += kids
            todo += kids
    return found


class HostSampler(PeriodicSampler):
    """This process's RSS, its children's RSS (sum), its CPU use, system available memory, pinned bytes.

    Rates: host_rss_bytes, cpu_percent, host_available_bytes and pinned_bytes are in the fast group
    (every interval_s, 50 Hz at the default 20 ms); host_children_rss_bytes is in the slow group (at
    most every slow_interval_s: 20 Hz at the base default of 50 ms, 10 Hz under ProbeSet), since listing
    children walks /proc.

    cpu_percent is CPU time over wall time between samples, all threads: 100 means one core busy, so
    it can exceed 100. `pinned_bytes` is a zero-argument callable (e.g. the engine's count of
    page-locked bytes it holds); without one the field is not measured.

    On Linux RSS and available memory come from one pread each of /proc/self/statm and /proc/meminfo,
    kept open and read without giving up the GIL (see the module docstring). psutil is the fallback
    elsewhere, and lists the children.
    """

    fields = ("host_rss_bytes", "cpu_percent", "host_available_bytes", "pinned_bytes")
    slow_fields = ("host_children_rss_bytes",)
    children_refresh_s = 1.0  # listing children scans /proc: do it rarely, read their RSS every slow sample

    def __init__(self, interval_s: float = 0.02, pinned_bytes=None, t0: float | None = None,
                 slow_interval_s: float | None = None):
        super().__init__(interval_s, t0, slow_interval_s)
        self.pinned_bytes_fn = pinned_bytes
        self._psutil = self._proc = None
        self._files: dict[str, ProcFile] = {}
        self._children: list = []
        self._children_at = -math.inf
        self._cpu_prev = (time.perf_counter(), time.process_time())

    def open(self) -> None:
        try:
            import psutil

            self._psutil, self._proc = psutil, psutil.Process(os.getpid())
        except ImportError:
            self.not_measured["host_children_rss_bytes"] = "psutil is not installed"
        for name, path, size in (("statm", "/proc/self/statm", 256), ("meminfo", "/proc/meminfo", 8192)):
            try:
                self._files[name] = ProcFile(path, size)
            except OSError:
                pass
        if self._proc is None:
            for field, name in (("host_rss_bytes", "statm"), ("host_available_bytes", "meminfo")):
                if name not in self._files:
                    self.not_measured[field] = "neither /proc nor psutil is available"
        if self.pinned_bytes_fn is None:
            self.not_measured["pinned_bytes"] = "no pinned_bytes callback given"
        self._cpu_prev = (time.perf_counter(), time.process_time())

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def _field(self, name: str, fn):
        if name in self.not_measured:
            return None
        try:
            return fn()
        except Exception as e:
            self.read_errors[name] = self.read_errors.get(name, 0) + 1
            self.warn_once(name, f"reading {name} failed (recorded as None): {e!r}")
            return None

    def _rss(self) -> int:
        if "statm" in self._files:  # "size resident shared ..." in pages
            return int(self._files["statm"].read().split()[1]) * _PAGE_BYTES
        return self._proc.memory_info().rss

    def _available(self) -> int:
        if "meminfo" in self._files:
            text = self._files["meminfo"].read()
            i = text.index(b"MemAvailable:")
            return int(text[i + 13:text.index(b"kB", i)]) * 1024  # the kernel's "kB" is KiB
        return self._psutil.virtual_memory().available

    def _cpu_percent(self) -> float:
        # process_time is CPU time of all threads at ns resolution; /proc's ticks (10 ms) are too
        # coarse for 20 ms samples. It does not drop the GIL.
        wall, cpu = time.perf_counter(), time.process_time()
        wall0, cpu0 = self._cpu_prev
        self._cpu_prev = (wall, cpu)
        return 100.0 * (cpu - cpu0) / (wall - wall0) if wall > wall0 else None

    def _children_rss(self) -> int:
        now = time.perf_counter()
        if now - self._children_at > self.children_refresh_s:
            pids = descendant_pids(os.getpid())
            self._children = (self._proc.children(recursive=True) if pids is None
                              else [self._psutil.Process(p) for p in pids])
            self._children_at = time.perf_counter()
        total = 0
        for c in self._children:
            try:
                total += c.memory_info().rss
            except self._psutil.Error:  # a child that exited since the last listing
                pass
        return total

    def read(self) -> dict:
        return {
            "host_rss_bytes": self._field("host_rss_bytes", self._rss),
            "cpu_percent": self._field("cpu_percent", self._cpu_percent),
            "host_available_bytes": self._field("host_available_bytes", self._available),
            "pinned_bytes": self._field("pinned_bytes", lambda: int(self.pinned_bytes_fn())),
        }

    def read_slow(self) -> dict:
        return {"host_children_rss_bytes": self._field("host_children_rss_bytes", self._children_rss)}
