"""Probes around a run: GPU (NVML) and host samplers with phases, a fast and a slow group of fields.

    probes = ProbeSet(device="cuda:0", pinned_bytes=engine.pinned_bytes)
    probes.start()
    probes.phase("build")       # a phase boundary: peaks are kept per phase and overall
    ...
    probes.phase("warmup"); ...; probes.phase("measured"); ...
    summary = probes.stop()     # JSON-serialisable
    views = probes.memory_views(torchmem.read_peak("cuda:0"))

Two threads sample (host.py's PeriodicSampler), each group with its own timestamps and rate:
- the fast group, every interval_s on an absolute schedule (50 Hz at the default 20 ms), keeping the
  GIL through its reads so that a busy training thread costs it one GIL hand-over per sample:
  gpu_device_used_bytes, gpu_util_percent, gpu_memory_util_percent, power_w, sm_clock_mhz,
  mem_clock_mhz, host_rss_bytes, cpu_percent, host_available_bytes, pinned_bytes;
- the slow group, at most every slow_interval_s (10 Hz at ProbeSet's default 100 ms):
  gpu_process_used_bytes, energy_j (a cumulative counter: a window's energy is last - first),
  host_children_rss_bytes, and with pcie=True pcie_tx_bytes_per_s and pcie_rx_bytes_per_s (each
  call blocks 20 ms: a round then takes 40-50 ms of driver calls).

summary = {"interval_s", "slow_interval_s", "n_samples", "slow_n_samples", "duration_s",
           "sample_rate_hz", "slow_sample_rate_hz",    # achieved per group: (samples - 1) / (last - first)
           "max_gap_s", "skipped_ticks",               # the fast group's longest gap; ticks it was too late for
           "slow_fields": [FIELD, ...], "nvml_queries": {...},   # see nvml.py
           "device", "gpu_uuid", "gpu_bus_id",
           "phases": {name: {"start_s", "end_s", "n_samples", "slow_n_samples", FIELD: {"peak", "mean"}, ...,
                             "energy_j": float}},
           "overall": {same as a phase, from start() to stop()},
           "series": {"t_s": [...], FIELD: [...]},       # fast fields measured, at most ~2000 points
           "slow_series": {"t_s": [...], FIELD: [...]},  # slow fields measured, their own times
           "not_measured": [FIELD, ...], "not_measured_why": {FIELD: reason}, "read_errors": {FIELD: count}}

A field not measured on this machine is None (in place of {"peak", "mean"}) and listed in
not_measured, never 0. Means are over samples; a fast sample is also taken at every phase boundary,
so even a phase shorter than interval_s has its start and end (a slow field may have no sample in a
phase shorter than a slow round: {"peak": None, "mean": None}).
"""
from __future__ import annotations

import time

from zo2bench.probes.host import HostSampler
from zo2bench.probes.nvml import NvmlSampler
from zo2bench.probes.sampler import PeriodicSampler, downsample

__all__ = ["ProbeSet", "HostSampler", "NvmlSampler", "PeriodicSampler"]

MAX_SERIES_POINTS = 2000


class _Both(PeriodicSampler):
    """Both samplers on one fast and one slow thread, so their rows share timestamps and wake-ups cost half."""

    def __init__(self, parts, interval_s, t0, slow_interval_s):
        super().__init__(interval_s, t0, slow_interval_s)
        self.parts = parts
        self.fields = tuple(f for p in parts for f in p.fields)
        self.slow_fields = tuple(f for p in parts for f in p.slow_fields)
        self.counters = frozenset().union(*(p.counters for p in parts))

    def open(self):
        for p in self.parts:
            try:
                p.open()
            except Exception as e:  # one broken probe leaves the other measuring
                p.not_measured.update(dict.fromkeys(p.all_fields, f"{type(p).__name__} failed to open: {e!r}"))
                p.read = p.read_slow = dict
                self.warn_once(type(p).__name__, f"{type(p).__name__} not measuring: {e!r}")
            self.not_measured.update(p.not_measured)

    def _merge(self, method):
        row = {}
        for p in self.parts:
            try:
                row.update(getattr(p, method)())
            except Exception as e:
                self.warn_once(f"{method} {type(p).__name__}",
                               f"{type(p).__name__}.{method} failed, its fields None: {e!r}")
        return row

    def read(self):
        return self._merge("read")

    def read_slow(self):
        return self._merge("read_slow")

    def close(self):
        for p in self.parts:
            p.close()
            self.not_measured.update(p.not_measured)  # e.g. the GPU never listed this pid
            self.read_errors.update(p.read_errors)


