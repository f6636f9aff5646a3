"""mezo's step as one CUDA graph: captured once, then replayed, with bitwise the same weights as eager steps.

    opt = GraphedMeZO(MeZO(zm, Resident(zm), lr, eps, wd, seed))
    out = opt.step(batch, t)   # as MeZO.step: {"loss", ...} 0-d device tensors, nothing waits for the GPU
    opt.flush(); opt.close()   # as MeZO's
    opt.info                   # {"captures", "replays", "eager_steps", "capture_s"} since it was made

Why: at batch 1 a mezo step is a few thousand small kernels (26 units of OPT-1.3B, each an update and two
perturbed passes of a dozen kernels), and with short sequences launching them from Python takes longer
than running them. A replay launches the whole step at once.

When: the first step runs eagerly (it has no pending update to apply, so its kernels are not the later
steps'); so does the first step of every new signature (the batch's shapes, lr and the pending update's
decay), as a warm-up that compiles every kernel and builds every library plan outside the capture. The
next step of that signature is captured and replayed, and so is every later one. A new signature
captures anew (one graph at a time). bench-step's warm-up steps cover the first three. If a capture fails
(something in the step cannot be captured), info["capture_error"] says why and every step runs eagerly.

A graph replays fixed kernels on fixed memory, so what changes from step to step goes through buffers the
graph captured, loaded before each replay:
  - the batch (token ids, targets, scored positions, position ids): copied into a static batch;
  - each unit's seed for this step's z, and for the pending update's: int64 tables the noise kernels read
    on the device (engine/noise.py), one host-to-device copy;
  - the pending update's coefficient -lr g: the graph writes it at its end, and its next replay applies it
    first (an eager step's coefficient is copied in).
The outputs of a replay are its static tensors: they are cloned, because the trainer reads step t's losses
after step t+1 is queued (engine/trainer.py). lr and the decay are constants of the graph, hence of its
signature. Memory: beyond those clones a replay allocates nothing through the caching allocator; the step's
temporaries live in the graph's private pool, which torch counts as reserved, not allocated. Compare graphed
and eager steps by peak reserved memory (or NVML's), not by peak allocated.
The stand-in `graph` (a callable returning an object with capture(fn) and replay() -> fn's outputs) lets the
CPU tests run this path with `fn` rerun in place of a replay.
"""
from __future__ import annotations

import time

import torch

from zo2bench.engine.model import Batch
from zo2bench.engine.zo import MeZO, Update

BATCH_FIELDS = ("input_ids", "target_ids", "target_pos", "position_ids")


class CUDAGraph:
    """torch.cuda.CUDAGraph captured on `stream`: capture(fn) records fn's kernels (running none of them)."""

    def __init__(self, stream):
        self.graph, self.stream, self.out = torch.cuda.CUDAGraph(), stream, None

    def capture(self, fn) -> None:
        with torch.cuda.graph(self.graph, stream=self.stream):
            self.out = fn()

    def replay(self) -> dict:
        self.graph.replay()
        return self.out


def _signature(batch: Batch, lr: float, decay: float) -> tuple:
    shapes = tuple(None if getattr(batch, f) is None else tuple(getattr(batch, f).shape) for f in BATCH_FIELDS)
    return shapes, lr, decay


class GraphedMeZO:
    def __init__(self, opt: MeZO, graph=None):
        self.opt = opt
        cuda = opt.zm.device.type == "cuda"
        # Warm-up and capture share one side stream: cuBLAS keeps a workspace per stream, made at first use,
        # and that first use must not fall inside a capture.
        self.side = torch.cuda.Stream(opt.zm.device) if cuda else None
        self.new_graph = graph or (lambda: CUDAGraph(self.side))
        self.graph, self.sig, self.warmed = None, None, None
        self.info = {"captures": 0, "replays": 0, "eager_steps": 0, "capture_s": 0.0}

    def step(self, batch: Batch, t: int, lr: float | None = None) -> dict:
        opt = self.opt
        lr = opt.lr if lr is None else lr
        if opt.pending is None or "capture_error" in self.info:  # step 0 (no update to apply: not the kernels
            return self._eager(batch, t, lr)                       # of later steps), or nothing captures
        sig = _signature(batch, lr, opt.pending.decay)
        if sig != self.sig:
            if sig != self.warmed:
                self.warmed = sig
                return self._eager(batch, t, lr)
            if not self._capture(batch, lr, sig):
                return self._eager(batch, t, lr)
        seeds = opt.unit_seeds(t)
        self._load(batch, seeds)
        out = {k: v.clone() for k, v in self.graph.replay().items()}
        opt.pending = Update(seeds, self.coef, self.decay)  # int seeds: what an eager step or flush reads
        self.info["replays"] += 1
        return out

    def _eager(self, batch, t, lr) -> dict:
        self.info["eager_steps"] += 1
        if self.side is None:
            return self.opt.step(batch, t, lr)
        here = torch.cuda.current_stream()
        self.side.wait_stream(here)
        with torch.cuda.stream(self.side):
            out = self.opt.step(batch, t, lr)
        here.wait_stream(self.side)
        for v in out.values():  # made on the side stream, read on this one
            v.record_stream(here)
        return out

    def _capture(self, batch: Batch, lr: float, sig: tuple) -> bool:
        t0 = time.perf_counter()
        opt, dev = self.opt, self.opt.zm.device
        self.graph = None  # one graph at a time: the last one's memory goes back before the new capture
        self.batch = Batch(**{f: None if (v := getattr(batch, f)) is None else v.clone() for f in BATCH_FIELDS})
        self.seeds = torch.zeros(2, len(opt.zm.units), dtype=torch.int64, device=dev)  # [pending's, this step's]
        self.coef = torch.zeros((), dtype=torch.float32, device=dev)
        self.decay = opt.pending.decay
        pending = opt.pending

        def fn() -> dict:
            opt.pending = Update(list(self.seeds[0]), self.coef, self.decay)
            out = opt.run_step(self.batch, list(self.seeds[1]), lr)
            self.coef.copy_(opt.pending.coef)  # the next replay applies this step's update first
            return out

        graph = self.new_graph()
        try:
            graph.capture(fn)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as e:  # a kernel or a host sync that cannot be captured: every step runs eagerly
            self.info["capture_error"] = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            return False
        finally:
            opt.pending = pending  # a capture runs nothing: the update to apply is still the eager step's
        self.graph, self.sig = graph, sig
        self.info["captures"] += 1
        self.info["capture_s"] += time.perf_counter() - t0
        return True

    def _load(self, batch: Batch, seeds: list[int]) -> None:
        pending = self.opt.pending
        for f in BATCH_FIELDS:
            if getattr(batch, f) is not None:
                getattr(self.batch, f).copy_(getattr(batch, f))
        host = torch.tensor([pending.seeds, seeds], dtype=torch.int64)  # ints: an eager step's, or the last replay's
        if self.seeds.is_cuda:  # pinned, so the copy queues behind the step before it; torch's host allocator
            host = host.pin_memory()  # keeps the page until the copy has run
        self.seeds.copy_(host, non_blocking=True)
        if pending.coef is not self.coef:
            self.coef.copy_(pending.coef)

    # -- the rest of the trainer's face, as MeZO's ---------------------------------------------------------
    def flush(self) -> None:
        self.opt.flush()

    def logits(self, batch) -> torch.Tensor:
        return self.opt.logits(batch)

    def parameters(self):
        return self.opt.parameters()

    def offload_info(self) -> dict:
        return self.opt.offload_info()

    @property
    def build_parts(self):
        return self.opt.build_parts

    def close(self) -> None:
        self.graph = None
        self.opt.close()
