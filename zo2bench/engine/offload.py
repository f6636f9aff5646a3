"""Where unit weights live between uses: on the device (`Resident`), or streamed from host memory (`BlockOffloader`).

    off = BlockOffloader(zm, prefetch=1).attach()   # decoder blocks move to exactly-sized pinned host buffers
    with off.use(unit) as theta:                    # theta is on the device, its upload waited for
        ...update theta...; off.written(unit)      # the copy back to the host starts now, beside compute
        ...compute with theta...
    off.detach()                                    # every block back where it was, attach()'s pinned pages released

The trainer only calls use(), written() and settle(); it never mentions devices or streams.

Deferred write-back (`writeback_every=K`): an update is a deterministic function of a seed and a scalar, so
written(unit, redo) may keep `redo` (a function that applies this update to a copy of the block) instead of
copying the block back. The next use() uploads the older host copy and replays the kept updates on it, in
order, with the same kernels, before yielding it: the weights the trainer sees are bitwise those of K = 1.
A block is copied back on every K-th visit (staggered across blocks, so each step offloads about 1/K of
them), and by settle(), close() and detach(), so the host copies are current whenever anyone reads them.

Streams and hand-offs: the offloader owns an upload stream and an offload stream; compute runs on the
current stream. Every hand-off is an event wait on the device, never a host-blocking synchronisation:
  compute waits for the upload of the block it uses;
  the offload waits for the compute that updated the block;
  an upload into a slot waits for that slot's last compute and offload (a block's device memory is
  not reused while its copy out is still reading it) and for the block's own last offload (the host
  copy must be fresh).
Device slots are allocated once and reused, so no memory crosses streams through the caching allocator.
`prefetch` blocks are uploaded ahead in visiting order, wrapping into the next step. With no GPU the same
code runs with the CPU as the device: the lanes do nothing and copies complete at once (the host copy
and the slot are still separate tensors, so deferred write-back and its replay run the same way there).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch


class _Lane:
    """One stream, or nothing on the CPU."""

    def __init__(self, device: torch.device, current: bool = False):
        cuda = device.type == "cuda"
        self.stream = (torch.cuda.current_stream(device) if current else torch.cuda.Stream(device)) if cuda else None

    def __call__(self):
        return torch.cuda.stream(self.stream) if self.stream is not None else nullcontext()

    def record(self, event) -> None:
        if self.stream is not None:
            event.record(self.stream)

    def wait(self, *events) -> None:
        if self.stream is not None:
            for e in events:
                self.stream.wait_event(e)


def _event(device: torch.device):
    return torch.cuda.Event() if device.type == "cuda" else None


def _no_span(lane, name):
    return nullcontext()


class Timeline:
    """Busy time per lane ("upload", "compute", "offload"; "replay", on the compute lane, for deferred
    write-back) from CUDA events, read after a synchronisation.

    Compute spans start after the wait for a block's upload, so a stall shows as step time that no
    compute span covers. Costs two timing events per span; off unless asked for (bench-step).
    """

    def __init__(self):
        self.spans: list[tuple[str, object, object]] = []

    def begin(self, lane: _Lane):
        if lane.stream is None:
            return None
        ev = torch.cuda.Event(enable_timing=True)
        lane.record(ev)
        return ev

    def end(self, lane: _Lane, name: str, start) -> None:
        if start is not None:
            ev = torch.cuda.Event(enable_timing=True)
            lane.record(ev)
            self.spans.append((name, start, ev))

    @contextmanager
    def span(self, lane: _Lane, name: str):
        start = self.begin(lane)
        yield
        self.end(lane, name, start)

    def mark(self) -> int:
        """The number of spans recorded so far: collect(mark) takes those only (one step's, with the next
        step already queued behind them)."""
        return len(self.spans)

    def collect(self, upto: int | None = None) -> dict[str, float]:
        """Milliseconds per lane over the oldest `upto` spans not yet collected (all of them by default),
        which are dropped. Waits for each span's end: the loss can be ready while the last blocks' copies
        back are still in flight (llama2-7b zo2 batch 1 on an H100). Marks count from the last collect."""
        upto = len(self.spans) if upto is None else upto
        out: dict[str, float] = {}
        for name, a, b in self.spans[:upto]:
            b.synchronize()
            out[name] = out.get(name, 0.0) + a.elapsed_time(b)
        self.spans = self.spans[upto:]
        return out


def pin_in_place(t: torch.Tensor) -> bool:
    """Page-lock a host tensor's own bytes with cudaHostRegister; False when the driver refuses.

    torch's pin_memory() goes through the caching host allocator, which rounds each allocation up to a
    power of two: 1.3x the weight bytes for OPT-13B/30B block shapes. Registering a plain allocation
    pins exactly its bytes. The one place the project pins in place (the engine and the calibration).
    """
    nbytes = t.numel() * t.element_size()
    if int(torch.cuda.cudart().cudaHostRegister(t.data_ptr(), nbytes, 0)) != 0:
        _clear_cuda_error()
        return False
    _registered[t.data_ptr()] = nbytes
    return True


def _clear_cuda_error() -> None:
    # A failed runtime call leaves its error as CUDA's "last error", which the next kernel launch check
    # would report as its own; one throwaway launch reads and clears it here.
    try:
        torch.ones(1, device="cuda").add_(1)
    except RuntimeError:
        pass


def host_buffer(numel: int, dtype: torch.dtype, pin: bool) -> torch.Tensor:
    """An exactly-sized host buffer, page-locked in place when `pin` (RuntimeError if that fails)."""
    t = torch.empty(numel, dtype=dtype)
    if pin:
        # Touch the pages first with torch's multithreaded fill, so registering only pins pages that exist.
        # In a fresh process this gains little (opt-6.7b's 12.9 GB: 5.7 s against 6.2 s on the H100 host);
        # tools/host_pin_bench.py's 11.4 vs 2.9 GB/s came from pages reused after a free. Faulting fresh pages
        # in is the cost; a pool kept across runs would avoid it.
        t.zero_()
        if not pin_in_place(t):
            raise RuntimeError(f"cudaHostRegister failed for {t.numel() * t.element_size()} bytes")
    return t


def release_host_buffer(t: torch.Tensor) -> None:
    """Unregister a tensor pinned by pin_in_place(); anything else is left alone."""
    if _registered.pop(t.data_ptr(), None) is not None:
        torch.cuda.cudart().cudaHostUnregister(t.data_ptr())


_registered: dict[int, int] = {}  # data_ptr -> bytes registered by pin_in_place() and not yet released


def pinned_bytes() -> int:
    """Bytes currently page-locked by pin_in_place() (the probes' pinned_bytes callback)."""
    return sum(_registered.values())


class Resident:
    """Every unit's weights stay on the working device (MeZO without offloading)."""

    def __init__(self, zm, timeline: Timeline | None = None):
        self.zm, self.span = zm, timeline.span if timeline else _no_span
        self.compute = _Lane(zm.device, current=True)

    @contextmanager
    def use(self, unit):
        with self.span(self.compute, "compute"):
            yield unit.theta

    def written(self, unit, redo=None) -> None:
        pass

    def settle(self) -> None:
        pass

    def host_bytes(self) -> int:
        return 0

    def resident_count(self) -> int:
        return len(self.zm.blocks)

    def close(self) -> None:
        pass


class BlockOffloader:
    def __init__(self, zm, prefetch: int = 1, resident_blocks: int = 0, timeline: Timeline | None = None,
                 writeback_every: int = 1):
        if writeback_every < 1:
            raise ValueError(f"writeback_every must be at least 1, got {writeback_every}")
        self.zm, self.device, self.every = zm, zm.device, writeback_every
        self.span = timeline.span if timeline else _no_span
        blocks = zm.blocks
        self.streamed = blocks[resident_blocks:]  # the first blocks stay on the device when a budget allows
        self.resident_blocks = blocks[:resident_blocks]
        self.prefetch = max(0, min(prefetch, len(self.streamed) - 1))
        self.pin = self.device.type == "cuda"

    # -- attaching and detaching --------------------------------------------------------------
    def attach(self) -> BlockOffloader:
        dev = self.device
        # where each block's weights were, so that detach() can put them back
        self.before = {u.index: (u.theta.device, u.theta.device.type == "cpu" and u.theta.is_pinned())
                       for u in self.zm.blocks}
        self.created = set()  # host buffers attach() made (and so detach() frees)
        for u in self.streamed:
            if u.theta.device.type != "cpu" or (self.pin and not u.theta.is_pinned()):
                host = host_buffer(u.numel, self.zm.dtype, self.pin)
                host.copy_(u.theta)
                u.theta = host
                self.created.add(u.index)
        for u in self.resident_blocks:
            host, u.theta = u.theta, u.theta.to(dev)
            if host.device.type == "cpu":
                release_host_buffer(host)  # a registered buffer must be unregistered before it is freed
        self._schedule(max((u.numel for u in self.streamed), default=0))
        return self

    def _schedule(self, slot_numel: int) -> None:
        """Device slots of slot_numel elements, the three lanes and their events."""
        dev = self.device
        self.slots = [torch.empty(slot_numel, dtype=self.zm.dtype, device=dev) for _ in range(self.prefetch + 1)]
        self.up, self.down, self.compute = _Lane(dev), _Lane(dev), _Lane(dev, current=True)
        self.slot_free = [_event(dev) for _ in self.slots]   # last compute and offload of the slot are done
        self.host_fresh = {u.index: _event(dev) for u in self.streamed}  # the block's last offload is done
        self.uploaded = {}                                   # unit index -> (slot, upload-done event)
        self.order = [u.index for u in self.streamed]
        self.next_slot = 0
        # Deferred write-back: the updates each host copy lacks, oldest first, and visits counted from a
        # per-block phase, so that blocks are copied back on different steps, about 1/K of them a step.
        self.stale = {u.index: [] for u in self.streamed}
        self.visits = {u.index: k % self.every for k, u in enumerate(self.streamed)}

    def detach(self) -> None:
        """Every block's weights back where they were before attach() (the device, or host memory pinned or
        not, as it was), with their current values; the pinned buffers attach() made are released."""
        self.settle()
        self._stop()
        for u in self.streamed:
            where, was_pinned = self.before[u.index]
            if u.index not in self.created:
                continue  # it already lived in this host buffer before attach()
            host, u.theta = u.theta, (u.theta.to(where) if where.type != "cpu" else u.theta.clone())
            release_host_buffer(host)
        for u in self.resident_blocks:
            where, was_pinned = self.before[u.index]
            if where.type == "cpu":
                host = host_buffer(u.numel, self.zm.dtype, was_pinned)
                host.copy_(u.theta)
                u.theta = host

    def close(self) -> None:
        """Stop streaming and release the pinned pages, leaving the weights in ordinary host memory
        (the end of a run: moving 60 GB back to the device only to free it would cost time and memory).
        Blocks whose write-back was deferred are brought up to date first."""
        self.settle()
        self._release(self._stop())

    def settle(self) -> None:
        """Copy back every block whose host copy lacks deferred updates (replayed on the way): afterwards
        every host copy is current, once the copies are done (close, detach and a synchronisation wait)."""
        for u in self.streamed:
            if getattr(self, "stale", {}).get(u.index):
                with self.use(u):
                    self.written(u)

    def _stop(self) -> list[torch.Tensor]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # no copy may still be reading or writing a host buffer
        self.slots, self.uploaded = [], {}
        return [u.theta for u in self.streamed]

    def _release(self, hosts: list[torch.Tensor]) -> None:
        if self.pin:
            for host in hosts:
                release_host_buffer(host)

    def resident_count(self) -> int:
        return len(self.resident_blocks)

    def host_bytes(self) -> int:
        return sum(u.numel for u in self.streamed) * torch.empty((), dtype=self.zm.dtype).element_size()

    # -- the schedule ---------------------------------------------------------------------------
    def _upload(self, index: int) -> None:
        if index in self.uploaded:
            return
        s = self.next_slot
        self.next_slot = (s + 1) % len(self.slots)
        unit = self.zm.units[index]
        self.up.wait(*[e for e in (self.slot_free[s], self.host_fresh[index]) if e is not None])
        with self.up(), self.span(self.up, "upload"):
            self._fill(self.slots[s], unit)
            done = _event(self.device)
            self.up.record(done)
        self.uploaded[index] = (s, done)

    @contextmanager
    def use(self, unit):
        if unit.index not in self.host_fresh:  # embeddings, head and resident blocks
            with self.span(self.compute, "compute"):
                yield unit.theta
            return
        self._upload(unit.index)
        pos = self.order.index(unit.index)
        for k in range(1, self.prefetch + 1):
            self._upload(self.order[(pos + k) % len(self.order)])
        s, done = self.uploaded.pop(unit.index)
        if done is not None:
            self.compute.wait(done)
        self._slot_in_use = s
        theta = self.slots[s][: unit.numel]
        if self.stale[unit.index]:  # the host copy was older: the updates it lacks, in their order
            with self.span(self.compute, "replay"):
                for redo in self.stale[unit.index]:
                    redo(theta)
        with self.span(self.compute, "compute"):
            yield theta
        # The slot is free once compute is done with it and any copy out of it has finished: the offload
        # lane, which already holds that copy, waits for compute and marks the slot.
        if self.slot_free[s] is not None:
            compute_done = _event(self.device)
            self.compute.record(compute_done)
            self.down.wait(compute_done)
            self.down.record(self.slot_free[s])

    def written(self, unit, redo=None) -> None:
        """The block's weights are final for this step: copy them back while compute goes on. With
        writeback_every K > 1 and `redo` (redo(theta) applies the update just made to a copy of the block),
        the copy back happens on every K-th visit only; until then redo is kept and replayed by use()."""
        if unit.index not in self.host_fresh:
            return
        if redo is not None and self.every > 1:
            self.stale[unit.index].append(redo)
            self.visits[unit.index] += 1
            if self.visits[unit.index] % self.every:
                return
        self.stale[unit.index] = []  # the slot holds them all: the copy below brings the host copy up to date
        s = self._slot_in_use
        ready = _event(self.device)
        if ready is not None:
            self.compute.record(ready)
            self.down.wait(ready)
        with self.down(), self.span(self.down, "offload"):
            self._drain(self.slots[s], unit)
            self.down.record(self.host_fresh[unit.index])

    # The copies themselves, on the upload and offload lanes (a sharded holder splits them across ranks).
    def _fill(self, slot: torch.Tensor, unit) -> None:
        slot[: unit.numel].copy_(unit.theta, non_blocking=True)

    def _drain(self, slot: torch.Tensor, unit) -> None:
        unit.theta.copy_(slot[: unit.numel], non_blocking=True)
