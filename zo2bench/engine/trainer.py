"""Run one configuration end to end and return its record.

    record = run(RunConfig(model="opt-125m", mode="zo2", steps=5, seq=64, dtype="fp32", device="cpu"))
    record["steps"][0]["loss_plus"], record["final_params_sha256"]

`on_phase(name)` is called as "build", "warmup" and "measured" begin, and `on_step(i, total, step)`
after each step, so that probes and progress bars can follow without the engine knowing of them.
Step times are wall-clock around a step that ends in a device synchronisation (reading the losses),
so they are honest on a GPU; batches are made before the timed region.
"""
from __future__ import annotations

import hashlib
import math
import time
from typing import Callable

import torch

from zo2bench import catalog
from zo2bench.config import DTYPES, MODES, ZO_MODES, RunConfig
from zo2bench.engine.model import DTYPES as TORCH_DTYPES
from zo2bench.errors import GPUOutOfMemory, NonFiniteLoss, UserError
from zo2bench.probes.torchmem import read_peak, reset_peak


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but this machine has no CUDA GPU (torch {torch.__version__}); "
                        f"use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device '{name}'; use cpu or cuda")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def validate(cfg: RunConfig):
    """The model spec and the device, or a UserError that says what is wrong."""
    if cfg.mode not in MODES:
        raise UserError(f"unknown mode '{cfg.mode}'; choose one of {', '.join(MODES)}")
    if cfg.dtype not in DTYPES:
        raise UserError(f"unknown dtype '{cfg.dtype}'; choose one of {', '.join(DTYPES)}")
    for name in ("steps", "batch"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name} must be at least 1 (got {getattr(cfg, name)})")
    if cfg.warmup < 0 or cfg.prefetch < 0:
        raise UserError("--warmup and --prefetch must not be negative")
    spec = catalog.resolve(cfg.model)
    if cfg.seq < 2:
        raise UserError(f"--seq must be at least 2 (a next-token loss needs two tokens; got {cfg.seq})")
    if cfg.seq > spec.positions:
        raise UserError(f"--seq {cfg.seq} is longer than {spec.name}'s {spec.positions} positions")
    return spec, resolve_device(cfg.device)


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
        on_step: Callable[[int, int, dict], None] | None = None, timing: bool = False) -> dict:
    """`timing`: each ZO step's row gets "lanes_ms", the busy time of upload, compute and offload
    measured with CUDA events (bench-step); off by default, as the events cost a little."""
    spec, dev = validate(cfg)
    on_phase = on_phase or (lambda name: None)
    try:
        return _run(cfg, spec, dev, on_phase, on_step, timing)
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


def _run(cfg, spec, dev, on_phase, on_step, timing) -> dict:
    from zo2bench.engine.fo import FirstOrder
    from zo2bench.engine.model import build, import_model_class, make_batch
    from zo2bench.engine.offload import BlockOffloader, Resident, Timeline, host_buffer
    from zo2bench.engine.zo import MeZO

    dtype = TORCH_DTYPES[cfg.dtype]
    torch.manual_seed(cfg.seed)
    memory, weights, timeline, build_parts = {}, None, None, None

    t0 = time.perf_counter()
    import_model_class(spec)  # a one-time library import (8-13 s on the GPU machine) is not model building
    import_s = time.perf_counter() - t0
    on_phase("build")
    reset_peak(dev)
    t0 = time.perf_counter()
    if cfg.mode in ZO_MODES:
        host = (lambda n: host_buffer(n, dtype, pin=dev.type == "cuda")) if cfg.mode == "zo2" else None
        zm = build(spec, dtype, dev, cfg.seed, host_blocks=host)
        timeline = Timeline() if timing and dev.type == "cuda" else None
        if cfg.mode == "zo2":
            weights = BlockOffloader(zm, prefetch=cfg.prefetch, resident_blocks=resident_blocks(cfg, spec, zm),
                                     timeline=timeline).attach()
        else:
            weights = Resident(zm, timeline)
        trainer = MeZO(zm, weights, cfg.lr, cfg.eps, cfg.weight_decay, cfg.seed)
        build_parts = zm.build_parts
    else:
        trainer = FirstOrder(spec, cfg.mode, dtype, dev, cfg.lr, cfg.weight_decay, cfg.seed)
    _sync(dev)
    build_s = time.perf_counter() - t0
    memory["build"] = read_peak(dev)

    total = cfg.warmup + cfg.steps
    batches = random_batches(spec.vocab, cfg, total, lambda ids: make_batch(ids, dev))
    steps = []
    try:
        for t in range(total):
            if t == 0 or t == cfg.warmup:
                if t > 0:
                    memory["warmup"] = read_peak(dev)
                phase = "warmup" if t < cfg.warmup else "measured"
                on_phase(phase)
                reset_peak(dev)
            _sync(dev)
            t0 = time.perf_counter()
            if cfg.mode in ZO_MODES:
                lp, lm, g = trainer.step(batches[t], t)
                lp, lm, g = lp.item(), lm.item(), g.item()  # waits for the step's last kernel
                row = {"step": t, "warmup": t < cfg.warmup, "loss_plus": lp, "loss_minus": lm, "projected_grad": g}
                if timeline is not None:
                    row["lanes_ms"] = timeline.collect()
                bad = not (math.isfinite(lp) and math.isfinite(lm))
            else:
                loss = trainer.step(batches[t]).item()
                row = {"step": t, "warmup": t < cfg.warmup, "loss": loss}
                lp, lm, bad = loss, None, not math.isfinite(loss)
            row["seconds"] = time.perf_counter() - t0
            if bad:
                raise NonFiniteLoss(t, cfg.seed, lp, lm)
            steps.append(row)
            if on_step:
                on_step(t, total, row)
        memory["measured"] = read_peak(dev)
        if cfg.mode in ZO_MODES:
            trainer.flush()  # the last update lands before the weights are read
            _sync(dev)
            digest = params_digest(u.theta for u in zm.units)
            host_bytes, resident = weights.host_bytes(), weights.resident_count()
        else:
            digest = params_digest(trainer.parameters())
            host_bytes, resident = 0, None
    finally:
        if weights is not None:
            weights.close()

    from zo2bench.probes.fingerprint import fingerprint
    from zo2bench.results import SCHEMA_VERSION

    return {
        "schema_version": SCHEMA_VERSION, "kind": "run", "status": "ok",
        "config": cfg.as_dict() | {"device": str(dev)},
        "model": model_summary(spec),
        "fingerprint": fingerprint(),
        "build": {"seconds": build_s, "library_import_s": import_s, "parts_s": build_parts, **memory["build"]},
        "offload": {"pinned_host_bytes": host_bytes, "resident_blocks": resident},
        "steps": steps,
        "memory": memory,
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