class ProbeSet:
    """GPU and host samplers for one run; see the module docstring for the summary."""

    def __init__(self, device: str = "cpu", interval_s: float = 0.02, pinned_bytes=None, include_children: bool = False,
                 slow_interval_s: float = 0.1, pcie: bool = False):
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.interval_s, self.slow_interval_s = interval_s, slow_interval_s
        t0 = time.perf_counter()
        self.gpu = NvmlSampler(device, interval_s, include_children=include_children, t0=t0,
                               slow_interval_s=slow_interval_s, pcie=pcie)
        self.host = HostSampler(interval_s, pinned_bytes=pinned_bytes, t0=t0, slow_interval_s=slow_interval_s)
        self._sampler = _Both([self.gpu, self.host], interval_s, t0, slow_interval_s)
        self._phases: list[tuple[str, float]] = []  # (name, start in s from t0)
        self._end_s: float | None = None
        self._summary: dict | None = None

    def _now(self) -> float:
        return time.perf_counter() - self._sampler.t0

    def start(self) -> ProbeSet:
        self._sampler.t0 = self.gpu.t0 = self.host.t0 = time.perf_counter()
        self._sampler.start()
        return self

    def phase(self, name: str) -> None:
        """End the current phase (if any) and begin `name`; a sample is taken right at the boundary."""
        if self._sampler.thread is None:
            raise RuntimeError("ProbeSet.phase() before start()")
        names = {n for n, _ in self._phases}
        if name in names:  # a repeated phase is kept apart, not merged: "measured", "measured#2"
            name = next(f"{name}#{i}" for i in range(2, len(names) + 3) if f"{name}#{i}" not in names)
        # The boundary sample belongs to both phases (windows are inclusive): energy and peaks meet there.
        self._phases.append((name, self._sampler.sample_now()))

    @property
    def thread(self):
        return self._sampler.thread

    def stop(self) -> dict:
        """Stop sampling (thread joined) and return the summary; calling it again returns the same."""
        if self._summary is not None:
            return self._summary
        self._sampler.stop()
        self._end_s = self._now()
        s = self._sampler
        cols, slow = s.columns(), s.slow_columns()
        bounds = [t for _, t in self._phases[1:]] + [self._end_s]
        windows = {name: (start, end) for (name, start), end in zip(self._phases, bounds)}

        def window(start, end):
            w = s.window(start, end, cols, slow)
            return {"start_s": round(start, 4), "end_s": round(end, 4), "n_samples": w["n_samples"],
                    "slow_n_samples": w["slow_n_samples"], **w["fields"]}

        def rate(ts):  # achieved: over the span sampled (open() and its trial reads come before it)
            return round((len(ts) - 1) / (ts[-1] - ts[0]), 1) if len(ts) > 1 and ts[-1] > ts[0] else None

        t, t_slow = cols.get("t_s", []), slow.get("t_s", [])
        n, n_slow = len(t), len(t_slow)
        self._summary = {
            "interval_s": self.interval_s,
            "slow_interval_s": self.slow_interval_s,
            "n_samples": n,
            "slow_n_samples": n_slow,
            "duration_s": round(self._end_s, 4),
            "sample_rate_hz": rate(t),
            "slow_sample_rate_hz": rate(t_slow),
            "max_gap_s": round(max((b - a for a, b in zip(t, t[1:])), default=0.0), 4),
            "skipped_ticks": s.skipped_ticks,
            "slow_fields": [f for f in s.slow_fields if f not in s.not_measured],
            "nvml_queries": self.gpu.queries() or None,
            "device": self.device,
            "gpu_uuid": self.gpu.gpu_uuid,
            "gpu_bus_id": self.gpu.gpu_bus_id,
            "phases": {name: window(*w) for name, w in windows.items()},
            "overall": window(0.0, self._end_s),
            "series": downsample({k: v for k, v in cols.items() if k not in s.not_measured},
                                 MAX_SERIES_POINTS, s.counters),
            "slow_series": downsample({k: v for k, v in slow.items() if k not in s.not_measured},
                                      MAX_SERIES_POINTS, s.counters),
            "not_measured": sorted(s.not_measured),
            "not_measured_why": dict(s.not_measured),
            "read_errors": dict(s.read_errors),
        }
        return self._summary

    def memory_views(self, torch_peaks: dict | None = None, phase: str = "measured") -> dict:
        """The three views of memory side by side for `phase` (the whole run if there is no such phase).

        torch's caching allocator, NVML and the OS each see a different amount:
        - allocated <= reserved: the caching allocator keeps freed blocks reserved for reuse instead of
          handing them back to CUDA, so "allocator_cache_bytes" = reserved - allocated.
        - reserved <= NVML's per-process figure: the CUDA context itself (hundreds of MB), cuBLAS/cuDNN
          workspaces and NCCL buffers are allocated by those libraries outside torch's allocator, so
          "outside_torch_allocator_bytes" = NVML process peak - torch reserved peak, and
          "cuda_context_and_allocator_cache_bytes" = NVML process peak - torch allocated peak (both gaps).
        - host RSS counts pageable and pinned host memory (pinned pages are mapped into the process and
          normally resident, so pinned_bytes is shown beside RSS, not added to it).
        Peaks of different counters may fall at different moments, so the gaps are upper bounds of a
        sort, not exact sizes; a gap is None when either side is not measured.
        `torch_peaks` is torchmem.read_peak() taken for the same phase.
        """
        if self._summary is None:
            raise RuntimeError("memory_views() needs stop() first")
        torch_peaks = torch_peaks or {}
        w = self._summary["phases"].get(phase) or self._summary["overall"]
        peak = lambda f: (w.get(f) or {}).get("peak")  # noqa: E731
        alloc, reserved = torch_peaks.get("torch_peak_allocated_bytes"), torch_peaks.get("torch_peak_reserved_bytes")
        nvml_proc = peak("gpu_process_used_bytes")

        def gap(a, b):
            return None if a is None or b is None else a - b

        return {
            "phase": phase if phase in self._summary["phases"] else "overall",
            "torch_peak_allocated_bytes": alloc,
            "torch_peak_reserved_bytes": reserved,
            "nvml_process_peak_bytes": nvml_proc,
            "nvml_device_peak_bytes": peak("gpu_device_used_bytes"),
            "host_rss_peak_bytes": peak("host_rss_bytes"),
            "host_children_rss_peak_bytes": peak("host_children_rss_bytes"),
            "pinned_peak_bytes": peak("pinned_bytes"),
            "allocator_cache_bytes": gap(reserved, alloc),
            "outside_torch_allocator_bytes": gap(nvml_proc, reserved),
            "cuda_context_and_allocator_cache_bytes": gap(nvml_proc, alloc),
        }
