"""One run of the engine made into a record: allocator peaks per phase, the fingerprint, the schema.

    record = measured_run(cfg, on_phase=probes.phase, on_step=progress)   # commands/run.py, the sweep's
    record["memory"]["measured"]["torch_peak_allocated_bytes"]            # cell, bench-step

The engine (engine/trainer.py) runs steps and says when each phase begins; this layer is the one that
watches: it resets torch's allocator peaks as a phase begins and reads them as it ends, and adds the
machine's fingerprint (computed once, after the run, when CUDA is up and the GPU can be matched by UUID)
and the schema version. The record's layout is in zo2bench/results.py.

    once = BuildOnce()                                   # several configurations on one built model
    recs = [measured_run(c, builder=once) for c in cfgs] # (bench-step --batches 1,8); once.close() after
"""
from __future__ import annotations

from collections.abc import Callable

from zo2bench.config import RunConfig
from zo2bench.errors import UserError
from zo2bench.probes.fingerprint import fingerprint as machine_fingerprint
from zo2bench.probes.torchmem import read_peak, reset_peak
from zo2bench.results import SCHEMA_VERSION

PEAK_PHASES = ("build", "warmup", "measured")  # "done" (flush, digest, release) is not a phase of interest


class PhasePeaks:
    """An on_phase callback that keeps the allocator's peaks of each phase."""

    def __init__(self, device: str):
        self.device, self.current, self.peaks = device, None, {}

    def __call__(self, name: str) -> None:
        if self.current in PEAK_PHASES:
            self.peaks[self.current] = read_peak(self.device)
        self.current = name
        reset_peak(self.device)


def measured_run(cfg: RunConfig, on_phase: Callable[[str], None] | None = None,
                 on_step: Callable[[int, int, dict], None] | None = None, timing: bool = False,
                 fingerprint: dict | None = None, builder=None) -> dict:
    """engine.trainer.run plus what the records need; `fingerprint`: one already taken for this device;
    `builder`: passed to run() (a distributed rank's trainer, zo2bench/distributed/measure.py)."""
    from zo2bench.devices import device_name, resolve_device
    from zo2bench.engine.trainer import run

    if builder is None and (cfg.nproc_per_node > 1 or max(cfg.dp, cfg.pert, cfg.weight_shard) > 1):
        # one process would run it as a one-GPU run and record it as a distributed one
        raise UserError(f"nproc_per_node={cfg.nproc_per_node} dp={cfg.dp} pert={cfg.pert} "
                        f"weight_shard={cfg.weight_shard} needs a distributed launch "
                        "(zo2bench run --nproc-per-node N, or torchrun -m zo2bench run ...)")
    peaks = PhasePeaks(device_name(resolve_device(cfg.device)))  # "auto"/"cuda" -> the GPU the run will use

    def phase(name: str) -> None:
        peaks(name)
        if on_phase:
            on_phase(name)

    out = run(cfg, on_phase=phase, on_step=on_step, timing=timing, builder=builder)
    return {
        "schema_version": SCHEMA_VERSION, "kind": "run", "status": "ok",
        "config": out["config"],
        "model": out["model"],
        "fingerprint": fingerprint or machine_fingerprint(out["config"]["device"]),
        "build": {**out["build"], **peaks.peaks.get("build", {})},
        "offload": out["offload"],
        "steps": out["steps"],
        "step_timing": out["step_timing"],
        **({"cuda_graphs": out["cuda_graphs"]} if out.get("cuda_graphs") else {}),
        "memory": peaks.peaks,
        "final_params_sha256": out["final_params_sha256"],
    }


class BuildOnce:
    """A run() `builder` that builds on its first call and hands the same trainer to every later call, so
    that several configurations (batch, seq) are measured on one built model; close() lets it go.

    Only the shapes of the batches may differ: the model, mode, dtype, device and every other field are
    checked to be the first call's. The weights are not reset between calls: each run continues from the
    weights the previous one left (a reset would need a second copy of them: 350 GB for OPT-175B), and
    run() numbers its steps from 0 again, so later runs reuse the first run's perturbation seeds.
    `build_s` is the one build's seconds; a later run's own "build" phase only returns the trainer."""

    SHAPE = ("batch", "seq")

    def __init__(self, builder=None):
        self.builder, self.trainer, self.first, self.relay, self.build_s = builder, None, None, None, None

    def __call__(self, cfg: RunConfig, spec, dev, timeline=None):
        import time

        from zo2bench.engine.trainer import build_trainer

        if self.trainer is None:
            self.first, self.relay = cfg, (_Relay(timeline) if timeline is not None else None)
            t0 = time.perf_counter()
            self.trainer = (self.builder or build_trainer)(cfg, spec, dev, self.relay)
            self.build_s = time.perf_counter() - t0
        else:
            differ = [k for k, v in cfg.as_dict().items() if k not in self.SHAPE and v != getattr(self.first, k)]
            if differ:
                raise UserError(f"one build measures configurations that differ in {', '.join(self.SHAPE)} only, "
                                f"not in {', '.join(differ)}")
            if self.relay is not None:
                self.relay.target = timeline  # this run's timeline gets the spans from now on
        return _Kept(self.trainer)

    def close(self) -> None:
        if self.trainer is not None:
            self.trainer.close()
            self.trainer = None


class _Relay:
    """The timeline the trainer was built with, passing its spans to the current run's timeline."""

    def __init__(self, target):
        self.target = target

    def span(self, lane, name):
        return self.target.span(lane, name)


class _Kept:
    """The trainer as run() sees it, except that run()'s close() at its end keeps it for the next run."""

    def __init__(self, trainer):
        self._trainer = trainer

    def __getattr__(self, name):
        return getattr(self._trainer, name)

    def close(self) -> None:
        pass
