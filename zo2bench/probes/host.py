"""Host-side probes, and the periodic-sampler base that the GPU probe shares.

    sampler = HostSampler(interval_s=0.02, pinned_bytes=engine.pinned_bytes)
    sampler.start()
    ...                                   # the work being measured
    summary = sampler.stop()              # {"n_samples", "fields": {name: {"peak", "mean"}}, "not_measured", ...}
    sampler.columns()                     # {"t_s": [...], "host_rss_bytes": [...], ...}

A PeriodicSampler calls read() on a daemon thread every interval_s and appends the values column by
column. A value it could not read is None, never 0: 0 would look like a measurement.
"""
from __future__ import annotations

import math
import os
import threading
import time
import warnings

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# Sizes whose peak is what matters keep the max of each bucket when a series is downsampled,
# so a short spike survives; rates and percentages keep the bucket mean.
_PEAK_SUFFIXES = ("_bytes",)


class PeriodicSampler:
    """Base: subclasses set `fields` (and `counters`, cumulative fields) and define open/read/close."""

    fields: tuple[str, ...] = ()
    counters: frozenset[str] = frozenset()  # cumulative since open(): a window reports last - first

    def __init__(self, interval_s: float = 0.02, t0: float | None = None):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self.t0 = time.perf_counter() if t0 is None else t0
        self.not_measured: dict[str, str] = {}  # field -> why
        self.read_errors: dict[str, int] = {}   # field -> failed reads (a field that only sometimes fails)
        self._cols: dict[str, list] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    # -- what a subclass provides ----------------------------------------------------------------
    def open(self) -> None:
        """Acquire what read() needs; record unavailable fields in self.not_measured."""

    def read(self) -> dict:
        """One sample: {field: value or None}. Must be cheap; it runs interval_s apart."""
        return {}

    def close(self) -> None:
        """Release what open() acquired."""

    # -- shared machinery ------------------------------------------------------------------------
    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    def start(self) -> "PeriodicSampler":
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self.open()
        self._cols = {"t_s": [], **{f: [] for f in self.fields}}
        self.sample_now()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def sample_now(self) -> float:
        """Take one sample on the calling thread; returns its time (s from t0).

        Phase boundaries call this, so every phase, however short, has a sample at each end.
        """
        try:
            row = self.read()
        except Exception as e:  # a probe that breaks must not take the run down with it
            self.warn_once("read", f"{type(self).__name__}.read failed, sample skipped: {e!r}")
            return time.perf_counter() - self.t0
        with self._lock:  # timestamped under the lock, so two threads sampling keep t_s in order
            t = time.perf_counter() - self.t0
            self._cols["t_s"].append(t)
            for f in self.fields:
                self._cols[f].append(row.get(f))
        return t

    def _loop(self) -> None:
        next_t = time.perf_counter() + self.interval_s
        # Event.wait blocks outside the GIL, so between samples the training thread runs undisturbed.
        while not self._stop.wait(max(0.0, next_t - time.perf_counter())):
            self.sample_now()
            next_t += self.interval_s
            if next_t < time.perf_counter():  # fell behind (a slow read): skip, do not burst to catch up
                next_t = time.perf_counter() + self.interval_s

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> dict:
        """Stop and join the thread, take a last sample, release resources; returns summary()."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.sample_now()
            self.close()
        return self.summary()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def columns(self) -> dict[str, list]:
        with self._lock:
            return {k: list(v) for k, v in self._cols.items()}

    def summary(self, start_s: float = 0.0, end_s: float = math.inf) -> dict:
        w = summarize_window(self.columns(), self.fields, self.counters, start_s, end_s)
        w["fields"].update(dict.fromkeys(self.not_measured))
        return w | {
            "interval_s": self.interval_s,
            "not_measured": sorted(self.not_measured),
            "not_measured_why": dict(self.not_measured),
            "read_errors": dict(self.read_errors),
        }


def summarize_window(cols: dict, fields, counters, start_s: float, end_s: float) -> dict:
    """Peak and mean of each field over samples with start_s <= t <= end_s; counters give last - first.

    A gauge with no value in the window gives {"peak": None, "mean": None}; callers replace fields
    that are not measured at all by a plain None.
    """
    idx = [i for i, t in enumerate(cols.get("t_s", [])) if start_s <= t <= end_s]
    out: dict = {"n_samples": len(idx), "fields": {}}
    for f in fields:
        col = cols.get(f, [])
        vals = [col[i] for i in idx if col[i] is not None]
        if f in counters:
            out["fields"][f] = (vals[-1] - vals[0]) if vals else None
        elif vals:
            out["fields"][f] = {"peak": max(vals), "mean": sum(vals) / len(vals)}
        else:
            out["fields"][f] = {"peak": None, "mean": None}
    return out


def downsample(cols: dict, max_points: int = 2000, counters=frozenset()) -> dict:
    """At most max_points rows: each bucket keeps its first time, the max of sizes, the mean of rates."""
    n = len(cols.get("t_s", []))
    step = max(1, math.ceil(n / max_points))
    out: dict[str, list] = {k: [] for k in cols}
    for lo in range(0, n, step):
        for k, col in cols.items():
            bucket = [v for v in col[lo:lo + step] if v is not None]
            if k == "t_s":
                v = round(col[lo], 4)
            elif not bucket:
                v = None
            elif k in counters:
                v = bucket[-1]
            elif k.endswith(_PEAK_SUFFIXES):
                v = max(bucket)
            else:
                v = sum(bucket) / len(bucket)
            out[k].append(round(v, 3) if isinstance(v, float) and k != "t_s" else v)
    return out


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

    cpu_percent is CPU time over wall time between samples, all threads: 100 means one core busy, so
    it can exceed 100. `pinned_bytes` is a zero-argument callable (e.g. the engine's count of
    page-locked bytes it holds); without one the field is not measured.

    On Linux RSS and available memory come from one pread each of /proc files kept open: every
    system call lets the training thread take the GIL back, and getting it again costs the sampler
    up to sys.getswitchinterval() (5 ms), so fewer calls keep the rate up under a busy Python thread.
    psutil is the fallback elsewhere, and lists the children.
    """

    fields = ("host_rss_bytes", "host_children_rss_bytes", "cpu_percent", "host_available_bytes", "pinned_bytes")
    children_refresh_s = 1.0  # listing children scans all of /proc: do it rarely, read their RSS every sample

    def __init__(self, interval_s: float = 0.02, pinned_bytes=None, t0: float | None = None):
        super().__init__(interval_s, t0)
        self.pinned_bytes_fn = pinned_bytes
        self._psutil = self._proc = None
        self._fds: dict[str, int] = {}
        self._children: list = []
        self._children_at = -math.inf
        self._cpu_prev = (time.perf_counter(), time.process_time())

    def open(self) -> None:
        try:
            import psutil

            self._psutil, self._proc = psutil, psutil.Process(os.getpid())
        except ImportError:
            self.not_measured["host_children_rss_bytes"] = "psutil is not installed"
        for name, path in (("statm", "/proc/self/statm"), ("meminfo", "/proc/meminfo")):
            try:
                self._fds[name] = os.open(path, os.O_RDONLY)
            except OSError:
                pass
        if self._proc is None:
            for field, fd in (("host_rss_bytes", "statm"), ("host_available_bytes", "meminfo")):
                if fd not in self._fds:
                    self.not_measured[field] = "neither /proc nor psutil is available"
        if self.pinned_bytes_fn is None:
            self.not_measured["pinned_bytes"] = "no pinned_bytes callback given"
        self._cpu_prev = (time.perf_counter(), time.process_time())

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

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
        if "statm" in self._fds:  # "size resident shared ..." in pages
            return int(os.pread(self._fds["statm"], 128, 0).split()[1]) * _PAGE_BYTES
        return self._proc.memory_info().rss

    def _available(self) -> int:
        if "meminfo" in self._fds:
            text = os.pread(self._fds["meminfo"], 8192, 0)
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
            "host_children_rss_bytes": self._field("host_children_rss_bytes", self._children_rss),
            "cpu_percent": self._field("cpu_percent", self._cpu_percent),
            "host_available_bytes": self._field("host_available_bytes", self._available),
            "pinned_bytes": self._field("pinned_bytes", lambda: int(self.pinned_bytes_fn())),
        }
