"""Host memory a run will hold, against what this host has free: checked before anything is built or pinned.

    verdict = host_feasibility(cfg)             # None when it fits, else {"reason", "need_bytes", ...}
    host_need(cfg, spec, ranks_per_host=4)      # {"bytes": ..., "what": "one shared copy of ... per host"}
    available_host_bytes()                      # {"bytes": ..., "source": "cgroup memory.max - memory.current"}

Without this check an OPT-66B zo2 run on a 128 GiB host is killed by the kernel minutes into building
(SIGKILL, no record); with it, `run`, `bench-step` and the sweep say `infeasible` with both figures.

What a run holds in host memory (per host, the weights only; activations live on the GPU):
- zo2 on a GPU: every decoder block, pinned (the embeddings and head live on the GPU);
- a distributed run: the blocks once per weight group (one shared copy for `--weight-shard` = the ranks of
  the host, padded to whole pages per slice), or once per rank without sharding (`--weight-shard 1`);
  ranks on the CPU also each hold the embeddings and head;
- a CPU run: the whole model (fo-*: fp32 masters and gradients, 8 B/param; fo-adamw 16 B/param).

What is free: the cgroup's limit less its usage where a limit is set (the kernel kills at the limit, not
at MemTotal), else MemAvailable. Some VMs grow their memory as it is used (MemTotal and MemAvailable start
far below the machine's size, KINDS.md's H200 kinds): there ZO2BENCH_HOST_AVAILABLE_BYTES, set by the
caller from the machine's known size, replaces the reading, and the verdict names that source.
"""
from __future__ import annotations

import os
from pathlib import Path

from zo2bench.config import DTYPE_BYTES, ZO_MODES, RunConfig

GiB = 2**30
OVERRIDE_ENV = "ZO2BENCH_HOST_AVAILABLE_BYTES"
PAGE = 4096  # distributed/shard.py pads each slice to whole pages


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def cgroup_free(root: Path = Path("/sys/fs/cgroup")) -> dict | None:
    """Limit less usage of this process's memory cgroup (v2, then v1); None where no limit is set."""
    for limit_name, usage_name in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, usage = _read_int(root / limit_name), _read_int(root / usage_name)
        if limit is not None and usage is not None and limit < 2**60:  # v1 says "no limit" with a huge number
            return {"bytes": max(0, limit - usage), "source": f"cgroup {limit_name} - {usage_name}",
                    "limit_bytes": limit}
    return None


def available_host_bytes(environ=None, cgroup_root: Path = Path("/sys/fs/cgroup")) -> dict:
    """{"bytes", "source"}: the override, else the smaller of the cgroup's room and MemAvailable."""
    env = os.environ if environ is None else environ
    given = env.get(OVERRIDE_ENV)
    if given:
        try:
            return {"bytes": int(float(given)), "source": f"{OVERRIDE_ENV}={given}"}
        except ValueError:
            from zo2bench.errors import UserError

            raise UserError(f"{OVERRIDE_ENV}={given!r}: expected a number of bytes") from None
    import psutil

    mem = {"bytes": psutil.virtual_memory().available, "source": "psutil virtual_memory().available"}
    cg = cgroup_free(cgroup_root)
    return cg if cg is not None and cg["bytes"] < mem["bytes"] else mem


def _pad(numel: int, ways: int, elem: int) -> int:
    """Elements of one block in the shared copy (ShardLayout.stride, without importing torch)."""
    per_page = max(1, PAGE // elem)
    return -(-numel // (ways * per_page)) * per_page * ways


def host_need(cfg: RunConfig, spec, ranks_per_host: int | None = None, weight_shard: int | None = None) -> dict:
    """Bytes of host memory the run's weights take on one host, and how that was counted.
    `ranks_per_host`, `weight_shard`: the resolved degrees (default: cfg's, weight_shard 0 as the default
    parallel.ParallelDims.resolve picks)."""
    local = ranks_per_host or cfg.nproc_per_node
    dtype = cfg.dtype if cfg.dtype in DTYPE_BYTES else ("fp16" if cfg.device != "cpu" else "fp32")
    elem = DTYPE_BYTES[dtype]
    on_cpu = cfg.device == "cpu"
    if cfg.mode not in ZO_MODES:
        if not on_cpu:
            return {"bytes": 0, "what": f"{cfg.mode} keeps its model states on the GPU"}
        per = 16 if cfg.mode == "fo-adamw" else 8
        return {"bytes": spec.n_params() * per, "what": f"{cfg.mode} on the CPU: {spec.n_params():,} params x {per} B"}
    blocks = spec.layers * spec.block_params() * elem
    rest = (spec.n_params() - spec.layers * spec.block_params()) * elem
    if local <= 1 and max(cfg.dp, cfg.pert, cfg.weight_shard) <= 1:
        if on_cpu:
            return {"bytes": blocks + rest,
                    "what": f"the whole model on the CPU: {spec.n_params():,} params x {elem} B"}
        if cfg.mode == "mezo":
            return {"bytes": 0, "what": "mezo keeps its weights on the GPU"}
        return {"bytes": blocks, "what": f"{spec.layers} {dtype} blocks pinned: {spec.layers} x "
                                         f"{spec.block_params():,} params x {elem} B"}
    w = weight_shard if weight_shard is not None else (cfg.weight_shard or (local if cfg.mode == "zo2" else 1))
    extra = rest * local if on_cpu else 0
    cpu_note = f" + each of {local} CPU ranks' embeddings and head" if on_cpu else ""
    if w > 1:
        copies, shared = local // w, spec.layers * _pad(spec.block_params(), w, elem) * elem
        return {"bytes": copies * shared + extra,
                "what": f"{copies} shared copy(ies) of the {dtype} blocks per host (one per weight group of "
                        f"{w} ranks), {shared:,} B each{cpu_note}"}
    if cfg.mode == "mezo" and not on_cpu:
        return {"bytes": 0, "what": "mezo without --weight-shard keeps every rank's weights on its GPU"}
    return {"bytes": local * blocks + extra,
            "what": f"{local} ranks on this host each with its own copy of the {dtype} blocks "
                    f"({blocks:,} B each; --weight-shard shares one){cpu_note}"}


def host_feasibility(cfg: RunConfig, spec=None, available: dict | None = None, ranks_per_host: int | None = None,
                     weight_shard: int | None = None) -> dict | None:
    """None if the run's host memory fits what is free now, else the verdict a record keeps as `feasibility`."""
    if spec is None:
        from zo2bench import catalog

        spec = catalog.resolve(cfg.model)
    need = host_need(cfg, spec, ranks_per_host, weight_shard)
    if need["bytes"] == 0:
        return None
    free = available or available_host_bytes()
    if need["bytes"] <= free["bytes"]:
        return None
    reason = (f"host memory: needs {need['bytes']:,} B ({need['bytes'] / GiB:.1f} GiB) for {need['what']}, "
              f"but {free['bytes']:,} B ({free['bytes'] / GiB:.1f} GiB) is available ({free['source']})")
    return {"reason": reason, "need_bytes": need["bytes"], "available_bytes": free["bytes"],
            "limit_bytes": free["bytes"], "where": "host", "source": free["source"], "what": need["what"]}
