"""Run one configuration end to end and return what it measured.

    out = run(RunConfig(model="opt-125m", mode="zo2", steps=5, seq=64, dtype="fp32", device="cpu"))
    out["steps"][0]["loss"], out["final_params_sha256"]

The engine only runs steps and times them; it knows nothing of probes or records. `on_phase(name)` is
called as "build", "warmup", "measured" and "done" (flush, digest, release) begin, and `on_step(i,
total, row)` after each step, so that probes, allocator peaks and progress bars can follow; the caller
(zo2bench/measure.py) adds the fingerprint, the memory peaks and the schema. Batches are made before
the timed region. A CUDA run happens with its GPU as the current device, so streams and kernels of
`--device cuda:1` land on that GPU.

Steps are pipelined: step t+1 is queued before step t's losses are read (the update needs only g on the
device), so the device does not idle while the host reads a loss and launches the next step's first
kernels, and zo2's upload lane runs from one step into the next. A step's "seconds" runs from the later of
the previous step's completion and its own launch to its own completion: on a GPU, CUDA events recorded
on the compute stream before and after the step's launch (the device reaches the first when both have
happened), so a step waiting for its launch counts that wait and one waiting for its predecessor does
not count the predecessor; on a CPU, where a step runs as it is launched, the wall clock around it.
That is the period a training loop runs at. A step's losses are read, and a non-finite one reported, one
step late. Phases start from an idle device: the last step of a phase is read before the next begins.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch

from zo2bench import catalog
from zo2bench.config import RunConfig, check
from zo2bench.devices import device_name, resolve_device, resolve_dtype, torch_dtype
from zo2bench.errors import GPUOutOfMemory, NonFiniteLoss, UserError


def validate(cfg: RunConfig):
    """The model spec, the device and the run's dtype name, or a UserError that says what is wrong."""
    check(cfg)
    spec = catalog.resolve(cfg.model)
    if cfg.seq > spec.positions:
        raise UserError(f"--seq {cfg.seq} is longer than {spec.name}'s {spec.positions} positions")
    dev = resolve_device(cfg.device)
    if cfg.gpu_budget_gib is not None and dev.type != "cuda":
        raise UserError("--gpu-budget keeps blocks resident on a GPU; this run is on the CPU")
    if cfg.cuda_graphs and dev.type != "cuda":
        raise UserError("--cuda-graphs captures CUDA kernels; this run is on the CPU")
    return spec, dev, resolve_dtype(cfg.dtype, dev)


def model_summary(spec) -> dict:
    return {"name": spec.name, "family": spec.family, "n_params": spec.n_params(), "n_blocks": spec.layers,
            "block_params": spec.block_params(), "embed_params": spec.embed_params(),
            "head_params": spec.head_params(), "tied_head": spec.tied, "source": spec.source}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _stamp(dev: torch.device):
    """A point in the step stream: a CUDA event on the current stream, or the wall clock on a CPU."""
    if dev.type != "cuda":
        return time.perf_counter()
    ev = torch.cuda.Event(enable_timing=True)
    ev.record()
    return ev


def _elapsed_s(start, end) -> float:
    if isinstance(start, float):
        return end - start
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def params_digest(tensors) -> str:
    """sha256 over the sha256 of each weight tensor, in a fixed order: two runs compare without storing
    weights. Tensors hash in parallel (hashlib releases the GIL): 60 GB of OPT-30B in seconds, not minutes."""
    from concurrent.futures import ThreadPoolExecutor

    def one(t):
        return hashlib.sha256(t.detach().contiguous().cpu().view(torch.uint8).numpy()).digest()

    with ThreadPoolExecutor(max_workers=8) as pool:
        parts = list(pool.map(one, tensors))
    return hashlib.sha256(b"".join(parts)).hexdigest()


def random_batches(vocab: int, cfg: RunConfig, n: int, make_batch):
    gen = torch.Generator().manual_seed(cfg.seed)
    return [make_batch(torch.randint(0, vocab, (cfg.batch, cfg.seq), generator=gen)) for _ in range(n)]


def run(cfg: RunConfig, on_phase: Callable[[str], None] | None = None,
        on_step: Callable[[int, int, dict], None] | None = None, timing: bool = False,
        builder: Callable | None = None) -> dict:
    """`timing`: each ZO step's row gets "lanes_ms", the busy time of upload, compute and offload
    measured with CUDA events (bench-step); off by default, as the events cost a little. `builder`:
    build_trainer's stand-in, with its signature and face (a distributed rank's, zo2bench/distributed)."""
    spec, dev, dtype = validate(cfg)
    cfg = cfg.replace(device=device_name(dev), dtype=dtype)
    on_phase = on_phase or (lambda name: None)
    try:
        with torch.cuda.device(dev) if dev.type == "cuda" else nullcontext():
            return _run(cfg, spec, dev, on_phase, on_step, timing, builder or build_trainer)
    except torch.OutOfMemoryError as e:
        raise _oom(cfg, dev, e) from None
    except RuntimeError as e:  # some allocation paths raise plain RuntimeErrors
        if "out of memory" in str(e).lower() and dev.type == "cuda":
            raise _oom(cfg, dev, e) from None
        raise


