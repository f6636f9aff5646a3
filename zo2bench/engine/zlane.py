"""The z passes of a mezo step on a second CUDA stream, beside the forwards.

    lane = ZLane(device)                 # SameStream() where there is nothing to overlap (CPU, zo2)
    lane.begin()                         # the lane forks from the step's stream (where the coefficient was made)
    with lane.writing(spans):            # an update of theta, or theta + eps z written into the arena at spans
        ...noise kernels...
    x = unit.forward(x, batch); lane.read(spans)   # the forward read the arena at spans
    lane.end()                           # the step's stream joins the lane

Why: a unit's update and its two perturbed copies are three passes over its weights, bound by memory (OPT-1.3B at
batch 1, T 2048 on an H100: ~9 ms of a 28 ms step), and the forwards beside them by matmuls. On one stream they
take turns. With blocks in two arena slots (engine/model.py), block i+1's update and its "+" copy run while
block i computes; only the "-" copy waits for the "+" forward of its own block.

Hand-offs, each an event wait on the device (the lane owns its stream; the step's stream is the current one):
  - a write into the arena waits for the newest forward that read any of those elements (forwards run in order
    on one stream, so the newest covers the older ones);
  - the step's stream waits for each write before the forward that follows it;
  - begin() and end() fork and join, so the next step, a flush, or a CUDA graph's capture sees one stream.
Nothing is allocated on the lane: the noise kernels write into the arena and theta, which live for the run.
The kernels and their order per element are the eager ones, so the weights are bitwise the same.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

Spans = tuple  # ((start, end), ...) element ranges of the arena


class SameStream:
    """Everything on the current stream, as written (CPU, and zo2, whose block slots have their own streams)."""

    def begin(self) -> None:
        pass

    def end(self) -> None:
        pass

    def writing(self, spans: Spans):
        return nullcontext()

    def read(self, spans: Spans) -> None:
        pass


class ZLane:
    def __init__(self, device: torch.device):
        self.stream = torch.cuda.Stream(device)
        self.readers: list[tuple[Spans, torch.cuda.Event]] = []  # the step's forwards so far, oldest first

    def begin(self) -> None:
        self.stream.wait_stream(torch.cuda.current_stream())
        self.readers.clear()

    def end(self) -> None:
        torch.cuda.current_stream().wait_stream(self.stream)

    @contextmanager
    def writing(self, spans: Spans):
        here = torch.cuda.current_stream()
        for read, ev in reversed(self.readers):
            if any(a < d and c < b for a, b in spans for c, d in read):
                self.stream.wait_event(ev)
                break
        with torch.cuda.stream(self.stream):
            yield
        done = torch.cuda.Event()
        done.record(self.stream)
        here.wait_event(done)

    def read(self, spans: Spans) -> None:
        ev = torch.cuda.Event()
        ev.record()
        self.readers.append((spans, ev))
