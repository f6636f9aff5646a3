"""Measure this machine's floors in one run: link bandwidths, memory bandwidth, matmul rates. About 40 s on an
H100 (GPU_SIZES), a few seconds on a CPU (CPU_SIZES).

    zo2bench calibrate                                     # stored as results/calibration/<machine_id>/...
    zo2bench calibrate --out cal.json --size-gib 0.25      # the record below, to a file of your choice

    from zo2bench.bench.calibrate import calibrate, find_calibration, store_calibration, stored_or_measured
    record = calibrate(device="auto")           # sizes that fit the device: GPU_SIZES on CUDA, CPU_SIZES on a CPU
    store_calibration(record, "results")        # results/calibration/<machine_id>/calibration-<UTC>.json
    stored = find_calibration("results", record["fingerprint"], device="cuda:0")  # newest of this machine, or None
    record, how = stored_or_measured("results", fingerprint, "cpu")  # measured once per machine, then found

The record:

    {"schema_version": 1, "kind": "calibration", "created_utc": "...", "elapsed_s": 21.3,
     "fingerprint": {...probes.fingerprint...},
     "figures": {"h2d_pinned_gb_per_s": {"median", "min", "max", "repeats"}, ..., "matmul_fp16_tflop_per_s": None},
     "not_measured": {"matmul_fp16_tflop_per_s": "no CUDA device"},
     "settings": {"device", "size_bytes", "repeats", "warmup", "matmul_n", "pinning", ...}}

Units: GB = 1e9 bytes (GiB = 2**30 only in --size-gib); TFLOP = 1e12 FLOP. A figure that was not measured
is None, never 0, and "not_measured" says why. Copies are timed with CUDA events (perf_counter on the
CPU), after one warm-up that is not recorded; each figure keeps the median, min and max of its repeats.
"""
from __future__ import annotations

import datetime
import functools
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from zo2bench.errors import UserError
from zo2bench.probes.fingerprint import fingerprint as machine_fingerprint
from zo2bench.results import SCHEMA_VERSION
from zo2bench.stats import summarize

GB = 1e9
GIB = 2**30
TFLOP = 1e12
MIN_SAMPLE_S = 0.02   # matmuls are repeated inside one timed sample until it lasts this long


@dataclass(frozen=True)
class Sizes:
    size_gib: float  # bytes per copy, in GiB (2**30)
    repeats: int     # timed repeats per figure, after one warm-up that is not recorded
    matmul_n: int    # n of the n x n x n matmuls


# About 40 s on an H100: 8192^3 matmuls reach the datasheet-class rate, 1 GiB copies the link's plateau.
GPU_SIZES = Sizes(size_gib=1.0, repeats=5, matmul_n=8192)
# A few seconds on 2 cores: 256 MiB copies are past any last-level cache; a 1024^3 fp32 matmul takes about
# 20 ms there, and where bf16 has no hardware path (emulated, ~100x slower) it still stays within seconds.
CPU_SIZES = Sizes(size_gib=0.25, repeats=3, matmul_n=1024)

GPU_FIGURES = (
    "h2d_pinned_gb_per_s", "d2h_pinned_gb_per_s", "h2d_pageable_gb_per_s", "d2h_pageable_gb_per_s",
    "both_directions_pinned_gb_per_s",   # total of both directions, two streams at once
    "device_mem_rw_gb_per_s",            # device-to-device copy, bytes read + bytes written
    "matmul_bf16_tflop_per_s", "matmul_fp16_tflop_per_s", "matmul_fp32_tflop_per_s",  # fp32 with tf32 off
)
CPU_FIGURES = (
    "host_mem_rw_gb_per_s",              # host memcpy, bytes read + bytes written
    "cpu_matmul_fp32_tflop_per_s", "cpu_matmul_bf16_tflop_per_s",
)
FIGURES = GPU_FIGURES + CPU_FIGURES


def _log(msg: str) -> None:
    print(f"calibrate: {msg}", file=sys.stderr, flush=True)


def _record(figures: dict, key: str, values: list[float]) -> None:
    """Store one figure's summary and show it as a progress line."""
    f = figures[key] = summarize(values) | {"repeats": len(values)}
    d = 1 if f["median"] >= 10 else 4
    _log(f"{key:34s} {f['median']:10.{d}f}  (min {f['min']:.{d}f}, max {f['max']:.{d}f}, {f['repeats']} repeats)")


def resolve_device(device: str) -> str:
    """The project's device rules (zo2bench.devices), as a string with an explicit index ("cuda:0")."""
    from zo2bench.devices import device_name
    from zo2bench.devices import resolve_device as resolve

    return device_name(resolve(device))


