"""The periodic-sampler base that the host and GPU probes share, and the statistics of its windows.

    class MySampler(PeriodicSampler):
        fields, slow_fields = ("x_bytes",), ("y_bytes",)
        def read(self): return {"x_bytes": ...}
        def read_slow(self): return {"y_bytes": ...}
    s = MySampler(interval_s=0.02); s.start(); ...; summary = s.stop()

A PeriodicSampler has two groups of fields, each on a daemon thread of its own with its own timestamps:
- the fast group (`fields`, read()) on an absolute schedule: sample k is due at start + k*interval_s,
  whatever the reads took; a sample that comes late is taken at once, and when more than one tick has
  passed meanwhile the extra ones are skipped (counted in skipped_ticks), never taken in a burst.
- the slow group (`slow_fields`, read_slow()): reads that block (NVML's PCIe throughput takes 20 ms
  a call, the process list milliseconds) or walk /proc, as often as they manage but at most every
  slow_interval_s, so they never hold up the fast group.
A value it could not read is None, never 0: 0 would look like a measurement.
"""
from __future__ import annotations

import math
import threading
import time
import warnings

# Sizes whose peak is what matters keep the max of each bucket when a series is downsampled,
# so a short spike survives; rates and percentages keep the bucket mean.
_PEAK_SUFFIXES = ("_bytes",)


