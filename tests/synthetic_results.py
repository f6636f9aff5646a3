"""A results folder written by the tests themselves: sweep rows of the real schema whose numbers come from
the analysis's own models with known constants, plus a calibration record.

    truth = write(tmp_path / "results")          # returns TRUTH (the constants the rows were made from)

Memory of each view: the physical model of analysis.models with MEMORY_TRUTH's constants, times a small
deterministic scatter; step time: the overlap model with TIME_TRUTH's constants. So a fit that works recovers
the constants, and one that does not shows it.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from zo2bench.analysis.models import TIME_MODELS, VIEWS, Shape, memory_models
from zo2bench.catalog import get

MACHINE = "testgpu-80gb"
CALIBRATION = {"h2d_pinned_gb_per_s": 50.0, "d2h_pinned_gb_per_s": 50.0, "both_directions_pinned_gb_per_s": 80.0,
               "device_mem_rw_gb_per_s": 3000.0, "matmul_fp16_tflop_per_s": 600.0, "matmul_bf16_tflop_per_s": 650.0}
# physical model constants per (view group, mode): coefficients, then the fixed bytes
MEMORY_TRUTH = {
    ("gpu", "zo2"): (1.5, 2.5, 12.0, 9e8),
    ("gpu", "mezo"): (1.03, 13.0, 9e8),
    ("host", "zo2"): (1.02, 1.1e9),
    ("host", "mezo"): (0.05, 1.2e9),
}
TIME_TRUTH = (1.1, 10.0, 0.015)      # a, d, c of the overlap model
MEMORY_MODELS = ("opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b")
GRID_MODELS = ("opt-125m", "opt-1.3b", "opt-6.7b")
SCATTER = 0.004                       # relative, deterministic


def _calibration_record() -> dict:
    return {"schema_version": 1, "kind": "calibration", "created_utc": "2026-01-01T00:00:00+00:00",
            "fingerprint": _fingerprint(), "figures": {k: {"n": 5, "median": v} for k, v in CALIBRATION.items()},
            "settings": {"device": "cuda:0"}}


def _fingerprint(dirty=False) -> dict:
    return {"gpu": "Test GPU 80GB", "gpu_total_memory_bytes": 80 * 2**30, "gpu_uuid": "GPU-test", "torch": "2.x",
            "gpu_driver_version": "1.0", "host_memory_bytes": 256 * 2**30, "pcie_gen_current": 5,
            "pcie_width_current": 16, "git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": dirty}


def _group(view):
    return VIEWS[view][2]


def memory_of(shape: Shape, view: str) -> float:
    where = _group(view)
    p = MEMORY_TRUTH[(where, shape.mode)]
    model = memory_models(shape.mode, view)[0]
    return float(model.f(model.x([shape]), np.array(p))[0])


def step_of(shape: Shape) -> float:
    m = TIME_MODELS["overlap"]
    return float(m.f(m.x([shape], {"figures": CALIBRATION}), np.array(TIME_TRUTH))[0])


def row(series: str, model: str, mode: str, batch: int, seq: int, rng: random.Random, dirty=False) -> dict:
    spec = get(model)
    shape = Shape(spec, mode, "fp16", batch, seq)
    jitter = lambda v: v * (1 + rng.uniform(-SCATTER, SCATTER))
    views = {}
    for phase in ("build", "warmup", "measured"):
        views[phase] = {"phase": phase, **{VIEWS[v][0]: int(jitter(memory_of(shape, v)) * (0.9 if phase == "build"
                                                                                              else 1.0))
                                           for v in VIEWS if (_group(v), mode) in MEMORY_TRUTH}}
        if mode != "zo2":
            views[phase]["pinned_peak_bytes"] = 0
    t = jitter(step_of(shape))
    key = f"{series}:gpu:{model}:{mode}:fp16:b{batch}:s{seq}:r0"
    return {"schema_version": 1, "kind": "sweep_cell", "series": series, "profile": "gpu", "key": key,
            "cell": {"model": model, "mode": mode, "dtype": "fp16", "batch": batch, "seq": seq, "repeat": 0},
            "config": {"model": model, "mode": mode, "batch": batch, "seq": seq, "dtype": "fp16", "device": "cuda:0"},
            "n_params": spec.n_params(), "machine_id": MACHINE, "status": "ok", "reason": None,
            "step_time_s": {"n": 5, "median": t, "q1": t * 0.99, "q3": t * 1.01},
            "tokens_per_s": batch * seq / t, "offload": {"resident_blocks": 0},
            "probes": {"phases": {"measured": {"energy_j": 300.0 * 5 * t}}},
            "memory": {"views": views}, "fingerprint": _fingerprint(dirty)}


def write(results: Path, *, grid=True) -> dict:
    rng = random.Random(7)
    d = results / "memory_scaling" / MACHINE
    d.mkdir(parents=True)
    with open(d / "20260101T000000Z.jsonl", "w") as f:
        for mode in ("zo2", "mezo"):
            for m in MEMORY_MODELS:
                f.write(json.dumps(row("memory_scaling", m, mode, 1, 2048, rng)) + "\n")
    if grid:
        d = results / "throughput_scaling" / MACHINE
        d.mkdir(parents=True)
        with open(d / "20260101T010000Z.jsonl", "w") as f:
            for m in GRID_MODELS:
                for mode in ("zo2", "mezo"):
                    for batch in (1, 4, 16):
                        for seq in (512, 2048):
                            f.write(json.dumps(row("throughput_scaling", m, mode, batch, seq, rng,
                                                   dirty=(m == "opt-125m"))) + "\n")
    c = results / "calibration" / MACHINE
    c.mkdir(parents=True)
    (c / "calibration-20260101T000000Z.json").write_text(json.dumps(_calibration_record(), indent=1))
    return {"memory": MEMORY_TRUTH, "time": TIME_TRUTH}