# -- timing ------------------------------------------------------------------------------------------

def _time_cpu(fn, repeats: int, warmup: int = 1, inner: int = 1) -> list[float]:
    """Seconds per call of fn, one sample per repeat."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return samples


def _time_cuda(fn, repeats: int, warmup: int = 1, inner: int = 1) -> list[float]:
    """Seconds per call of fn measured by CUDA events on the current stream, one sample per repeat."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / inner)  # elapsed_time is in milliseconds
    return samples


def _time_both_directions(host_src, dev_dst, dev_src, host_dst, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds for an upload and a download of the same size started together on two streams."""
    import torch

    up, down = torch.cuda.Stream(), torch.cuda.Stream()
    samples = []
    for i in range(warmup + repeats):
        start = torch.cuda.Event(enable_timing=True)
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
        start.record()  # both streams wait on one event, so neither starts before the other is ready
        for stream, dst, src, end in ((up, dev_dst, host_src, ends[0]), (down, host_dst, dev_src, ends[1])):
            stream.wait_event(start)
            with torch.cuda.stream(stream):
                dst.copy_(src, non_blocking=True)
                end.record(stream)
        for end in ends:
            end.synchronize()
        if i >= warmup:
            samples.append(max(start.elapsed_time(end) for end in ends) / 1e3)
    return samples


# -- pinned host memory ------------------------------------------------------------------------------

class _Pinned:
    """A host tensor page-locked in place (the engine's pin_in_place: exactly sized, CUDA's error cleared
    when the driver refuses), else a pin_memory() copy; `.method` says which."""

    def __init__(self, tensor):
        from zo2bench.engine.offload import pin_in_place

        self.registered = pin_in_place(tensor)
        if self.registered:
            self.tensor, self.method = tensor, "cudaHostRegister"
        else:
            self.tensor, self.method = tensor.pin_memory(), "pin_memory"

    def close(self) -> None:
        from zo2bench.engine.offload import release_host_buffer

        if self.registered:
            release_host_buffer(self.tensor)
            self.registered = False


# -- measurements ------------------------------------------------------------------------------------

def _matmul_samples(dtype, n: int, repeats: int, device: str, timer) -> list[float]:
    import torch

    gen = torch.Generator(device=device).manual_seed(0)  # random data: zeros would flatter some kernels
    a = torch.randn(n, n, generator=gen, device=device, dtype=torch.float32).to(dtype)
    b = torch.randn(n, n, generator=gen, device=device, dtype=torch.float32).to(dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    once = timer(lambda: torch.matmul(a, b, out=c), 1, warmup=1)[0]
    inner = max(1, min(50, math.ceil(MIN_SAMPLE_S / max(once, 1e-9))))  # amortize launch and event cost
    seconds = timer(lambda: torch.matmul(a, b, out=c), repeats, warmup=0, inner=inner)
    return [2 * n**3 / s / TFLOP for s in seconds]


def _measure_host_copy(nbytes: int, repeats: int) -> list[float]:
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8).fill_(0xA5)  # touch every page before timing
    dst = torch.empty(nbytes, dtype=torch.uint8).fill_(0)
    return [2 * nbytes / s / GB for s in _time_cpu(lambda: dst.copy_(src), repeats)]


def _measure_cuda(device: str, nbytes: int, repeats: int, matmul_n: int, figures: dict, settings: dict) -> None:
    import torch

    free_bytes, _ = torch.cuda.mem_get_info(device)
    if 2 * nbytes + 3 * 4 * matmul_n**2 > free_bytes:
        raise UserError(f"--size-gib {nbytes / GIB:g} needs two device buffers of that size and "
                        f"{free_bytes / GIB:.1f} GiB is free on {device}; give a smaller --size-gib")
    torch.cuda.set_device(device)
    record = functools.partial(_record, figures)
    _measure_cuda_copies(device, nbytes, repeats, record, settings)
    torch.cuda.empty_cache()  # the copy buffers are gone with the function that held them

    _log(f"matmuls {matmul_n}^3 on random data in bf16, fp16 and fp32")
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here; tf32 would be a different figure
    try:
        for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
            record(f"matmul_{name}_tflop_per_s", _matmul_samples(dtype, matmul_n, repeats, device, _time_cuda))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous_tf32
    settings["tf32"] = False


def _measure_cuda_copies(device: str, nbytes: int, repeats: int, record, settings: dict) -> None:
    import torch

    # Two exactly-sized host buffers, pageable first, then page-locked in place for the pinned figures.
    host_a = torch.empty(nbytes, dtype=torch.uint8).fill_(0xA5)
    host_b = torch.empty(nbytes, dtype=torch.uint8).fill_(0x5A)
    dev_a = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(0x3C)
    dev_b = torch.empty(nbytes, dtype=torch.uint8, device=device)
    gb = nbytes / GB

    _log(f"copies of {nbytes / GIB:g} GiB, {repeats} repeats after 1 warm-up, CUDA events")
    record("h2d_pageable_gb_per_s", [gb / s for s in _time_cuda(lambda: dev_b.copy_(host_a), repeats)])
    record("d2h_pageable_gb_per_s", [gb / s for s in _time_cuda(lambda: host_b.copy_(dev_a), repeats)])

    pins = [_Pinned(host_a), _Pinned(host_b)]
    try:
        pin_a, pin_b = (p.tensor for p in pins)
        settings["pinning"] = "+".join(sorted({p.method for p in pins}))  # two names only if one fell back
        record("h2d_pinned_gb_per_s",
               [gb / s for s in _time_cuda(lambda: dev_b.copy_(pin_a, non_blocking=True), repeats)])
        record("d2h_pinned_gb_per_s",
               [gb / s for s in _time_cuda(lambda: pin_b.copy_(dev_a, non_blocking=True), repeats)])
        record("both_directions_pinned_gb_per_s",
               [2 * gb / s for s in _time_both_directions(pin_a, dev_b, dev_a, pin_b, repeats)])
        torch.cuda.synchronize()
    finally:
        for p in pins:
            p.close()
    record("device_mem_rw_gb_per_s", [2 * gb / s for s in _time_cuda(lambda: dev_b.copy_(dev_a), repeats)])


def calibrate(device: str = "auto", size_gib: float | None = None, repeats: int | None = None,
              matmul_n: int | None = None) -> dict:
    """Measure every figure this machine allows; returns the calibration record (see the module docstring).
    A size left None takes the device's default (GPU_SIZES on CUDA, CPU_SIZES on the CPU)."""
    import torch

    device = resolve_device(device)
    on_cuda = device.startswith("cuda")
    base = GPU_SIZES if on_cuda else CPU_SIZES
    size_gib = base.size_gib if size_gib is None else size_gib
    repeats = base.repeats if repeats is None else repeats
    matmul_n = base.matmul_n if matmul_n is None else matmul_n
    if not size_gib > 0:
        raise UserError(f"--size-gib must be positive, got {size_gib}")
    if repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {repeats}")
    if matmul_n < 1:
        raise UserError(f"--matmul-n must be positive, got {matmul_n}")
    nbytes = int(size_gib * GIB)
    t0 = time.perf_counter()

    figures: dict = {key: None for key in FIGURES}
    settings = {"device": device, "size_bytes": nbytes, "size_gib": size_gib, "repeats": repeats, "warmup": 1,
                "matmul_n": matmul_n, "timing": "cuda events" if on_cuda else "perf_counter",
                "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    _log(f"measuring {device}: copies of {size_gib:g} GiB, matmuls {matmul_n}^3, {repeats} timed repeats of each "
         f"figure ({'about 40 s on an H100' if on_cuda else 'a few seconds'})")
    if on_cuda:
        _measure_cuda(device, nbytes, repeats, matmul_n, figures, settings)
    else:
        _log("no CUDA device in use: GPU figures are not measured; measuring the CPU")
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            samples = _matmul_samples(dtype, matmul_n, repeats, "cpu", _time_cpu)
            _record(figures, f"cpu_matmul_{name}_tflop_per_s", samples)
    _record(figures, "host_mem_rw_gb_per_s", _measure_host_copy(nbytes, repeats))
    # Taken after the GPU work: CUDA is initialised by then, so NVML finds our GPU by its UUID.
    fp = machine_fingerprint(device if on_cuda else None)

    reason = "measured on CUDA runs only" if on_cuda else "no CUDA device in use"
    not_measured = {k: ("measured on CPU runs only" if k in CPU_FIGURES else reason)
                    for k, v in figures.items() if v is None}
    return {"schema_version": SCHEMA_VERSION, "kind": "calibration",
            "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "elapsed_s": round(time.perf_counter() - t0, 3),
            "fingerprint": fp, "figures": figures, "not_measured": not_measured, "settings": settings}


# -- stored calibrations -----------------------------------------------------------------------------

def load_calibration(path) -> dict:
    """A calibration record from a JSON file; UserError if it is missing, unreadable or not a calibration."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no calibration file at '{path}'") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read calibration '{path}': {e}") from None
    kind = record.get("kind") if isinstance(record, dict) else None
    if kind != "calibration":
        raise UserError(f"'{path}' is not a calibration record (kind={kind!r})")
    if record.get("schema_version", 0) > SCHEMA_VERSION:
        raise UserError(f"'{path}' has schema version {record['schema_version']}; "
                        f"this zo2bench reads up to {SCHEMA_VERSION}")
    return record


# What must agree for a calibration to stand for another run (probes.fingerprint keys). PCIe by its "max"
# link: the "current" generation drops while the GPU idles, so it differs between two runs of one machine.
MACHINE_KEYS = ("gpu", "gpu_driver_version", "pcie_gen_max", "pcie_width_max", "hostname")


def machine_key(fp: dict) -> tuple:
    return tuple(fp.get(k) for k in MACHINE_KEYS)


def same_machine(fp_a: dict, fp_b: dict) -> bool:
    return machine_key(fp_a) == machine_key(fp_b)


def _device_kind(device: str | None) -> str | None:
    return None if device is None else ("cuda" if str(device).startswith("cuda") else "cpu")


def find_calibration(results_dir, fingerprint: dict, device: str | None = None) -> dict | None:
    """The newest calibration under results_dir (searched recursively) taken on the machine `fingerprint`
    describes, with "source_path" added so the caller can say which one it reuses; None if there is none.
    With `device` ("cpu", "cuda:0", ...), only one measured on that kind of device: a CPU calibration of a
    GPU machine has no link figures, a GPU one has no CPU matmul rates."""
    root = Path(results_dir)
    if not root.is_dir():
        return None
    found = []
    for path in root.rglob("*.json"):
        try:
            record = load_calibration(path)
        except UserError:  # run records and anything else that is not a calibration
            continue
        measured_on = _device_kind((record.get("settings") or {}).get("device"))
        if device is not None and measured_on != _device_kind(device):
            continue
        if same_machine(record.get("fingerprint") or {}, fingerprint):
            found.append((record.get("created_utc", ""), str(path), record))
    if not found:
        return None
    created, path, record = max(found, key=lambda t: (t[0], t[1]))
    return {**record, "source_path": path}


def store_calibration(record: dict, results_dir="results") -> Path:
    """Write `record` where find_calibration looks first:
    <results_dir>/calibration/<machine_id>/calibration-<UTC>.json (the layout of the committed ones)."""
    from zo2bench.probes.fingerprint import machine_id
    from zo2bench.results import write_json_atomic

    stamp = datetime.datetime.fromisoformat(record["created_utc"]).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(results_dir) / "calibration" / machine_id(record["fingerprint"])
    path, n = folder / f"calibration-{stamp}.json", 1
    while path.exists():
        n += 1
        path = folder / f"calibration-{stamp}-{n}.json"
    write_json_atomic(path, record)
    return path


def stored_or_measured(results_dir, fingerprint: dict, device: str) -> tuple[dict, str]:
    """This machine's calibration for `device`: a stored one if there is one, else measured now (with the
    device's default sizes) and stored under results_dir, so that the next call finds it. Returns the record
    and a line that says which it was."""
    stored = find_calibration(results_dir, fingerprint, device)
    if stored is not None:
        return stored, f"stored, same machine: {stored['source_path']}"
    _log(f"no stored calibration of this machine for {device} under {results_dir}/; measuring one now, "
         f"once: it is stored for the next run")
    record = calibrate(device)
    try:
        path = store_calibration(record, results_dir)
    except OSError as e:  # a read-only results folder costs the reuse, not this run
        _log(f"could not store the calibration under {results_dir}/ ({e.strerror or e}); it is used for this run only")
        return record, "measured in this run (not stored)"
    _log(f"stored as {path}")
    return record, f"measured in this run, stored as {path}"


def format_table(record: dict) -> str:
    """The figures as an aligned text table, with what was not measured and why."""
    s = record["settings"]
    lines = [f"calibration on {s['device']}: copies of {s['size_gib']:g} GiB, matmuls {s['matmul_n']}^3, "
             f"median of {s['repeats']} ({record['elapsed_s']:.1f} s)  [GB = 1e9 bytes]",
             f"{'figure':34s} {'median':>10s} {'min':>10s} {'max':>10s}"]
    for key, fig in record["figures"].items():
        if fig is None:
            lines.append(f"{key:34s} {'-':>10s}  not measured: {record['not_measured'].get(key, '')}")
        else:
            digits = 1 if fig["median"] >= 10 else 4
            lines.append(f"{key:34s} {fig['median']:10.{digits}f} {fig['min']:10.{digits}f} {fig['max']:10.{digits}f}")
    return "\n".join(lines)