class PeriodicSampler:
    """Base: subclasses set `fields`, `slow_fields` (and `counters`, cumulative fields) and define
    open/read/read_slow/close. See the module docstring for the two groups."""

    fields: tuple[str, ...] = ()       # the fast group: read() every interval_s
    slow_fields: tuple[str, ...] = ()  # the slow group: read_slow() on a thread of its own
    counters: frozenset[str] = frozenset()  # cumulative since open(): a window reports last - first
    slow_interval_s: float = 0.05      # the slow group's shortest period

    def __init__(self, interval_s: float = 0.02, t0: float | None = None, slow_interval_s: float | None = None):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        if slow_interval_s is not None:
            if slow_interval_s <= 0:
                raise ValueError(f"slow_interval_s must be positive, got {slow_interval_s}")
            self.slow_interval_s = slow_interval_s
        self.t0 = time.perf_counter() if t0 is None else t0
        self.not_measured: dict[str, str] = {}  # field -> why
        self.read_errors: dict[str, int] = {}   # field -> failed reads (a field that only sometimes fails)
        self.skipped_ticks = 0                  # fast ticks dropped because the sampler was too late for them
        self._cols: dict[str, list] = {}
        self._slow_cols: dict[str, list] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._slow_thread: threading.Thread | None = None
        self._warned: set[str] = set()
        self._stopped = False

    @property
    def all_fields(self) -> tuple[str, ...]:
        return tuple(self.fields) + tuple(self.slow_fields)

    # -- what a subclass provides ----------------------------------------------------------------
    def open(self) -> None:
        """Acquire what read() needs; record unavailable fields in self.not_measured."""

    def read(self) -> dict:
        """One fast sample: {field: value or None}. Must be cheap; it runs interval_s apart."""
        return {}

    def read_slow(self) -> dict:
        """One slow sample: {slow field: value or None}; may block (outside the GIL)."""
        return {}

    def close(self) -> None:
        """Release what open() acquired."""

    # -- shared machinery ------------------------------------------------------------------------
    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    def _slow_active(self) -> bool:
        return any(f not in self.not_measured for f in self.slow_fields)

    def start(self) -> PeriodicSampler:
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self.open()
        self._cols = {"t_s": [], **{f: [] for f in self.fields}}
        self._slow_cols = {"t_s": [], **{f: [] for f in self.slow_fields}}
        self.skipped_ticks = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
        if self._slow_active():  # its first sample is taken at once, on its own thread
            self._slow_thread = threading.Thread(target=self._slow_loop, name=type(self).__name__ + "Slow",
                                                 daemon=True)
            self._slow_thread.start()
        self._thread.start()  # its first tick is interval_s away: the sample below comes first
        self.sample_now()  # last, so that it is as close as can be to what the caller does next
        return self

    def sample_now(self) -> float:
        """Take one fast sample on the calling thread; returns its time (s from t0).

        Phase boundaries call this, so every phase, however short, has a fast sample at each end.
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

    def sample_slow_now(self) -> float:
        """Take one slow sample on the calling thread (it may block); its t_s is when the reads ended."""
        try:
            row = self.read_slow()
        except Exception as e:
            self.warn_once("read_slow", f"{type(self).__name__}.read_slow failed, sample skipped: {e!r}")
            return time.perf_counter() - self.t0
        with self._lock:
            t = time.perf_counter() - self.t0
            self._slow_cols["t_s"].append(t)
            for f in self.slow_fields:
                self._slow_cols[f].append(row.get(f))
        return t

    def _on_grid(self, interval: float, sample, first_now: bool) -> int:
        """Call sample() at start + k*interval until stopped; returns the ticks skipped.

        A late sample is taken at once; if more than one tick has passed meanwhile, the others are
        dropped (the grid is kept, so the rate stays 1/interval whenever the reads keep up).
        Event.wait blocks outside the GIL, so between samples the training thread runs undisturbed.
        """
        start, k, skipped = time.perf_counter(), 0 if first_now else 1, 0
        while not self._stop.wait(max(0.0, start + k * interval - time.perf_counter())):
            sample()
            k += 1
            due_now = int((time.perf_counter() - start) / interval)  # the latest tick already due
            if due_now > k:
                skipped += due_now - k
                k = due_now
        return skipped

    def _loop(self) -> None:
        self.skipped_ticks = self._on_grid(self.interval_s, self.sample_now, first_now=False)

    def _slow_loop(self) -> None:
        self._on_grid(self.slow_interval_s, self.sample_slow_now, first_now=True)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> dict:
        """Stop and join the threads, take a last sample of each group, release resources; returns summary()."""
        if self._thread is not None and not self._stopped:
            self._stopped = True
            self._stop.set()
            self._thread.join()
            self.sample_now()
            if self._slow_thread is not None:  # may be in the middle of a blocking read
                self._slow_thread.join()
                self._slow_thread = None
                self.sample_slow_now()
            self.close()
        return self.summary()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    @property
    def slow_thread(self) -> threading.Thread | None:
        return self._slow_thread

    def columns(self) -> dict[str, list]:
        """The fast group's samples: {"t_s": [...], field: [...]}."""
        with self._lock:
            return {k: list(v) for k, v in self._cols.items()}

    def slow_columns(self) -> dict[str, list]:
        """The slow group's samples, with their own t_s."""
        with self._lock:
            return {k: list(v) for k, v in self._slow_cols.items()}

    def window(self, start_s: float, end_s: float, fast: dict | None = None, slow: dict | None = None) -> dict:
        """Both groups summarised over start_s <= t <= end_s: {"n_samples", "slow_n_samples", "fields"}."""
        fast = self.columns() if fast is None else fast
        slow = self.slow_columns() if slow is None else slow
        w = summarize_window(fast, self.fields, self.counters, start_s, end_s)
        ws = summarize_window(slow, self.slow_fields, self.counters, start_s, end_s)
        fields = {**w["fields"], **ws["fields"]}
        fields.update(dict.fromkeys(f for f in self.not_measured if f in fields))  # None, not {"peak": None}
        return {"n_samples": w["n_samples"], "slow_n_samples": ws["n_samples"], "fields": fields}

    def summary(self, start_s: float = 0.0, end_s: float = math.inf) -> dict:
        return self.window(start_s, end_s) | {
            "interval_s": self.interval_s,
            "slow_interval_s": self.slow_interval_s,
            "slow_fields": list(self.slow_fields),
            "skipped_ticks": self.skipped_ticks,
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
            out["fields"][f] = _counter_delta(cols["t_s"], col, start_s, end_s)
        elif vals:
            out["fields"][f] = {"peak": max(vals), "mean": sum(vals) / len(vals)}
        else:
            out["fields"][f] = {"peak": None, "mean": None}
    return out


def _counter_delta(ts: list, col: list, start_s: float, end_s: float) -> float | None:
    """A cumulative counter's increase over [start_s, end_s], read off the straight line between the
    samples on either side of each edge: the counter is sampled slowly (energy at 10 Hz), and windows
    that meet at a phase boundary then add up exactly."""
    pts = [(t, v) for t, v in zip(ts, col) if v is not None]
    if len(pts) < 2 or end_s < pts[0][0] or start_s > pts[-1][0]:
        return None

    def at(t: float) -> float:
        t = min(max(t, pts[0][0]), pts[-1][0])
        for (t0, v0), (t1, v1) in zip(pts, pts[1:]):
            if t0 <= t <= t1:
                return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return pts[-1][1]

    return at(end_s) - at(start_s)


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
