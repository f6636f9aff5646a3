"""Decoder blocks split across the ranks of a weight group: one host copy per group, one slice per rank.

    layout = ShardLayout(spec.block_params(), ways=4, elem=2)
    store = SharedBlocks(group, layout, torch.float16, n_blocks=spec.layers)   # collective: every rank maps it
    zm = build(spec, dtype, dev, seed, host_blocks=store.next_block)          # blocks land in the shared copy
    weights = ShardedOffloader(zm, store, group, rank, resident=False).attach()
    with weights.use(unit) as theta: ...                                     # the whole block, gathered

The host copy is one memfd (anonymous shared memory) made by the group's first rank and mapped by the
others through /proc/<pid>/fd/<n>: OPT-175B's 350 GB lives once per host, not once per rank, and a
container's small /dev/shm does not limit it. Each block is laid out as `ways` slices of `shard`
elements (page-aligned, the last one padded), and rank r only ever reads and writes slice r of each block:
- streamed (zo2): rank r page-locks its slices (cudaHostRegister of its own range), uploads slice r into
  its place in a device slot over its own PCIe link, and the slot is all-gathered over NVLink (on the
  upload lane, so compute waits for it as for a plain upload); after the update only slice r is copied
  back. No rank reads another's slice of host memory, so ranks need no host-side synchronisation;
- resident (mezo): rank r keeps its slices on its GPU and the slot is all-gathered from them; nothing
  crosses PCIe after attach(). The host copy stays as the place a digest reads the final weights from.
Every rank applies the update to the whole gathered block, as a one-process run does, so every slice
leaves every rank the same. On the CPU (gloo) the same code runs, the copies being plain memory copies.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from zo2bench.engine.offload import BlockOffloader, pin_in_place, release_host_buffer

PAGE = 4096


def all_gather_into(out: torch.Tensor, mine: torch.Tensor, group, async_op: bool = False):
    """out <- the concatenation of every rank's `mine` (equal sizes; `mine` may be this rank's part of out)."""
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # the name before torch 2.12
    return fn(out, mine, group=group, async_op=async_op)


@dataclass(frozen=True)
class ShardLayout:
    numel: int      # elements of one block (decoder blocks share one shape)
    ways: int       # ranks in the weight group
    elem: int       # bytes per element

    @property
    def shard(self) -> int:
        """Elements per rank: numel / ways rounded up to whole pages, so each slice pins alone."""
        per_page = max(1, PAGE // self.elem)
        return -(-self.numel // (self.ways * per_page)) * per_page

    @property
    def stride(self) -> int:
        return self.shard * self.ways

    def own(self, rank: int) -> slice:
        return slice(rank * self.shard, (rank + 1) * self.shard)


class SharedBlocks:
    """Every block's host copy in one shared mapping for the ranks of `group` (collective to create)."""

    def __init__(self, group, layout: ShardLayout, dtype: torch.dtype, n_blocks: int):
        self.layout, self.n_blocks, self.next = layout, n_blocks, 0
        numel = layout.stride * n_blocks
        self.nbytes = numel * layout.elem
        leader = dist.get_global_rank(group, 0)
        where = [None]
        if dist.get_rank() == leader:
            fd = os.memfd_create("zo2bench-blocks")
            os.ftruncate(fd, max(self.nbytes, 1))
            where = [(os.getpid(), fd)]
        dist.broadcast_object_list(where, src=leader, group=group)
        pid, fd = where[0]
        self.flat = torch.from_file(f"/proc/{pid}/fd/{fd}", shared=True, size=numel, dtype=dtype)
        dist.barrier(group=group)  # every rank has mapped it: the leader's descriptor may go
        if dist.get_rank() == leader:
            os.close(fd)

    def block(self, k: int) -> torch.Tensor:
        """Block k's padded region (stride elements)."""
        s = self.layout.stride
        return self.flat[k * s:(k + 1) * s]

    def next_block(self, numel: int) -> torch.Tensor:
        """build()'s host_blocks: the next block's place, in build order. Every rank of the group writes
        the whole block (the same bytes); a barrier after building makes them visible."""
        assert numel == self.layout.numel, "decoder blocks of one shape"
        view = self.block(self.next)[:numel]
        self.next += 1
        return view


class ShardedOffloader(BlockOffloader):
    """BlockOffloader's schedule (slots, lanes, prefetch) with each copy split across a weight group."""

    def __init__(self, zm, store: SharedBlocks, group, rank: int, resident: bool, prefetch: int = 1,
                 timeline=None):
        super().__init__(zm, prefetch=prefetch, resident_blocks=0, timeline=timeline)
        self.store, self.group, self.resident = store, group, resident
        self.own = store.layout.own(rank)
        self.pin = self.device.type == "cuda" and not resident

    def attach(self) -> ShardedOffloader:
        self.host = {}    # block index -> its padded host region
        self.local = {}   # resident: block index -> this rank's slice on the device
        for k, u in enumerate(self.streamed):
            region = self.store.block(k)
            assert u.theta.data_ptr() == region.data_ptr(), "built into the shared store, in order"
            self.host[u.index] = region
            mine = region[self.own]
            if self.resident:
                self.local[u.index] = mine.to(self.device, copy=True)
            elif self.pin and not pin_in_place(mine):
                raise RuntimeError(f"cudaHostRegister failed for a {mine.numel() * mine.element_size()}-byte slice")
        self._schedule(self.store.layout.stride)
        return self

    def _mine(self, unit) -> torch.Tensor:
        return self.local[unit.index] if self.resident else self.host[unit.index][self.own]

    def _fill(self, slot: torch.Tensor, unit) -> None:
        part = slot[self.own]
        part.copy_(self._mine(unit), non_blocking=True)
        # On NCCL the gather's stream waits for this lane and wait() makes this lane wait for the gather,
        # so the upload-done event recorded after it covers both.
        all_gather_into(slot[:self.store.layout.stride], part, self.group, async_op=True).wait()

    def _drain(self, slot: torch.Tensor, unit) -> None:
        self._mine(unit).copy_(slot[self.own], non_blocking=True)

    def publish(self) -> None:
        """Resident slices into the host copy, so that the whole weights can be read there (digest)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        for index, part in self.local.items():
            self.host[index][self.own].copy_(part)

    def detach(self) -> None:
        raise NotImplementedError("sharded blocks are not put back on one device; close() ends a run")

    def close(self) -> None:
        self._stop()
        if self.pin:
            for region in self.host.values():
                release_host_buffer(region[self.own])
        self.local = {}

    def host_bytes(self) -> int:
        """Bytes this rank page-locks (its slices); the shared copy itself: SharedBlocks.nbytes."""
        return 0 if self.resident else len(self.host) * self.store.layout.shard * self.store.layout.elem

    def resident_count(self) -> int:
        return len(self.streamed) if self.resident else 0
