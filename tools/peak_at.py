"""What is alive at a step's peak of allocated GPU memory? (device tool)

    PYTHONPATH=. python3 tools/peak_at.py --model opt-1.3b-untied --mode zo2 --batch 1
    PYTHONPATH=. python3 tools/peak_at.py --no-fused-opt     # the Hugging Face OPT block in the ZO passes

Records the caching allocator's history (torch.cuda.memory._record_memory_history) over one measured step,
replays its alloc/free events to find the moment of the peak, and prints the peak, the tensors alive then
(largest first) and, for each, the innermost frames of this project's or transformers' code that allocated
it. Allocations made before the step (weights, slots, arena) are not in the history: the peak printed first
is the step's own; the allocator's overall peak is printed beside it.
"""
import argparse
from collections import Counter

import torch

from zo2bench.config import RunConfig
from zo2bench.engine import trainer

p = argparse.ArgumentParser()
p.add_argument("--model", default="opt-1.3b-untied")
p.add_argument("--mode", default="zo2")
p.add_argument("--batch", type=int, default=1)
p.add_argument("--seq", type=int, default=2048)
p.add_argument("--top", type=int, default=14)
p.add_argument("--no-fused-opt", action="store_true", help="OPT layers keep the Hugging Face forward")
a = p.parse_args()

if a.no_fused_opt:
    from zo2bench.engine.fused import FusedOPTBlock
    FusedOPTBlock.of = classmethod(lambda cls, layer: None)

snap = {}


def on_phase(name):
    if name == "measured":
        torch.cuda.memory._record_memory_history(max_entries=200_000, stacks="python")
    elif name == "done":
        snap.update(torch.cuda.memory._snapshot())
        torch.cuda.memory._record_memory_history(enabled=None)


cfg = RunConfig(model=a.model, mode=a.mode, batch=a.batch, seq=a.seq, dtype="fp16", device="cuda", warmup=2, steps=1)
trainer.run(cfg, on_phase=on_phase)

events = [e for trace in snap["device_traces"] for e in trace]
live, cur, peak, at = {}, 0, -1, None
# Allocations alive when recording began are not in the trace; the peak here counts what the step allocates.
for i, e in enumerate(events):
    if e["action"] == "alloc":
        live[e["addr"]] = e
        cur += e["size"]
    elif e["action"] == "free_completed" and e["addr"] in live:
        cur -= live.pop(e["addr"])["size"]
    if cur > peak:
        peak, at = cur, (i, dict(live))
i, alive = at
print(f"== {a.model} {a.mode} b{a.batch} T{a.seq} fused OPT block: {not a.no_fused_opt}")
print(f"peak of the step's own allocations: {peak / 2**20:.1f} MiB at event {i} of {len(events)}; "
      f"allocated before the step and still held: {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB peak overall")


def where(e):
    frames = [f for f in e.get("frames", []) if "zo2bench" in f["filename"] or "transformers" in f["filename"]]
    return " < ".join(f"{f['filename'].split('/')[-1]}:{f['line']} {f['name']}" for f in frames[:3])


sizes = Counter()
for e in alive.values():
    sizes[(e["size"], where(e))] += 1
for (size, w), n in sorted(sizes.items(), key=lambda kv: -kv[0][0] * kv[1])[:a.top]:
    print(f"{n:3d} x {size / 2**20:8.2f} MiB  {w}")
