"""A distributed run on this rank, and its ranks' records merged into one on rank 0.

    world = World.from_env()                                 # inside a process torchrun started
    record = run_rank(cfg, world, on_phase=..., on_step=...) # every rank; rank 0 gets the record, others None
    with rank_session(cfgs[0], world) as session:           # several configurations on one build
        recs = [measure_rank(c, world, session, builder=once) for c in cfgs]   # once: measure.BuildOnce

Every rank runs zo2bench.measure.measured_run with its part of the work (zo_dist.make_builder), so each
has its own allocator peaks and step times; rank 0 gathers them (all_gather_object, once, after the run)
and writes one record:
- "steps": rank 0's rows (every rank's losses and g are checked to be identical), each step's "seconds"
  the slowest rank's and "rank_seconds" every rank's;
- "memory": per phase and counter, the largest of the ranks' peaks (what one GPU must hold); every
  rank's own peaks under "distributed.ranks";
- "fingerprint": rank 0's machine, plus "distributed": world size, strategy and every rank's device and GPU;
- "distributed": the degrees (parallel.ParallelDims.as_dict), the backend, dp_reduce and, per rank,
  {rank, local_rank, hostname, device, gpu, gpu_uuid, gpu_bus_id, memory, final_params_sha256}.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

from zo2bench.config import RunConfig
from zo2bench.distributed.parallel import ParallelDims, World

RANK_GPU_KEYS = ("gpu", "gpu_uuid", "gpu_bus_id", "gpu_total_memory_bytes", "hostname")


def resolve(cfg: RunConfig, world: World) -> tuple[ParallelDims, str]:
    """The degrees and this rank's device name ("cuda:<local rank>" or "cpu"); UserError before any launch."""
    from zo2bench.devices import resolve_device

    dev = resolve_device(cfg.device.split(":")[0])  # "cuda:1" is refused by ParallelDims.check below
    gpus = None
    if dev.type == "cuda":
        import torch

        gpus = torch.cuda.device_count()
    dims = ParallelDims.resolve(cfg, world.size, world.local_size, gpus)
    return dims, ("cpu" if dev.type == "cpu" else f"cuda:{world.local_rank}")


@contextmanager
def process_group(world: World, device: str):
    """torch.distributed initialised for this rank (NCCL on a GPU, gloo on the CPU), torn down after."""
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl", rank=world.rank, world_size=world.size, device_id=torch.device(device))
    else:
        dist.init_process_group("gloo", rank=world.rank, world_size=world.size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def run_rank(cfg: RunConfig, world: World, on_phase: Callable[[str], None] | None = None,
             on_step: Callable[[int, int, dict], None] | None = None, timing: bool = False) -> dict | None:
    """cfg on this rank (the process group is set up and torn down here); rank 0 returns the merged record."""
    with rank_session(cfg, world) as session:
        return measure_rank(cfg, world, session, on_phase=on_phase, on_step=on_step, timing=timing)


@contextmanager
def rank_session(cfg: RunConfig, world: World):
    """(degrees, this rank's device, mesh) inside an initialised process group, for one or several
    measure_rank calls (bench-step --batches: several configurations on one build)."""
    dims, device = resolve(cfg, world)
    with process_group(world, device):
        yield dims, device, dims.build_mesh("cuda" if device.startswith("cuda") else "cpu")


def measure_rank(cfg: RunConfig, world: World, session, on_phase=None, on_step=None, timing: bool = False,
                 builder=None) -> dict | None:
    """One measured run of cfg on this rank inside rank_session's `session`; rank 0 returns the merged
    record, the others None. `builder`: a measure.BuildOnce to build through (its inner builder is set to
    this rank's, zo_dist.make_builder(mesh)), or None for a build of this run's own."""
    import torch.distributed as dist

    from zo2bench.distributed.zo_dist import make_builder
    from zo2bench.measure import measured_run

    dims, device, mesh = session
    cfg = cfg.replace(device=device, nproc_per_node=world.local_size)
    if builder is None:
        builder = make_builder(mesh)
    elif builder.builder is None:
        builder.builder = make_builder(mesh)
    record = measured_run(cfg, on_phase=on_phase, on_step=on_step, timing=timing, builder=builder)
    fp = record["fingerprint"]
    mine = {"rank": world.rank, "local_rank": world.local_rank, "device": device,
            **{k: fp.get(k) for k in RANK_GPU_KEYS}, "memory": record["memory"],
            "seconds": [s["seconds"] for s in record["steps"]],
            "results": [[s.get(k) for k in ("loss_plus", "loss_minus", "projected_grad")] for s in record["steps"]],
            "final_params_sha256": record["final_params_sha256"]}
    ranks: list = [None] * world.size
    dist.all_gather_object(ranks, mine)
    if world.rank != 0:
        return None
    return merge(record, ranks, dims, dist.get_backend(), cfg.dp_reduce)


def merge(record: dict, ranks: list[dict], dims: ParallelDims, backend: str, dp_reduce: str) -> dict:
    """Rank 0's record with every rank's step times, peaks and devices (ranks: one dict per rank)."""
    first = ranks[0]
    for r in ranks[1:]:
        if r["results"] != first["results"] or r["final_params_sha256"] != first["final_params_sha256"]:
            raise RuntimeError(f"rank {r['rank']} ended with other losses or weights than rank 0: the ranks "
                               "did not apply the same updates")
    steps = [{**s, "seconds": max(r["seconds"][i] for r in ranks), "rank_seconds": [r["seconds"][i] for r in ranks]}
             for i, s in enumerate(record["steps"])]
    per_rank = [{k: v for k, v in r.items() if k not in ("seconds", "results")} for r in ranks]
    devices = [{k: r[k] for k in ("rank", "hostname", "device", "gpu", "gpu_uuid", "gpu_bus_id")} for r in ranks]
    summary = {**dims.as_dict(), "backend": backend, "dp_reduce": dp_reduce, "ranks": per_rank}
    return {**record, "steps": steps, "memory": _largest([r["memory"] for r in ranks]),
            "fingerprint": {**record["fingerprint"],
                            "distributed": {"world_size": dims.world, "strategy": dims.strategy, "ranks": devices}},
            "distributed": summary}


def _largest(peaks: list[dict]) -> dict:
    """Per phase and counter, the largest value any rank had (None where no rank measured it)."""
    out: dict = {}
    for phases in peaks:
        for phase, counters in phases.items():
            slot = out.setdefault(phase, {})
            for k, v in counters.items():
                slot[k] = v if slot.get(k) is None else (slot[k] if v is None else max(slot[k], v))
    return out