def _oom(cfg, dev, e) -> GPUOutOfMemory:
    total = torch.cuda.get_device_properties(dev).total_memory
    return GPUOutOfMemory(cfg.as_dict(), torch.cuda.memory_allocated(dev), torch.cuda.memory_reserved(dev),
                          total, detail=str(e).splitlines()[0][:300])


def build_trainer(cfg: RunConfig, spec, dev, timeline=None):
    """The mode's trainer, ready to step. Every mode has the same face: step(batch, t) -> {name: 0-d tensor}
    (always "loss"), flush(), parameters(), offload_info(), close()."""
    from zo2bench.engine.fo import FirstOrder
    from zo2bench.engine.model import build
    from zo2bench.engine.offload import BlockOffloader, Resident, host_buffer
    from zo2bench.engine.zo import MeZO

    dtype = torch_dtype(cfg.dtype)
    if cfg.mode == "mezo":
        zm = build(spec, dtype, dev, cfg.seed)
        if cfg.cuda_graphs:  # no lane spans: a capture cannot hold timing events
            from zo2bench.engine.graphs import GraphedMeZO

            return GraphedMeZO(MeZO(zm, Resident(zm), cfg.lr, cfg.eps, cfg.weight_decay, cfg.seed))
        return MeZO(zm, Resident(zm, timeline), cfg.lr, cfg.eps, cfg.weight_decay, cfg.seed)
    if cfg.mode == "zo2":
        zm = build(spec, dtype, dev, cfg.seed, host_blocks=lambda n: host_buffer(n, dtype, pin=dev.type == "cuda"))
        weights = BlockOffloader(zm, prefetch=cfg.prefetch, resident_blocks=resident_blocks(cfg, spec, zm),
                                 timeline=timeline, writeback_every=cfg.writeback_every).attach()
        return MeZO(zm, weights, cfg.lr, cfg.eps, cfg.weight_decay, cfg.seed)
    return FirstOrder(spec, cfg.mode, dtype, dev, cfg.lr, cfg.weight_decay, cfg.seed)


def _run(cfg, spec, dev, on_phase, on_step, timing, builder) -> dict:
    from zo2bench.engine.model import import_model_class, make_batch
    from zo2bench.engine.offload import Timeline

    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    import_model_class(spec)  # a one-time library import (8-13 s on the GPU machine) is not model building
    import_s = time.perf_counter() - t0

    on_phase("build")
    t0 = time.perf_counter()
    timeline = Timeline() if timing and dev.type == "cuda" and not cfg.cuda_graphs else None
    trainer = builder(cfg, spec, dev, timeline)
    _sync(dev)
    build_s = time.perf_counter() - t0

    total = cfg.warmup + cfg.steps
    batches = random_batches(spec.vocab, cfg, total, lambda ids: make_batch(ids, dev))
    steps = []

    def finish(t, out_dev, start, end, spans):
        out = {k: v.item() for k, v in out_dev.items()}  # .item() waits for step t
        row = {"step": t, "warmup": t < cfg.warmup, **out}
        if timeline is not None:
            row["lanes_ms"] = timeline.collect(spans)  # step t's spans only (step t+1's may be queued)
        row["seconds"] = _elapsed_s(start, end)
        if not all(math.isfinite(v) for v in out.values()):
            raise NonFiniteLoss(t, cfg.seed, out.get("loss_plus", out["loss"]), out.get("loss_minus"))
        steps.append(row)
        if on_step:
            on_step(t, total, row)

    try:
        queued = None  # step t, its losses on the device, its two stamps, the timeline's spans up to its end
        for t in range(total):
            if t == 0 or t == cfg.warmup:
                if queued:
                    finish(*queued)
                    queued = None
                _sync(dev)
                on_phase("warmup" if t < cfg.warmup else "measured")
            start = _stamp(dev)
            out_dev = trainer.step(batches[t], t)
            end = _stamp(dev)
            if queued:
                finish(*queued)
            queued = (t, out_dev, start, end, timeline.mark() if timeline is not None else None)
        if queued:
            finish(*queued)
        on_phase("done")
        trainer.flush()  # the last update lands before the weights are read
        _sync(dev)
        digest = params_digest(trainer.parameters())
        offload = trainer.offload_info()
    finally:
        trainer.close()

    return {
        "config": cfg.as_dict(),
        "model": model_summary(spec),
        "build": {"seconds": build_s, "library_import_s": import_s, "parts_s": getattr(trainer, "build_parts", None)},
        "offload": offload,
        "steps": steps,
        "step_timing": "pipelined",  # the module docstring; records without this key synchronised every step
        # captures, replays, eager steps since the trainer was built (engine/graphs.py), as they stand now
        "cuda_graphs": dict(trainer.info) if getattr(trainer, "info", None) else None,
        "final_params_sha256": digest,
    }


def resident_blocks(cfg: RunConfig, spec, zm) -> int:
    """zo2 with --gpu-budget: how many blocks stay on the device beside the streaming slots."""
    if cfg.gpu_budget_gib is None:
        return 0
    el = torch.empty((), dtype=zm.dtype).element_size()
    fixed = sum(u.numel for u in zm.units if not u.is_block) * el + zm.arena.numel() * el
    slots = (cfg.prefetch + 1) * spec.block_params() * el
    spare = cfg.gpu_budget_gib * 2**30 - fixed - slots
    return max(0, min(spec.layers, int(spare // (spec.block_params() * el))))
