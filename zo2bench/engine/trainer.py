"""Run one configuration end to end and return what it measured.

    out = run(RunConfig(model="opt-125m", mode="zo2", steps=5, seq=64, dtype="fp32", device="cpu"))
    out["steps"][0]["loss"], out["final_params_sha256"]

The engine only runs steps and times them; it knows nothing of probes or records. `on_phase(name)` is
called as "build", "warmup", "measured" and "done" (flush, digest, release) begin, and `on_step(i,
total, row)` after each step, so that probes, allocator peaks and progress bars can follow; the caller
(zo2bench/measure.py) adds the fingerprint, the memory peaks and the schema. Step times are wall-clock
around a step that ends in a device synchronisation (reading the losses), so they are honest on a GPU;
batches are made before the timed region. A CUDA run happens with its GPU as the current device, so
streams and kernels of `--device cuda:1` land on that GPU.
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
    return spec, dev, resolve_dtype(cfg.dtype, dev)


def model_summary(spec) -> dict:
    return {"name": spec.name, "family": spec.family, "n_params": spec.n_params(), "n_blocks": spec.layers,
            "block_params": spec.block_params(), "embed_params": spec.embed_params(),
            "head_params": spec.head_params(), "tied_head": spec.tied, "source": spec.source}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


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
    timeline = Timeline() if timing and dev.type == "cuda" else None
    trainer = builder(cfg, spec, dev, timeline)
    _sync(dev)
    build_s = time.perf_counter() - t0

    total = cfg.warmup + cfg.steps
    batches = random_batches(spec.vocab, cfg, total, lambda ids: make_batch(ids, dev))
    steps = []
    try:
        for t in range(total):
            if t == 0 or t == cfg.warmup:
                on_phase("warmup" if t < cfg.warmup else "measured")
            _sync(dev)
            t0 = time.perf_counter()
            out = {k: v.item() for k, v in trainer.step(batches[t], t).items()}  # .item() waits for the step
            seconds = time.perf_counter() - t0  # with or without a timeline: its wait below is not the step's
            row = {"step": t, "warmup": t < cfg.warmup, **out}
            if timeline is not None:
                row["lanes_ms"] = timeline.collect()
            row["seconds"] = seconds
            if not all(math.isfinite(v) for v in out.values()):
                raise NonFiniteLoss(t, cfg.seed, out.get("loss_plus", out["loss"]), out.get("loss_minus"))
            steps.append(row)
            if on_step:
                on_step(t, total, row)
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
